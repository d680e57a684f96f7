"""Relays ("tiếp sóng") end to end: a real Icecast fed by ffmpeg and an HLS stream served over HTTP,
the real controller on a real mosquitto, nine simulated clusters recording what they play.

One controller serves the whole module (``live_controller``): each test waits for its relay to end,
and tests that run at the same time of day use clusters of their own."""

from __future__ import annotations

import itertools
from collections import defaultdict

import pytest

from broadcaster.broadcasts.validation import AnnouncementInvalid
from broadcaster.domain import Announcement, Source, Tier
from tests.fixtures_controller import wait_until

SPEAKERS = [f"loa-{i:02d}" for i in range(1, 10)]
_NUMBERS = itertools.count(1)


@pytest.fixture(scope="module")
def controller(live_controller):  # type: ignore[no-untyped-def]
    return live_controller


def _relay(controller, url: str, seconds: float, targets=("all",), tier: str = "normal") -> int:  # type: ignore[no-untyped-def]
    manager = controller.broadcasts
    channel = manager.channels.create(f"VOV1 thử {next(_NUMBERS)}", url)
    checked = controller.services.validator.check_stream(
        channel=channel,
        duration_s=seconds,
        targets=list(targets),
        tier=tier,
        channel_lookup=manager.channels.usable,
    )
    return manager.submit_stream(checked, author="test")


def _frames(controller, bid: int) -> dict[str, list[dict]]:  # type: ignore[no-untyped-def]
    by_node: dict[str, list[dict]] = defaultdict(list)
    for entry in controller.timeline():
        if entry.get("kind") == "stream" and str(entry["broadcast_id"]).split("-")[0] == str(bid):
            by_node[entry["speaker_id"]].append(entry)
    return by_node


def _log(controller, bid: int) -> list[str]:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from broadcaster.models import LogEntry

    with controller.services.sessions() as session:
        return list(session.scalars(select(LogEntry.message).where(LogEntry.broadcast_id == bid)))


def _spread(by_node: dict[str, list[dict]]) -> float:
    """Worst difference, over frames every node played, of when that frame sounded."""
    out: dict[int, list[float]] = defaultdict(list)
    for entries in by_node.values():
        for e in entries:
            if e["seq"] is not None and e["offset"] == 0:
                out[e["seq"]].append(e["out"])
    common = [times for times in out.values() if len(times) == len(by_node)]
    assert common, "no frame was played by every cluster"
    return max(max(t) - min(t) for t in common)


def test_a_relay_from_icecast_plays_in_step_on_every_cluster_to_its_end(controller, icecast) -> None:  # type: ignore[no-untyped-def]
    source = icecast.feed("vov1.mp3", 440)
    bid = _relay(controller, source.url, 12)
    result = controller.wait_state(bid, "done", "partial", "failed", timeout=40)
    assert result["state"] == "done", (result["reason"], result["deliveries"])
    assert {d["state"] for d in result["deliveries"]} == {"done"}
    frames = _frames(controller, bid)
    assert sorted(frames) == SPEAKERS
    for entries in frames.values():
        played = sum(e["samples"] for e in entries) / entries[0]["rate"]
        assert 4.0 < played <= 12.05  # from the first frame (source start-up, playout delay) to the end
    # Clusters within earshot must not echo: the same frame sounds at the same instant everywhere
    # (clocks skewed +-0.5 s, corrected by the nodes' sync; generous bound for a loaded machine).
    assert _spread(frames) < 0.03
    assert result["kind"] == "relay" and result["source_name"].startswith("VOV1 thử")
    assert any(f"Tiếp sóng «{result['source_name']}»" in m for m in _log(controller, bid))


def test_an_emergency_interrupts_a_relay_which_resumes_at_the_live_point(controller, icecast) -> None:  # type: ignore[no-untyped-def]
    source = icecast.feed("vov1-b.mp3", 440)
    # Long enough for the emergency (render, chime, speech) to end well before the relay does.
    bid = _relay(controller, source.url, 24, targets=["thon-1"])
    controller.wait_state(bid, "playing", timeout=30)
    wait_until(lambda: len(_frames(controller, bid)) == 3, timeout=10, what="relay heard on thon-1")
    alarm = controller.broadcasts.submit(
        Announcement(text="Khẩn cấp: lũ về.", tier=Tier.EMERGENCY, targets=("thon-1",), source=Source.API)
    )
    controller.wait_state(alarm, "done", timeout=40)
    result = controller.wait_state(bid, "done", "partial", "interrupted", timeout=40)
    assert result["state"] == "done", (result["reason"], result["deliveries"])
    # The emergency is streamed as it is synthesized (the default): its chunks on loa-01.
    emergency = [e for e in controller.timeline("loa-01") if e.get("broadcast_id") == str(alarm)]
    assert emergency and all(e["kind"] == "stream" for e in emergency)
    cut_at = min(e["out"] for e in emergency)
    back_at = max(e["out"] + e["samples"] / e["rate"] for e in emergency)
    frames = _frames(controller, bid)["loa-01"]
    before = [e for e in frames if e["out"] < cut_at]
    after = [e for e in frames if e["out"] > back_at]
    assert before and after, "the relay played before the emergency and resumed after it"
    assert not [e for e in frames if cut_at + 0.05 < e["out"] < back_at - 0.05], (
        "nothing overlaps the emergency"
    )
    # Resumed at the live point: the frames skipped while the emergency played are not played late.
    assert after[0]["t"] - before[-1]["t"] >= back_at - cut_at - 0.5


def test_a_source_killed_mid_relay_leaves_a_logged_gap_raises_an_alert_and_goes_on(
    controller, icecast
) -> None:  # type: ignore[no-untyped-def]
    changes: list = []
    controller.fleet.add_alert_listener(changes.append)  # what the notifier is told
    source = icecast.feed("huyen.mp3", 440)
    bid = _relay(controller, source.url, 14, targets=["loa-01"])
    controller.wait_state(bid, "playing", timeout=30)
    name = controller.broadcasts.get(bid)["source_name"]
    source.kill()

    def logged(fragment: str) -> bool:
        return any(fragment in m for m in _log(controller, bid))

    wait_until(lambda: logged("mất tín hiệu"), timeout=20, what="the gap in the log")
    # A real alert, not only a log line: on the dashboard's list and told to the notifier.
    active = wait_until(
        lambda: [a for a in controller.services.source_alerts.active() if name in a["message"]],
        timeout=10,
        what="the source alert",
    )
    assert active[0]["kind"] == "source_stalled"
    source.start()
    wait_until(lambda: logged("có lại âm thanh"), timeout=25, what="audio back in the log")
    wait_until(
        lambda: not [a for a in controller.services.source_alerts.active() if name in a["message"]],
        timeout=10,
        what="the source alert resolved",
    )
    ours = [(c.state, c.kind) for c in changes if c.speaker == name]
    assert ours == [("raised", "source_stalled"), ("resolved", "source_stalled")]
    result = controller.wait_state(bid, "done", "partial", "failed", timeout=40)
    assert result["state"] == "done", (result["reason"], result["deliveries"])


def test_a_node_restarted_mid_relay_joins_again_at_the_live_point(controller, hls_stream) -> None:  # type: ignore[no-untyped-def]
    bid = _relay(controller, hls_stream.url, 14, targets=["thon-2"])
    controller.wait_state(bid, "playing", timeout=30)
    wait_until(lambda: "loa-04" in _frames(controller, bid), timeout=10, what="loa-04 plays")
    controller.sim.kill("loa-04")
    killed = len(_frames(controller, bid)["loa-04"])
    controller.sim.revive("loa-04")
    wait_until(
        lambda: len(_frames(controller, bid)["loa-04"]) > killed + 4, timeout=20, what="loa-04 plays again"
    )
    result = controller.wait_state(bid, "done", "partial", timeout=40)
    assert {d["speaker"]: d["state"] for d in result["deliveries"]}["loa-04"] == "done"
    assert _spread({s: f for s, f in _frames(controller, bid).items()}) < 0.03


def test_a_node_restarted_cleanly_mid_relay_joins_again_at_the_live_point(controller, hls_stream) -> None:  # type: ignore[no-untyped-def]
    """A clean restart (an update, a reboot) reports the relay ``stopped``: the cluster waits for it
    again and rejoins at the live point, in step with the others."""
    bid = _relay(controller, hls_stream.url, 14, targets=["thon-3"])
    controller.wait_state(bid, "playing", timeout=30)
    wait_until(lambda: "loa-07" in _frames(controller, bid), timeout=10, what="loa-07 plays")
    controller.sim.restart("loa-07")
    stopped = len(_frames(controller, bid)["loa-07"])
    wait_until(
        lambda: len(_frames(controller, bid)["loa-07"]) > stopped + 4, timeout=20, what="loa-07 plays again"
    )
    result = controller.wait_state(bid, "done", "partial", timeout=40)
    delivery = {d["speaker"]: d for d in result["deliveries"]}["loa-07"]
    assert delivery["state"] == "done", delivery
    frames = _frames(controller, bid)["loa-07"]
    before = [e for e in frames[:stopped]]
    after = frames[stopped:]
    # Joined at the live point: the stream time jumped as far as the wall clock did while it was away.
    jump_t = after[0]["t"] - before[-1]["t"]
    jump_out = after[0]["out"] - before[-1]["out"]
    assert abs(jump_t - jump_out) < 0.05
    assert _spread(_frames(controller, bid)) < 0.03


@pytest.mark.parametrize("kind", ["html", "refused", "missing"])
def test_a_relay_that_cannot_start_says_why_in_vietnamese(controller, icecast, html_server, kind) -> None:  # type: ignore[no-untyped-def]
    url = {
        "html": html_server,
        "refused": "http://127.0.0.1:9/khong-co.mp3",
        "missing": icecast.mount_url("khong-co.mp3"),
    }[kind]
    bid = _relay(controller, url, 30, targets=["loa-01"])
    result = controller.wait_state(bid, "failed", timeout=40)
    reason = result["reason"]
    assert reason.startswith("Tiếp sóng không bắt đầu được")
    expected = {"html": "trang web", "refused": "Không kết nối được", "missing": "404"}[kind]
    assert expected in reason


def test_relay_requests_are_checked_by_the_one_validator(controller) -> None:  # type: ignore[no-untyped-def]
    validator = controller.services.validator
    channels = controller.broadcasts.channels
    channel = channels.create("Đài huyện", "http://127.0.0.1:1/x.mp3")
    with pytest.raises(AnnouncementInvalid) as err:
        validator.check_stream(channel=channel, targets=["all"], channel_lookup=channels.usable)
    assert "duration_s" in err.value.errors
    with pytest.raises(AnnouncementInvalid) as err:
        validator.check_stream(channel=999, duration_s=60, targets=["all"], channel_lookup=channels.usable)
    assert err.value.errors["channel"] == "Không có kênh tiếp sóng #999."
    with pytest.raises(AnnouncementInvalid) as err:
        validator.check_stream(
            channel=channel, duration_s=3, targets=["nowhere"], channel_lookup=channels.usable
        )
    assert set(err.value.errors) == {"targets", "duration_s"}

"""The agent against a real Mosquitto (password file + ACL), real ffmpeg, and a controller
stand-in. Every wait is on a received message or a condition, never a fixed sleep."""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path

import pytest

from speakers.agent import AgentCrashed, SkewedClock
from speakers.mqtt import Link, parse_mqtt_url
from speakers.protocol import (
    Event,
    PlayCommand,
    Status,
    StopCommand,
    TimeSync,
    VolumeCommand,
    decode_node_message,
    sha256_hex,
)
from speakers.service import run_agent
from tests.fakes import FakeAmplifier, FakePlayer
from tests.mini_controller import SINE_DBFS, MiniController, make_node, make_tone_mp3, run

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("tones")
    return {
        "short": make_tone_mp3(folder / "short.mp3", 1.0, 440),
        "two": make_tone_mp3(folder / "two.mp3", 2.0, 550),
        "long": make_tone_mp3(folder / "long.mp3", 4.0, 660),
        "other": make_tone_mp3(folder / "other.mp3", 1.0, 880),
    }


def soon(seconds: float = 0.6) -> float:
    return time.time() + seconds


# ------------------------------------------------------------------------ the play flow


def test_play_flow_receipts_timing_and_level(mosquitto, tmp_path: Path, tones) -> None:
    mosquitto.add_nodes({"loa-01": "thon-1"})
    amp = FakeAmplifier()

    async def scenario() -> None:
        mc = MiniController(mosquitto.url)
        await mc.start()
        node = await make_node(mosquitto, "loa-01", "thon-1", tmp_path / "c1", amplifier=amp).start()
        ref = mc.add_audio(tones["two"], chunk_size=4096)
        start_at = soon()
        mc.send_zone("thon-1", PlayCommand("b1", ref, start_at, title="Thông báo họp dân", volume=100))
        done = await mc.wait_state("loa-01", "b1", "done")
        states = mc.states("loa-01", "b1")
        assert states == ["received", "need_audio", "scheduled", "playing", "done"]
        need = mc.event("loa-01", "b1", "need_audio")
        assert need.missing == tuple(range(ref.chunk_count))
        playing = mc.event("loa-01", "b1", "playing")
        assert abs(playing.started_at - start_at) < 0.1
        assert done.seconds_played == pytest.approx(2.0, abs=0.1)
        assert done.rms_dbfs == pytest.approx(SINE_DBFS, abs=1.5)
        [entry] = node.timeline
        assert entry["broadcast_id"] == "b1" and entry["audio_id"] == ref.id and entry["outcome"] == "done"
        assert abs(entry["start"] - start_at) < 0.1  # true wall time of the start
        assert entry["title"] == "Thông báo họp dân"
        # The verified file is in the cache under its sha256.
        cached = node.agent.cache.get(ref.id)
        assert cached is not None and sha256_hex(cached.path.read_bytes()) == ref.id
        # The amplifier went on before the start and off after the idle time.
        await mc.wait_for(lambda: len(amp.switches) == 2 and not amp.is_on, 5, "amplifier off")
        (t_on, on), (t_off, off) = amp.switches
        assert on and not off
        assert t_on <= node.agent.sync.to_mono(start_at) - node.agent.clock.monotonic() + time.monotonic()
        await node.stop()
        await mc.close()

    run(scenario())


def test_level_follows_the_volume(mosquitto, tmp_path: Path, tones) -> None:
    mosquitto.add_nodes({"loa-01": None})

    async def scenario() -> None:
        mc = MiniController(mosquitto.url)
        await mc.start()
        node = await make_node(mosquitto, "loa-01", None, tmp_path / "c").start()
        ref = mc.add_audio(tones["short"])
        mc.send_to("loa-01", VolumeCommand(volume=50))
        mc.send_to("loa-01", PlayCommand("half", ref, soon()))
        done = await mc.wait_state("loa-01", "half", "done")
        # Half the amplitude is 6 dB less.
        assert done.rms_dbfs == pytest.approx(SINE_DBFS - 6.02, abs=1.5)
        assert node.timeline[0]["volume"] == 50
        mc.send_to("loa-01", PlayCommand("mute", ref, soon(), volume=0))
        assert (await mc.wait_state("loa-01", "mute", "done")).rms_dbfs == -120.0
        await node.stop()
        # The volume survives a restart of the agent.
        again = await make_node(mosquitto, "loa-01", None, tmp_path / "c").start()
        assert again.agent.volume == 50
        await again.stop()
        await mc.close()

    run(scenario())


# ---------------------------------------------------------------------- chunked transfer


def test_corrupted_and_missing_chunks_are_asked_again(mosquitto, tmp_path: Path, tones) -> None:
    mosquitto.add_nodes({"loa-01": "thon-1", "loa-02": "thon-1"})

    async def scenario() -> None:
        mc = MiniController(mosquitto.url)
        await mc.start()
        nodes = [await make_node(mosquitto, s, "thon-1", tmp_path / s).start() for s in ("loa-01", "loa-02")]
        ref = mc.add_audio(tones["two"], chunk_size=2048)
        assert ref.chunk_count >= 5
        # Each node's first request is served with chunk 1 corrupted and chunk 3 lost.
        mc.faults[(ref.id, 1)] = ["corrupt", "corrupt"]
        mc.faults[(ref.id, 3)] = ["drop", "drop"]
        mc.send_zone("thon-1", PlayCommand("b1", ref, soon(1.0)))
        for node in nodes:
            await mc.wait_state(node.id, "b1", "done")
            requests = [e.missing for s, e in mc.need_audio if s == node.id]
            assert requests[0] == tuple(range(ref.chunk_count))
            assert set(requests[1]) == {1, 3}  # only what was bad or missing
            [entry] = node.timeline
            assert entry["audio_id"] == ref.id
            cached = node.agent.cache.get(ref.id)
            assert cached is not None and cached.path.read_bytes() == tones["two"]
        assert mc.chunks_sent[(ref.id, 0)] == 2  # one publish per request, shared by both nodes
        await asyncio.gather(*(n.stop() for n in nodes))
        await mc.close()

    run(scenario())


def test_a_file_that_never_verifies_is_never_played(mosquitto, tmp_path: Path, tones) -> None:
    mosquitto.add_nodes({"loa-01": None})

    async def scenario() -> None:
        mc = MiniController(mosquitto.url)
        await mc.start()
        node = await make_node(
            mosquitto, "loa-01", None, tmp_path / "c", sections={"audio": {"max_requests": 3}}
        ).start()
        ref = mc.add_audio(tones["short"], chunk_size=4096)
        mc.faults[(ref.id, 0)] = ["corrupt"] * 100
        mc.send_to("loa-01", PlayCommand("bad", ref, soon(0.5), valid_until=time.time() + 60))
        failed = await mc.wait_state("loa-01", "bad", "failed")
        assert "incomplete" in failed.reason and "bad" in failed.reason
        # The first request brought the good chunks; then three fruitless ones: give up.
        assert len([1 for s, e in mc.need_audio if s == "loa-01"]) == 4
        assert node.timeline == []
        assert not node.agent.cache.has(ref.id)
        assert "playing" not in mc.states("loa-01", "bad")
        # The audio topic was left: chunks published now are not even delivered.
        assert not node.agent.link.wants(mc.topics.audio_filter(ref.id))
        await node.stop()
        await mc.close()

    run(scenario())


def test_cache_survives_a_restart_and_is_not_asked_again(mosquitto, tmp_path: Path, tones) -> None:
    mosquitto.add_nodes({"loa-01": None})

    async def scenario() -> None:
        mc = MiniController(mosquitto.url)
        await mc.start()
        node = await make_node(mosquitto, "loa-01", None, tmp_path / "cache").start()
        ref = mc.add_audio(tones["short"], chunk_size=4096)
        mc.send_to("loa-01", PlayCommand("first", ref, soon()))
        await mc.wait_state("loa-01", "first", "done")
        sent = sum(mc.chunks_sent.values())
        await node.stop()
        restarted = await make_node(mosquitto, "loa-01", None, tmp_path / "cache").start()
        assert restarted.agent.cache.has(ref.id)
        mc.send_to("loa-01", PlayCommand("second", ref, soon()))
        await mc.wait_state("loa-01", "second", "done")
        assert mc.states("loa-01", "second") == ["received", "scheduled", "playing", "done"]
        assert sum(mc.chunks_sent.values()) == sent
        assert len(mc.need_audio) == 1
        await restarted.stop()
        await mc.close()

    run(scenario())


def test_broker_restart_in_the_middle_of_a_transfer(mosquitto, tmp_path: Path, tones) -> None:
    mosquitto.add_nodes({"loa-01": "thon-1", "loa-02": "thon-1"})

    async def scenario() -> None:
        mc = MiniController(mosquitto.url)
        await mc.start()
        mc.serve_audio = False
        nodes = [await make_node(mosquitto, s, "thon-1", tmp_path / s).start() for s in ("loa-01", "loa-02")]
        ref = mc.add_audio(tones["two"], chunk_size=2048)
        mc.send_zone("thon-1", PlayCommand("b1", ref, soon(4.0), valid_until=time.time() + 60))
        await mc.wait_for(lambda: len(mc.need_audio) >= 2, what="both nodes ask for audio")
        half = list(range(ref.chunk_count // 2))
        mc.publish_chunks(ref.id, half)
        await mc.wait_for(
            lambda: all((t := n.agent.fetcher.transfer(ref.id)) and t.received == len(half) for n in nodes)
        )
        # The broker goes down mid-transfer and comes back; nobody is told to reconnect.
        await asyncio.to_thread(mosquitto.broker.restart)
        mc.serve_audio = True
        for node in nodes:
            await mc.wait_state(node.id, "b1", "done", timeout=20)
            assert node.agent.link.reconnects >= 1
            assert node.timeline[0]["audio_id"] == ref.id
        # After the restart only the other half was asked for.
        later = [set(e.missing) for s, e in mc.need_audio[2:]]
        assert later and all(m and m.isdisjoint(half) for m in later)
        await asyncio.gather(*(n.stop() for n in nodes))
        await mc.close()

    run(scenario(), timeout=90)


# ---------------------------------------------------------------- liveness and security


def test_last_will_on_a_killed_agent_and_goodbye_on_a_clean_stop(mosquitto, tmp_path: Path) -> None:
    mosquitto.add_nodes({"loa-01": None, "loa-02": None})

    async def retained_status(client_id: str) -> dict[str, Status]:
        watcher = MiniController(mosquitto.url, client_id=client_id)
        await watcher.start()
        await watcher.wait_for(lambda: len(watcher.status) == 2, 5, "retained statuses")
        await watcher.close()
        return watcher.status

    async def scenario() -> None:
        killed = await make_node(mosquitto, "loa-01", None, tmp_path / "a").start(synced=False)
        stopped = await make_node(mosquitto, "loa-02", None, tmp_path / "b").start(synced=False)
        status = await retained_status("watch-1")
        assert status["loa-01"].online and status["loa-02"].online
        killed.kill()  # power cut: no goodbye
        await stopped.stop()  # clean: says goodbye itself
        status = await retained_status("watch-2")
        assert status["loa-01"].online is False and status["loa-01"].ts is None  # the will
        assert status["loa-02"].online is False and status["loa-02"].ts is not None  # the goodbye
        await killed.task

    run(scenario())


@pytest.mark.parametrize("runner", ["health", "link"])
def test_a_dying_runner_ends_the_agent_and_the_status_says_offline(
    mosquitto, tmp_path: Path, runner: str
) -> None:
    """A crashed agent must not stay up as a silent process that the broker still shows online:
    run_agent raises (the process exits non-zero, systemd restarts it) and the will fires."""
    mosquitto.add_nodes({"loa-01": None})

    async def scenario() -> None:
        watcher = MiniController(mosquitto.url, client_id="watch-crash")
        await watcher.start()
        node = make_node(mosquitto, "loa-01", None, tmp_path / "n")
        agent = node.agent
        main = asyncio.create_task(run_agent(agent.config, agent=agent))
        await watcher.wait_for(
            lambda: "loa-01" in watcher.status and watcher.status["loa-01"].online, 10, "online"
        )
        victim = next(t for t in agent._tasks if t.get_name().endswith(f"-{runner}"))
        victim.cancel()  # a runner ends while nobody asked the agent to stop
        with pytest.raises(AgentCrashed):
            await asyncio.wait_for(main, 10)
        await watcher.wait_for(lambda: watcher.status["loa-01"].online is False, 10, "offline status")
        assert watcher.status["loa-01"].ts is None  # the broker's will, not a goodbye
        assert "ended" in (agent.last_error or "")
        await watcher.close()

    run(scenario())


def test_acl_denies_a_node_acting_as_another(mosquitto, tmp_path: Path) -> None:
    mosquitto.add_nodes({"loa-01": "thon-1", "loa-02": "thon-2"})

    async def scenario() -> None:
        mc = MiniController(mosquitto.url)
        await mc.start()
        got: list[str] = []
        rogue = Link(
            "loa-01", parse_mqtt_url(mosquitto.node_url("loa-01")), on_message=lambda m: got.append(m.topic)
        )
        for topic in (
            "loa/speakers/loa-01/cmd",
            "loa/speakers/loa-02/cmd",
            "loa/zones/thon-1/cmd",
            "loa/zones/thon-2/cmd",
        ):
            rogue.want(topic)
        task = asyncio.create_task(rogue.run())
        await asyncio.wait_for(rogue.connected.wait(), 5)
        fake = Event(state="done", ts=time.time(), broadcast_id="b9", seconds_played=60.0)
        rogue.publish("loa/speakers/loa-02/events", fake.encode())  # pretending to be loa-02
        rogue.publish("loa/speakers/loa-02/status", Status(online=False).encode(), retain=True)
        rogue.publish("loa/zones/thon-1/cmd", VolumeCommand(volume=0).encode())  # a node may not command
        rogue.publish("loa/speakers/loa-01/events", Event(state="error", ts=1.0, reason="x").encode())
        await mc.wait_for(lambda: mc.events, 5, "loa-01's own event")
        assert await rogue.flush(5)
        assert {r.topic for r in rogue.refused} == {
            "loa/speakers/loa-02/events",
            "loa/speakers/loa-02/status",
            "loa/zones/thon-1/cmd",
        }
        assert all("Not authorized" in r.reason for r in rogue.refused)
        assert [s for s, _ in mc.events] == ["loa-01"]
        assert "loa-02" not in mc.status
        # Reading: its own cmd and its zone, not another node's cmd or another zone.
        for topic in (
            "loa/speakers/loa-02/cmd",
            "loa/zones/thon-2/cmd",
            "loa/zones/thon-1/cmd",
            "loa/speakers/loa-01/cmd",
        ):
            mc.send(topic, VolumeCommand(volume=10))
        await mc.wait_for(lambda: len(got) == 2, 5, "own and zone commands")
        await mc.link.flush(5)
        probe = VolumeCommand(volume=11)
        mc.send("loa/speakers/loa-01/cmd", probe)  # ordered after the others: all have been routed
        await mc.wait_for(lambda: len(got) == 3, 5, "probe")
        assert got == ["loa/zones/thon-1/cmd", "loa/speakers/loa-01/cmd", "loa/speakers/loa-01/cmd"]
        await rogue.close()
        task.cancel()
        await mc.close()

    run(scenario())


def test_malformed_commands_get_error_events_and_the_agent_lives_on(mosquitto, tmp_path: Path, tones) -> None:
    mosquitto.add_nodes({"loa-01": "thon-1"})

    async def scenario() -> None:
        mc = MiniController(mosquitto.url)
        await mc.start()
        node = await make_node(
            mosquitto, "loa-01", "thon-1", tmp_path / "c", sections={"health": {"interval_s": 0.2}}
        ).start()
        ref = mc.add_audio(tones["short"])
        bad_play = json.loads(PlayCommand("b-bad", ref, soon()).encode())
        bad_play["tier"] = "siêu khẩn"
        mc.send_to("loa-01", b"\x00\xffgarbage")
        mc.send_to("loa-01", b'{"v": 1, "type": "reboot"}')
        mc.send_zone("thon-1", json.dumps(bad_play).encode())
        await mc.wait_for(lambda: mc.states("loa-01").count("error") == 3, 5, "three error events")
        errors = [e for s, e in mc.events if e.state == "error"]
        assert any("not JSON" in e.reason for e in errors)
        assert any(e.broadcast_id == "b-bad" and "tier" in e.reason for e in errors)
        await mc.wait_for(
            lambda: mc.health["loa-01"] and mc.health["loa-01"][-1].malformed_count == 3, 5, "health"
        )
        assert "malformed" in mc.health["loa-01"][-1].last_error
        mc.send_to("loa-01", PlayCommand("b-ok", ref, soon()))
        await mc.wait_state("loa-01", "b-ok", "done")
        await node.stop()
        await mc.close()

    run(scenario())


# ---------------------------------------------------------------------- synchronisation


def test_synchronized_start_with_skewed_clocks(mosquitto, tmp_path: Path, tones) -> None:
    offsets = {"loa-01": -2.0, "loa-02": -1.3, "loa-03": -0.4, "loa-04": 0.5, "loa-05": 1.2, "loa-06": 2.0}
    mosquitto.add_nodes(dict.fromkeys(offsets, "thon-1"))

    async def scenario() -> None:
        mc = MiniController(mosquitto.url)
        await mc.start()
        nodes = [
            await make_node(mosquitto, s, "thon-1", tmp_path / s, clock=SkewedClock(off)).start()
            for s, off in offsets.items()
        ]
        for node in nodes:
            # Each node measured its own error: controller clock - node clock = -offset.
            assert node.agent.wall_offset_s == pytest.approx(-offsets[node.id], abs=0.05)
        ref = mc.add_audio(tones["short"])
        start_at = soon(1.0)
        mc.send_zone("thon-1", PlayCommand("sync", ref, start_at))
        for node in nodes:
            await mc.wait_state(node.id, "sync", "done")
        starts = [n.timeline[0]["start"] for n in nodes]
        assert max(starts) - min(starts) < 0.1  # without the clock sync this would be 4 s
        assert all(abs(s - start_at) < 0.1 for s in starts)
        await asyncio.gather(*(n.stop() for n in nodes))
        await mc.close()

    run(scenario())


def test_resync_on_request_follows_the_controller_clock(mosquitto, tmp_path: Path) -> None:
    mosquitto.add_nodes({"loa-01": None})

    async def scenario() -> None:
        mc = MiniController(mosquitto.url)
        await mc.start()
        node = await make_node(mosquitto, "loa-01", None, tmp_path / "c").start()
        before = node.agent.wall_offset_s
        syncs = node.agent.syncs
        mc.clock = lambda: time.time() + 5.0  # the controller's clock was stepped
        mc.send_to("loa-01", TimeSync(seq=-1, t_node=0.0, t_controller=mc.now()))
        await mc.wait_for(lambda: node.agent.syncs > syncs, 5, "resync")
        assert node.agent.wall_offset_s - before == pytest.approx(5.0, abs=0.05)
        assert node.agent.controller_now() == pytest.approx(time.time() + 5.0, abs=0.05)
        await node.stop()
        await mc.close()

    run(scenario())


# ------------------------------------------------------------------------------- tiers


def test_emergency_preempts_a_normal_item(mosquitto, tmp_path: Path, tones) -> None:
    mosquitto.add_nodes({"loa-01": "thon-1"})

    async def scenario() -> None:
        mc = MiniController(mosquitto.url)
        await mc.start()
        node = await make_node(mosquitto, "loa-01", "thon-1", tmp_path / "c").start()
        long_ref = mc.add_audio(tones["long"])
        alarm = mc.add_audio(tones["short"])
        mc.send_zone("thon-1", PlayCommand("normal", long_ref, soon(0.5)))
        await mc.wait_state("loa-01", "normal", "playing")
        emergency_at = soon(0.8)
        mc.send_zone(
            "thon-1", PlayCommand("lu-quet", alarm, emergency_at, tier="emergency", title="Khẩn cấp: lũ quét")
        )
        preempted = await mc.wait_state("loa-01", "normal", "preempted")
        assert 0.5 < preempted.seconds_played < 3.5
        assert "lu-quet" in preempted.reason
        await mc.wait_state("loa-01", "lu-quet", "done")
        first, second = node.timeline
        assert (first["broadcast_id"], first["outcome"]) == ("normal", "preempted")
        assert (second["broadcast_id"], second["outcome"]) == ("lu-quet", "done")
        assert second["start"] >= first["end"] - 0.005  # never two at once
        assert abs(second["start"] - emergency_at) < 0.1  # cut at the emergency's instant
        assert "done" not in mc.states("loa-01", "normal")
        await node.stop()
        await mc.close()

    run(scenario())


def test_priority_goes_before_queued_normal_and_nothing_overlaps(mosquitto, tmp_path: Path, tones) -> None:
    mosquitto.add_nodes({"loa-01": None})

    async def scenario() -> None:
        mc = MiniController(mosquitto.url)
        await mc.start()
        node = await make_node(mosquitto, "loa-01", None, tmp_path / "c").start()
        a, b, c = (mc.add_audio(tones[k]) for k in ("two", "short", "other"))
        mc.send_to("loa-01", PlayCommand("A", a, soon(0.5)))
        await mc.wait_state("loa-01", "A", "playing")
        mc.send_to("loa-01", PlayCommand("B-normal", b, soon(0.2)))
        mc.send_to("loa-01", PlayCommand("C-priority", c, soon(0.4), tier="priority"))
        await mc.wait_state("loa-01", "B-normal", "done")
        order = [e["broadcast_id"] for e in node.timeline]
        assert order == ["A", "C-priority", "B-normal"]
        assert all(e["outcome"] == "done" for e in node.timeline)  # a priority item does not cut
        for prev, nxt in zip(node.timeline, node.timeline[1:], strict=False):
            assert nxt["start"] >= prev["end"] - 0.005
        await node.stop()
        await mc.close()

    run(scenario())


# ------------------------------------------------------------------- stop, expiry, zones


def test_stop_one_broadcast_and_stop_all(mosquitto, tmp_path: Path, tones) -> None:
    mosquitto.add_nodes({"loa-01": "thon-1"})

    async def scenario() -> None:
        mc = MiniController(mosquitto.url)
        await mc.start()
        node = await make_node(mosquitto, "loa-01", "thon-1", tmp_path / "c").start()
        long_ref, short = mc.add_audio(tones["long"]), mc.add_audio(tones["short"])
        mc.send_zone("thon-1", PlayCommand("one", long_ref, soon(0.3)))
        await mc.wait_state("loa-01", "one", "playing")
        mc.send_zone("thon-1", StopCommand(broadcast_id="one", reason="Nhầm nội dung"))
        stopped = await mc.wait_state("loa-01", "one", "stopped")
        assert stopped.reason == "Nhầm nội dung" and 0 < stopped.seconds_played < 3.5
        assert node.timeline[0]["outcome"] == "stopped"
        mc.send_zone("thon-1", PlayCommand("two", long_ref, soon(0.3)))
        three = PlayCommand("three", short, soon(20.0))
        mc.send_zone("thon-1", three)
        await mc.wait_state("loa-01", "two", "playing")
        await mc.wait_state("loa-01", "three", "scheduled")
        mc.send_to("loa-01", StopCommand())
        await mc.wait_state("loa-01", "two", "stopped")
        await mc.wait_state("loa-01", "three", "stopped")
        assert node.agent.snapshot()["jobs"] == {}
        # A stopped broadcast that is delivered again (QoS 1 redelivery) is not played.
        mc.send_zone("thon-1", three)
        await mc.wait_for(lambda: mc.states("loa-01", "three").count("stopped") == 2, 5, "repeated receipt")
        assert [e["broadcast_id"] for e in node.timeline] == ["one", "two"]
        await node.stop()
        await mc.close()

    run(scenario())


def test_stale_plays_are_expired_not_played(mosquitto, tmp_path: Path, tones) -> None:
    mosquitto.add_nodes({"loa-01": None})

    async def scenario() -> None:
        mc = MiniController(mosquitto.url)
        await mc.start()
        node = await make_node(
            mosquitto, "loa-01", None, tmp_path / "c", sections={"player": {"max_late_s": 30}}
        ).start()
        short, long_ref = mc.add_audio(tones["short"]), mc.add_audio(tones["long"])
        now = time.time()
        mc.send_to("loa-01", PlayCommand("late", short, now - 10, valid_until=now - 1))
        mc.send_to("loa-01", PlayCommand("hours-late", short, now - 3600))
        assert "valid" in (await mc.wait_state("loa-01", "late", "expired")).reason
        await mc.wait_state("loa-01", "hours-late", "expired")
        # A normal item that cannot start before its valid_until (something long plays) expires.
        mc.send_to("loa-01", PlayCommand("long", long_ref, soon(0.3)))
        await mc.wait_state("loa-01", "long", "playing")
        mc.send_to("loa-01", PlayCommand("waiting", short, soon(0.1), valid_until=time.time() + 1.5))
        await mc.wait_state("loa-01", "waiting", "expired")
        await mc.wait_state("loa-01", "long", "done")
        assert [e["broadcast_id"] for e in node.timeline] == ["long"]
        assert mc.states("loa-01", "late") == ["expired"]
        await node.stop()
        await mc.close()

    run(scenario())


def test_mqtt_message_expiry_drops_a_play_queued_for_an_offline_node(
    mosquitto, tmp_path: Path, tones
) -> None:
    mosquitto.add_nodes({"loa-01": None})

    async def scenario() -> None:
        mc = MiniController(mosquitto.url)
        await mc.start()
        node = await make_node(mosquitto, "loa-01", None, tmp_path / "c").start()
        await node.stop()  # offline, but its persistent session keeps its subscriptions
        ref = mc.add_audio(tones["short"])
        mc.send_to("loa-01", PlayCommand("stale", ref, soon(0.2)), expiry_s=1)
        mc.send_to("loa-01", PlayCommand("kept", ref, soon(3.5)), expiry_s=3600)
        await mc.link.flush(5)
        # Time itself is what is tested: the broker counts expiry in whole seconds, so after
        # 2.2 s the 1 s message is certainly expired (nothing to wait on but the clock).
        await asyncio.sleep(2.2)
        back = await make_node(mosquitto, "loa-01", None, tmp_path / "c").start()
        await mc.wait_state("loa-01", "kept", "done")
        assert mc.states("loa-01", "stale") == []  # the broker dropped it; the node never saw it
        assert [e["broadcast_id"] for e in back.timeline] == ["kept"]
        await back.stop()
        await mc.close()

    run(scenario())


def test_zone_targets_and_duplicates(mosquitto, tmp_path: Path, tones) -> None:
    mosquitto.add_nodes({"loa-01": "thon-1", "loa-02": "thon-1", "loa-03": "thon-2"})

    async def scenario() -> None:
        mc = MiniController(mosquitto.url)
        await mc.start()
        nodes = {s: await make_node(mosquitto, s, z, tmp_path / s).start() for s, z in
                 (("loa-01", "thon-1"), ("loa-02", "thon-1"), ("loa-03", "thon-2"))}  # fmt: skip
        ref = mc.add_audio(tones["short"])
        cmd = PlayCommand("only-02", ref, soon(), targets=("loa-02",))
        mc.send_zone("thon-1", cmd)
        mc.send_to("loa-02", cmd)  # the same broadcast twice: played once
        await mc.wait_state("loa-02", "only-02", "done")
        everyone = PlayCommand("all-thon-1", ref, soon())
        mc.send_zone("thon-1", everyone)
        await mc.wait_state("loa-01", "all-thon-1", "done")
        await mc.wait_state("loa-02", "all-thon-1", "done")
        assert mc.states("loa-01", "only-02") == []
        assert mc.states("loa-02", "only-02").count("playing") == 1
        assert [e["broadcast_id"] for e in nodes["loa-02"].timeline] == ["only-02", "all-thon-1"]
        assert nodes["loa-03"].timeline == [] and mc.states("loa-03") == []
        await asyncio.gather(*(n.stop() for n in nodes.values()))
        await mc.close()

    run(scenario())


def test_a_reused_broadcast_id_for_other_audio_is_a_new_item(mosquitto, tmp_path: Path, tones) -> None:
    """The controller's database recreated while nodes kept running: ids "1", "2", ... come
    again for other announcements. The node must play the new one, not answer the old receipt."""
    mosquitto.add_nodes({"loa-01": None})

    async def scenario() -> None:
        mc = MiniController(mosquitto.url)
        await mc.start()
        node = await make_node(mosquitto, "loa-01", None, tmp_path / "n").start()
        first = mc.add_audio(tones["short"])
        second = mc.add_audio(tones["other"])
        old = PlayCommand("1", first, soon())
        mc.send_to("loa-01", old)
        await mc.wait_state("loa-01", "1", "done")
        mc.send_to("loa-01", old)  # a true redelivery: the receipt again, no second play
        await mc.wait_for(lambda: mc.states("loa-01", "1").count("done") == 2, 10, "repeated receipt")
        mc.send_to("loa-01", PlayCommand("1", second, soon()))  # same id, other audio
        await mc.wait_for(lambda: mc.states("loa-01", "1").count("done") == 3, 10, "new item done")
        assert mc.states("loa-01", "1").count("playing") == 2
        assert [e["audio_id"] for e in node.timeline] == [first.id, second.id]
        last_done = [e for s, e in mc.events if e.broadcast_id == "1" and e.state == "done"][-1]
        assert last_done.audio_id == second.id
        await node.stop()
        await mc.close()

    run(scenario())


# ------------------------------------------------------------------------ health, parts


def test_health_reports_the_node(mosquitto, tmp_path: Path, tones) -> None:
    mosquitto.add_nodes({"loa-01": "thon-1"})
    signal_file = tmp_path / "signal"
    signal_file.write_text("rssi: -71 dBm\n")
    volts = tmp_path / "volts"
    volts.write_text("11.8\n")

    async def scenario() -> None:
        mc = MiniController(mosquitto.url)
        await mc.start()
        sections = {
            "health": {"interval_s": 0.2, "signal_file": str(signal_file)},
            "power": {"voltage_file": str(volts), "backup_command": "echo battery"},
        }
        node = await make_node(
            mosquitto, "loa-01", "thon-1", tmp_path / "c", clock=SkewedClock(1.5), sections=sections
        ).start()
        ref = mc.add_audio(tones["long"])
        mc.send_to("loa-01", PlayCommand("b1", ref, soon(0.3)))
        await mc.wait_state("loa-01", "b1", "playing")
        await mc.wait_for(
            lambda: any(h.playing == "b1" for h in mc.health["loa-01"]), 5, "health while playing"
        )
        health = next(h for h in mc.health["loa-01"] if h.playing == "b1")
        assert health.zone == "thon-1" and health.player == "null"
        assert health.clock_offset_ms == pytest.approx(-1500, abs=50)
        assert health.cache_bytes == len(tones["long"])
        assert health.signal_dbm == -71.0
        assert health.disk_free_bytes is not None and health.disk_free_bytes > 0
        assert health.amplifier_on is True and health.volume == 80
        assert abs(health.ts - time.time()) < 0.5  # in controller time, not the 1.5 s skewed clock
        assert health.supply_v == 11.8 and health.on_backup is True  # next to the 4G signal
        # The level sent to the output over the last second (the null player: the file's level
        # there), at the volume played (80: 1.9 dB below full scale).
        assert health.output_dbfs == pytest.approx(SINE_DBFS + 20 * math.log10(0.8), abs=1.0)
        await mc.wait_state("loa-01", "b1", "done")
        count = len(mc.health["loa-01"])
        await mc.wait_for(lambda: len(mc.health["loa-01"]) > count, 5, "health after playing")
        assert mc.health["loa-01"][-1].output_dbfs is None  # idle: nothing measured
        uptimes = [h.uptime_s for h in mc.health["loa-01"]]
        assert uptimes == sorted(uptimes)
        await node.stop()
        await mc.close()

    run(scenario())


def test_quiet_hours_lower_normal_items_but_not_emergencies(mosquitto, tmp_path: Path, tones) -> None:
    mosquitto.add_nodes({"loa-01": None})
    # Quiet hours covering the whole day in UTC, so the test does not depend on the hour.
    quiet = {"volume": {"quiet_hours": {"start": "00:00", "end": "23:59", "volume": 20}, "timezone": "UTC"}}

    async def scenario() -> None:
        mc = MiniController(mosquitto.url)
        await mc.start()
        node = await make_node(mosquitto, "loa-01", None, tmp_path / "c", sections=quiet).start()
        ref = mc.add_audio(tones["short"])
        mc.send_to("loa-01", PlayCommand("night", ref, soon()))
        night = await mc.wait_state("loa-01", "night", "done")
        mc.send_to("loa-01", PlayCommand("alarm", ref, soon(), tier="emergency"))
        alarm = await mc.wait_state("loa-01", "alarm", "done")
        assert [e["volume"] for e in node.timeline] == [20, 80]
        assert alarm.rms_dbfs - night.rms_dbfs == pytest.approx(12.04, abs=0.5)  # 20 log10(80/20)
        await node.stop()
        await mc.close()

    run(scenario())


def test_player_failure_is_reported_and_a_broken_relay_does_not_silence(
    mosquitto, tmp_path: Path, tones
) -> None:
    mosquitto.add_nodes({"loa-01": None, "loa-02": None})

    async def scenario() -> None:
        mc = MiniController(mosquitto.url)
        await mc.start()
        broken = await make_node(
            mosquitto,
            "loa-01",
            None,
            tmp_path / "a",
            player=FakePlayer(fail_play="không có thiết bị âm thanh"),
        ).start()
        relay = FakeAmplifier(fail=True)
        no_relay = await make_node(
            mosquitto, "loa-02", None, tmp_path / "b", player=FakePlayer(), amplifier=relay
        ).start()
        ref = mc.add_audio(tones["short"])
        mc.send_to("loa-01", PlayCommand("b1", ref, soon()))
        mc.send_to("loa-02", PlayCommand("b1", ref, soon()))
        failed = await mc.wait_state("loa-01", "b1", "failed")
        assert failed.reason == "không có thiết bị âm thanh"
        done = await mc.wait_state("loa-02", "b1", "done")
        assert done.seconds_played == pytest.approx(1.0, abs=0.1)
        assert no_relay.agent.health().last_error == "relay does not answer"
        await asyncio.gather(broken.stop(), no_relay.stop())
        await mc.close()

    run(scenario())


def test_decoded_node_messages_are_what_the_controller_gets(mosquitto, tmp_path: Path) -> None:
    """Everything a node publishes decodes with the protocol module (the controller's view)."""
    mosquitto.add_nodes({"loa-01": None})

    async def scenario() -> None:
        raw: list[bytes] = []
        mc = MiniController(mosquitto.url)
        original = mc._on_message
        mc.link.on_message = lambda m: (raw.append(m.payload), original(m))
        await mc.start()
        node = await make_node(
            mosquitto, "loa-01", None, tmp_path / "c", sections={"health": {"interval_s": 0.1}}
        ).start()
        await mc.wait_for(lambda: len(mc.health["loa-01"]) >= 2, 5, "health")
        await node.stop()
        await mc.close()
        assert raw and all(decode_node_message(p) for p in raw)

    run(scenario())


def test_receipts_wait_out_a_broker_outage(mosquitto, tmp_path: Path, tones) -> None:
    """Nothing a node says while the broker is down is dropped: it goes out after the reconnect."""
    mosquitto.add_nodes({"loa-01": None})

    async def scenario() -> None:
        mc = MiniController(mosquitto.url)
        await mc.start()
        node = await make_node(mosquitto, "loa-01", None, tmp_path / "c").start()
        await asyncio.to_thread(mosquitto.broker.stop)
        await mc.wait_for(lambda: not node.agent.connected.is_set(), 10, "node notices the outage")
        node.agent._event("error", reason="said while offline")
        assert node.agent.link.outbox_size >= 1
        await asyncio.to_thread(mosquitto.broker.start)
        await mc.wait_for(
            lambda: any(e.reason == "said while offline" for _, e in mc.events), 20, "late receipt"
        )
        assert node.agent.link.outbox_size == 0
        await node.stop()
        await mc.close()

    run(scenario())


def test_leftover_audio_subscription_is_dropped(mosquitto, tmp_path: Path, tones) -> None:
    """Chunks of a file the node is not fetching (a subscription left in its persistent session
    by a crash) make it leave that audio topic."""
    mosquitto.add_nodes({"loa-01": None})

    async def scenario() -> None:
        mc = MiniController(mosquitto.url)
        await mc.start()
        ref = mc.add_audio(tones["short"], chunk_size=4096)
        node = make_node(mosquitto, "loa-01", None, tmp_path / "c")
        node.agent.link.want(mc.topics.audio_filter(ref.id))  # as if restored from the old session
        await node.start()
        mc.publish_chunks(ref.id, [0])
        await mc.wait_for(lambda: ref.id in node.agent.fetcher.unwanted, 5, "unwanted chunk seen")
        assert not node.agent.link.wants(mc.topics.audio_filter(ref.id))
        assert not node.agent.cache.has(ref.id) and node.timeline == []
        await node.stop()
        await mc.close()

    run(scenario())

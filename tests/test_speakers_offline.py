"""Clusters keep working when the centre does not (docs/protocol.md section 11), against a real
mosquitto (TLS for the nodes, as enrolled): a node holds its scheduled slots' audio ahead, airs a
slot on time from its cache when the broker is down, sends its receipts once when the broker is
back, never airs a slot twice, and leaves the slot to the controller while the link is up."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from speakers.protocol import Lookahead, PlayCommand, Slot, StopCommand
from tests.mini_controller import MiniController, make_node, make_tone_mp3, run, until

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.fixtures_tls"]

SLOT = "s7@2027-01-15T06:00:00Z"
# Offline airing starts this long after the broker became unreachable (config lookahead.offline_after_s).
OFFLINE_AFTER_S = 0.5


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("tones")
    return {
        "bulletin": make_tone_mp3(folder / "bulletin.mp3", 2.0, 440),
        "other": make_tone_mp3(folder / "other.mp3", 1.0, 660),
    }


def offline_node(broker, tmp_path: Path, speaker: str = "loa-01", **sections):  # type: ignore[no-untyped-def]
    return make_node(
        broker,
        speaker,
        "thon-1",
        tmp_path / speaker,
        sections={"lookahead": {"offline_after_s": OFFLINE_AFTER_S}, **sections},
    )


async def hold_ahead(mc: MiniController, node, slot: Slot) -> None:  # type: ignore[no-untyped-def]
    """Publish the node's lookahead and wait until the slot's audio is in its cache, pinned."""
    mc.send_lookahead(node.id, Lookahead(generated_at=time.time(), slots=(slot,), horizon_s=172800))
    await mc.wait_for(
        lambda: slot.audio.id in node.agent.lookahead.pinned and node.agent.cache.has(slot.audio.id)
    )


async def all_delivered(mc: MiniController, node) -> None:  # type: ignore[no-untyped-def]
    """Everything the node queued has reached the controller: its outbox is empty and a marker
    sent after it (same topic, in order) has arrived."""
    await until(
        lambda: node.agent.link.outbox_size == 0 and node.agent.connected.is_set(), 20, "outbox empty"
    )
    marker = f"marker-{time.monotonic()}"
    node.agent._event("error", reason=marker)
    await mc.wait_for(lambda: any(e.reason == marker for _, e in mc.events), 10, "marker")


def test_a_node_airs_its_slot_from_its_cache_while_the_broker_is_down(
    tls_broker, tmp_path: Path, tones
) -> None:
    broker = tls_broker(nodes={"loa-01": "thon-1"})

    async def scenario() -> None:
        mc = MiniController(broker.url)
        await mc.start()
        node = await offline_node(broker, tmp_path).start()
        ref = mc.add_audio(tones["bulletin"], chunk_size=4096)
        start_at = time.time() + 4.0
        slot = Slot(slot=SLOT, start_at=start_at, audio=ref, title="Bản tin sáng", valid_until=start_at + 120)
        await hold_ahead(mc, node, slot)
        # Fetched ahead through the chunk mechanism: a need_audio that names the slot, no broadcast.
        [(_, need)] = mc.need_audio
        assert need.slot == SLOT and need.broadcast_id is None and need.audio_id == ref.id
        assert (tmp_path / "loa-01" / "lookahead.json").exists()

        await asyncio.to_thread(broker.stop)  # the centre goes down before the air time
        await until(lambda: not node.agent.connected.is_set(), what="the node notices")
        await until(lambda: node.timeline and node.timeline[0].get("outcome") == "done", 15, "offline airing")
        [entry] = node.timeline
        assert abs(entry["start"] - start_at) < 0.1  # on time, on the node's own clock
        assert entry["slot"] == SLOT and entry["offline"] is True and entry["audio_id"] == ref.id
        saved = (tmp_path / "loa-01" / "receipts-outbox.jsonl").read_text(encoding="utf-8").splitlines()
        assert [json.loads(json.loads(line)["p"])["state"] for line in saved] == ["playing", "done"]

        await asyncio.to_thread(broker.start)
        await all_delivered(mc, node)
        receipts = mc.slot_events("loa-01", SLOT)
        assert [e.state for e in receipts] == ["need_audio", "playing", "done"]  # each exactly once
        playing, done = receipts[1:]
        for event in (playing, done):
            assert event.offline is True and event.broadcast_id is None and event.audio_id == ref.id
        assert abs(playing.started_at - start_at) < 0.1
        assert done.started_at == playing.started_at
        assert done.finished_at == pytest.approx(start_at + 2.0, abs=0.3)
        assert done.seconds_played == pytest.approx(2.0, abs=0.15)
        assert not (tmp_path / "loa-01" / "receipts-outbox.jsonl").exists()  # acknowledged: removed

        # The controller, back, sends the play of that airing: answered from the record, not replayed.
        mc.send_to("loa-01", PlayCommand("b9", ref, time.time() + 0.5, slot=SLOT, valid_until=start_at + 120))
        answer = await mc.wait_state("loa-01", "b9", "done")
        assert answer.slot == SLOT and answer.offline is True and answer.started_at == playing.started_at
        assert mc.states("loa-01", "b9") == ["playing", "done"]
        # A redelivery gets the same answer; nothing plays again.
        mc.send_to("loa-01", PlayCommand("b9", ref, time.time() + 0.5, slot=SLOT, valid_until=start_at + 120))
        await mc.wait_for(
            lambda: mc.states("loa-01", "b9") == ["playing", "done"] * 2, 10, "the answer again"
        )
        assert len(node.timeline) == 1
        await node.stop()
        await mc.close()

    run(scenario(), timeout=90)


def test_while_the_link_is_up_the_controller_rules_and_a_slot_airs_once(
    tls_broker, tmp_path: Path, tones
) -> None:
    broker = tls_broker(nodes={"loa-01": "thon-1"})

    async def scenario() -> None:
        mc = MiniController(broker.url)
        await mc.start()
        node = await offline_node(broker, tmp_path).start()
        ref = mc.add_audio(tones["bulletin"], chunk_size=4096)
        start_at = time.time() + 2.0
        slot = Slot(slot=SLOT, start_at=start_at, audio=ref, valid_until=start_at + 60)
        await hold_ahead(mc, node, slot)
        # Connected at the air time and no play command: the node does not air on its own.
        await until(lambda: node.agent.controller_now() > start_at + 1.0, what="past the slot's start")
        assert node.timeline == [] and node.agent.lookahead.offline_jobs == {}
        # The controller's play (late, but valid) airs it, from the cache: no audio requested.
        mc.send_zone(
            "thon-1", PlayCommand("b1", ref, time.time() + 0.5, slot=SLOT, valid_until=start_at + 60)
        )
        done = await mc.wait_state("loa-01", "b1", "done")
        assert done.slot == SLOT and done.offline is False and done.finished_at is not None
        assert [e.state for _, e in mc.need_audio] == ["need_audio"]  # only the fetch ahead
        # The centre goes down inside the slot's window: the node does not air it again...
        await asyncio.to_thread(broker.stop)
        await until(lambda: not node.agent.connected.is_set(), what="the node notices")
        await until(lambda: SLOT in node.agent.lookahead.aired, what="aired record")
        # ...not even after a restart of the agent while the broker is away (the record is on disk).
        await node.stop()
        again = offline_node(broker, tmp_path)
        task = asyncio.create_task(again.agent.run())
        await until(lambda: again.agent.lookahead.slots, what="lookahead loaded from disk")
        assert again.agent.lookahead.aired[SLOT].state == "done"
        await until(
            lambda: (
                again.agent.link.down_since is not None
                and time.monotonic() - again.agent.link.down_since > OFFLINE_AFTER_S + 1.0
            ),
            what="offline for longer than offline_after_s",
        )
        assert again.timeline == [] and again.agent.lookahead.offline_jobs == {}
        assert len(node.timeline) == 1
        again.kill()
        await task
        await mc.close()

    run(scenario(), timeout=90)


def test_a_restarted_node_airs_offline_and_its_receipts_survive_another_restart(
    tls_broker, tmp_path: Path, tones
) -> None:
    broker = tls_broker(nodes={"loa-01": "thon-1"})

    async def scenario() -> None:
        mc = MiniController(broker.url)
        await mc.start()
        node = await offline_node(broker, tmp_path).start()
        ref = mc.add_audio(tones["other"], chunk_size=4096)
        start_at = time.time() + 4.0
        slot = Slot(
            slot=SLOT, start_at=start_at, audio=ref, tier="priority", volume=40, valid_until=start_at + 60
        )
        await hold_ahead(mc, node, slot)
        node.kill()  # power cut...
        await node.task
        await asyncio.to_thread(broker.stop)  # ...and the centre is down too
        # The node comes back without the broker: its lookahead and audio are on its disk.
        again = offline_node(broker, tmp_path)
        task = asyncio.create_task(again.agent.run())
        await until(
            lambda: again.timeline and again.timeline[0].get("outcome") == "done", 15, "offline airing"
        )
        [entry] = again.timeline
        assert abs(entry["start"] - start_at) < 0.1 and entry["slot"] == SLOT
        assert entry["volume"] == 40 and entry["tier"] == "priority"
        again.kill()  # another power cut before the broker is back: the receipts are on disk
        await task
        third = offline_node(broker, tmp_path)
        await asyncio.to_thread(broker.start)
        await third.start(synced=False)
        await all_delivered(mc, third)
        states = [e.state for e in mc.slot_events("loa-01", SLOT)]
        assert states == ["need_audio", "playing", "done"]
        assert third.timeline == []  # the third run did not air it again
        await third.stop()
        await mc.close()

    run(scenario(), timeout=90)


def test_the_link_back_before_the_start_leaves_the_slot_to_the_controller(
    tls_broker, tmp_path: Path, tones
) -> None:
    broker = tls_broker(nodes={"loa-01": "thon-1"})

    async def scenario() -> None:
        mc = MiniController(broker.url)
        await mc.start()
        # A long preparation lead: the offline airing is queued well before its start.
        node = await offline_node(broker, tmp_path, player={"kind": "null", "prepare_lead_s": 3.0}).start()
        ref = mc.add_audio(tones["other"], chunk_size=4096)
        start_at = time.time() + 6.0
        slot = Slot(slot=SLOT, start_at=start_at, audio=ref, valid_until=start_at + 60)
        await hold_ahead(mc, node, slot)
        await asyncio.to_thread(broker.stop)
        await until(lambda: SLOT in node.agent.lookahead.offline_jobs, 10, "queued for offline airing")
        await asyncio.to_thread(broker.start)
        await until(lambda: node.agent.connected.is_set(), 10, "reconnected")
        # At the start instant the link is up: the node gives the slot back to the controller.
        await until(lambda: node.agent.controller_now() > start_at + 0.5, what="past the start")
        assert node.timeline == [] and SLOT not in node.agent.lookahead.aired
        assert node.agent.playout.jobs == {}
        mc.send_zone(
            "thon-1", PlayCommand("b1", ref, time.time() + 0.5, slot=SLOT, valid_until=start_at + 60)
        )
        await mc.wait_state("loa-01", "b1", "done")
        [entry] = node.timeline
        assert entry["offline"] is False and entry["broadcast_id"] == "b1"
        await all_delivered(mc, node)
        assert [e.state for e in mc.slot_events("loa-01", SLOT) if e.offline] == []
        await node.stop()
        await mc.close()

    run(scenario(), timeout=90)


def test_a_play_for_a_slot_that_airs_offline_right_now_is_answered_not_replayed(
    tls_broker, tmp_path: Path, tones
) -> None:
    """The node reconnects in the middle of its offline airing and the controller's play for the
    slot arrives: the node adds the broadcast id to the airing (its receipts are copied to it),
    and a stop for that broadcast id stops the airing."""
    broker = tls_broker(nodes={"loa-01": "thon-1"})

    async def scenario() -> None:
        mc = MiniController(broker.url)
        await mc.start()
        node = await offline_node(broker, tmp_path).start()
        long = mc.add_audio(make_tone_mp3(tmp_path / "long.mp3", 8.0), chunk_size=8192)
        start_at = time.time() + 4.0
        await hold_ahead(mc, node, Slot(slot=SLOT, start_at=start_at, audio=long, valid_until=start_at + 60))
        await asyncio.to_thread(broker.stop)
        await until(lambda: node.timeline, 15, "offline airing started")
        await asyncio.to_thread(broker.start)
        await until(lambda: node.agent.connected.is_set(), 10, "reconnected")
        mc.send_to("loa-01", PlayCommand("b5", long, time.time() + 0.5, slot=SLOT, valid_until=start_at + 60))
        playing = await mc.wait_state("loa-01", "b5", "playing")
        assert playing.offline is True and abs(playing.started_at - start_at) < 0.1
        mc.send_to("loa-01", StopCommand(broadcast_id="b5", reason="Hủy"))
        stopped = await mc.wait_state("loa-01", "b5", "stopped")
        assert 0 < stopped.seconds_played < 8.0 and stopped.reason == "Hủy"
        await mc.wait_for(lambda: any(e.state == "stopped" and e.broadcast_id is None
                                      for e in mc.slot_events("loa-01", SLOT)), 10)  # fmt: skip
        assert len(node.timeline) == 1
        await node.stop()
        await mc.close()

    run(scenario(), timeout=90)


def test_a_slot_without_its_audio_fails_offline_and_a_malformed_lookahead_is_refused(
    tls_broker, tmp_path: Path, tones
) -> None:
    broker = tls_broker(nodes={"loa-01": "thon-1"})

    async def scenario() -> None:
        mc = MiniController(broker.url)
        await mc.start()
        mc.serve_audio = False  # the controller cannot send the audio ahead
        node = await offline_node(
            broker, tmp_path, audio={"max_requests": 1, "request_timeout_s": 0.2}
        ).start()
        ref = mc.add_audio(tones["other"], chunk_size=4096)
        start_at = time.time() + 3.0
        slot = Slot(slot=SLOT, start_at=start_at, audio=ref, valid_until=start_at + 60)
        mc.send_lookahead("loa-01", Lookahead(generated_at=time.time(), slots=(slot,)))
        await mc.wait_for(lambda: mc.need_audio, 10, "asked for the audio ahead")
        bad = b'{"v": 1, "type": "lookahead", "generated_at": 2, "slots": [{"slot": "x", "start_at": 1}]}'
        mc.send_lookahead("loa-01", bad)
        error = await mc.wait_state("loa-01", None, "error")
        assert "audio" in (error.reason or "")
        assert list(node.agent.lookahead.slots) == [SLOT]  # the previous lookahead is kept
        await asyncio.to_thread(broker.stop)
        await until(lambda: SLOT in node.agent.lookahead.lapsed, 10, "the slot given up")
        await asyncio.to_thread(broker.start)
        await all_delivered(mc, node)
        failed = [e for e in mc.slot_events("loa-01", SLOT) if e.state == "failed"]
        assert len(failed) == 1 and failed[0].offline and "not in the cache" in (failed[0].reason or "")
        assert node.timeline == []
        await node.stop()
        await mc.close()

    run(scenario(), timeout=90)


def test_an_airing_cut_by_a_power_cut_counts_as_aired_and_is_reported(tls_broker, tmp_path: Path) -> None:
    broker = tls_broker(nodes={"loa-01": "thon-1"})

    async def scenario() -> None:
        mc = MiniController(broker.url)
        await mc.start()
        node = await offline_node(broker, tmp_path).start()
        long = mc.add_audio(make_tone_mp3(tmp_path / "long.mp3", 8.0), chunk_size=8192)
        start_at = time.time() + 4.0
        await hold_ahead(mc, node, Slot(slot=SLOT, start_at=start_at, audio=long, valid_until=start_at + 60))
        await asyncio.to_thread(broker.stop)
        await until(lambda: node.timeline, 15, "offline airing started")
        node.kill()  # power cut in the middle of the bulletin
        await node.task
        await asyncio.to_thread(broker.start)
        again = await offline_node(broker, tmp_path).start(synced=False)
        await all_delivered(mc, again)
        receipts = [e for e in mc.slot_events("loa-01", SLOT) if e.state != "need_audio"]
        assert [e.state for e in receipts] == ["playing", "stopped"]
        assert receipts[1].reason == "agent restarted while airing" and receipts[1].offline
        assert again.agent.lookahead.aired[SLOT].state == "stopped"
        # Still inside the slot's window and online: the node does not air the rest again.
        assert again.timeline == [] and again.agent.lookahead.offline_jobs == {}
        await again.stop()
        await mc.close()

    run(scenario(), timeout=90)

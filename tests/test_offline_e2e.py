"""Issue 9, done when: "a test cuts the broker for a scheduled bulletin's air time: the node airs it
on time from its own cache, and its receipt is recorded once after reconnection" — the real
controller (scheduler, lookahead publisher, lifecycle), a real mosquitto, the simulator's agents."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from broadcaster.broadcasts.state import slot_key
from broadcaster.models import Broadcast, DeliveryAttempt
from tests.fixtures_controller import E2EController, wait_until

pytestmark = pytest.mark.integration

THON_1 = ("loa-01", "loa-02", "loa-03")


def test_a_broker_cut_at_air_time_the_nodes_air_from_their_cache_and_report_once(
    mosquitto, tmp_path: Path
) -> None:
    ctl = E2EController(mosquitto, tmp_path / "instance")
    try:
        scheduler = ctl.services.scheduler
        assert scheduler is not None and scheduler.lookahead is not None
        at = (datetime.now(UTC) + timedelta(seconds=20)).replace(microsecond=0)
        sid = scheduler.create_schedule(
            {
                "text": "Bản tin phát khi mất kết nối.",
                "kind": "once",
                "at": at.isoformat(),
                "targets": ["thon-1"],
            }
        )
        key = scheduler.pending_render(sid).result(timeout=30)
        assert key
        audio_id = ctl.services.speech.store.meta(key)["sha256"]
        # Each node of thôn 1 holds the slot's audio ahead.
        for sid_ in THON_1:
            wait_until(
                lambda s=sid_: (
                    audio_id in ctl.sim.agent(s).lookahead.pinned and ctl.sim.agent(s).cache.has(audio_id)
                ),
                timeout=20,
                what=f"{sid_} holds the slot ahead",
            )
        cut_at = at.timestamp() - 8.0  # more than the nodes' 5 s "offline after" before air time
        while time.time() < cut_at:
            time.sleep(0.05)
        mosquitto.broker.stop()
        try:
            wait_until(
                lambda: all(
                    any(
                        e.get("slot") == slot_key(sid, at) and e.get("outcome") == "done"
                        for e in ctl.timeline(s)
                    )
                    for s in THON_1
                ),
                timeout=40,
                what="offline airings",
            )
        finally:
            mosquitto.broker.start()
        for s in THON_1:
            (entry,) = [e for e in ctl.timeline(s) if e.get("slot") == slot_key(sid, at)]
            assert entry["offline"] is True
            assert abs(entry["start"] - at.timestamp()) < 0.5  # on time, from its own cache and clock

        def recorded() -> dict[str, str]:
            with ctl.services.sessions() as session:
                row = session.scalar(select(Broadcast).where(Broadcast.schedule_id == sid))
                return {} if row is None else {d.speaker_id: d.state for d in row.deliveries}

        wait_until(
            lambda: recorded() and all(recorded().get(s) == "done" for s in THON_1),
            timeout=60,
            what="receipts",
        )
        with ctl.services.sessions() as session:
            row = session.scalar(select(Broadcast).where(Broadcast.schedule_id == sid))
            assert row.fire_time == at
            attempts = session.scalars(
                select(DeliveryAttempt).where(DeliveryAttempt.broadcast_id == row.id)
            ).all()
        # Recorded once: one airing per node, with the node's own start time.
        assert sorted((a.speaker_id, a.attempt, a.outcome) for a in attempts) == [
            (s, 0, "done") for s in THON_1
        ]
        assert all(abs(a.started_at.timestamp() - at.timestamp()) < 0.5 for a in attempts)
        # Nothing aired twice: the controller's play for the slot was answered from the record.
        for s in THON_1:
            assert len([e for e in ctl.timeline(s) if e.get("audio_id") == audio_id]) == 1
    finally:
        ctl.close()

"""The controller's side of offline airing (docs/protocol.md section 11): each node's lookahead,
the slot on scheduled play commands, and offline receipts recorded once, even for an airing the
controller has no record of (it was down)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from broadcaster.broadcasts.state import parse_slot, slot_key
from broadcaster.models import Broadcast, DeliveryAttempt, Schedule, Zone
from broadcaster.scheduling import SchedulerService
from broadcaster.scheduling.lookahead import LookaheadPublisher
from speakers.protocol import Event, Lookahead, PlayCommand, decode_command, decode_lookahead
from tests.fixtures_controller import COMMUNE_NODES, UnitController, unit_services, wait_until

HCM = "Asia/Ho_Chi_Minh"


def test_slot_keys_round_trip() -> None:
    fire = datetime(2027, 1, 15, 6, 0, tzinfo=UTC)
    assert slot_key(12, fire) == "s12@2027-01-15T06:00:00Z"
    assert parse_slot("s12@2027-01-15T06:00:00Z") == (12, fire)
    for bad in (None, "", "12@2027", "sx@2027-01-15T06:00:00Z", "s12@yesterday", "s0@2027-01-15T06:00:00Z"):
        assert parse_slot(bad) is None


# ------------------------------------------------------------------ the lookahead


def _schedule(services, **fields) -> int:  # type: ignore[no-untyped-def]
    """A schedule with its audio rendered ahead (as the scheduler's render-ahead leaves it)."""
    data = {"text": "Bản tin sáng của xã.", "kind": "daily", "time": "06:00", **fields}
    book = SchedulerService(
        services.settings, services.sessions, services.broadcasts, services.speech, services.validator
    ).book
    sid = book.create(data)
    key = services.speech.render(data["text"]).key
    with services.sessions.begin() as session:
        session.get(Schedule, sid).audio_key = key
    return sid


def test_each_node_gets_its_slots_ahead_and_nothing_it_must_not_air(tmp_path: Path) -> None:
    services = unit_services(tmp_path)
    try:
        daily = _schedule(services, targets=["thon-1"])
        _schedule(services, text="Báo động lũ.", tier="emergency", targets=["all"])  # needs the link
        quiet = _schedule(services, text="Nhắc nộp thuế.", time="22:00", targets=["thon-2"])
        with services.sessions.begin() as session:
            session.get(Zone, "thon-2").quiet_start, session.get(Zone, "thon-2").quiet_end = "21:00", "05:00"
        publisher = LookaheadPublisher(
            services.sessions, services.speech.store, services.transport, ZoneInfo(HCM), grace_s=900
        )
        now = datetime(2027, 1, 15, 0, 0, tzinfo=UTC).timestamp()  # 07:00 in Hà Nội
        plan = publisher.compute(now)
        assert set(plan) == set(COMMUNE_NODES)
        thon1 = [s for s, z in COMMUNE_NODES.items() if z == "thon-1"]
        for sid in thon1:
            keys = [s.slot for s in plan[sid]]
            # 06:00 local = 23:00 UTC: the next two fire times within 48 h
            assert keys == [f"s{daily}@2027-01-15T23:00:00Z", f"s{daily}@2027-01-16T23:00:00Z"]
            slot = plan[sid][0]
            assert slot.valid_until == slot.start_at + 900 and slot.audio.duration_s > 0
        for sid, zone in COMMUNE_NODES.items():
            if zone != "thon-1":
                assert plan[sid] == []  # the emergency never, the 22:00 one held by quiet hours
        assert all(not s.slot.startswith(f"s{quiet}@") for slots in plan.values() for s in slots)

        publisher.publish()
        retained = {t: p for t, p, *_ in services.transport.sent if t.endswith("/lookahead")}
        assert len(retained) == 9
        message = decode_lookahead(retained["loa/speakers/loa-01/lookahead"])
        assert isinstance(message, Lookahead) and message.slots
        assert all(parse_slot(s.slot)[0] == daily for s in message.slots)
        # A cluster disabled: its retained lookahead is cleared.
        services.registry.update_speaker("loa-09", enabled=False)
        publisher.publish()
        assert [p for t, p, *_ in services.transport.sent if t == "loa/speakers/loa-09/lookahead"][-1] == b""
    finally:
        services.db_engine.dispose()


def test_the_play_of_a_scheduled_airing_carries_its_slot(tmp_path: Path) -> None:
    uc = UnitController(tmp_path)
    try:
        scheduler = SchedulerService(
            uc.services.settings, uc.sessions, uc.manager, uc.speech, uc.services.validator, uc.transport
        )
        at = (datetime.now(UTC) - timedelta(seconds=2)).replace(microsecond=0)
        sid = scheduler.create_schedule(
            {"text": "Tin hẹn giờ.", "kind": "once", "at": at.isoformat(), "targets": ["loa-01"]}
        )
        bid = scheduler.fire_schedule(sid)
        uc.wait_state(bid, "done")
        plays = [decode_command(p) for t, p, *_ in uc.transport.sent if t == "loa/speakers/loa-01/cmd"]
        assert [p.slot for p in plays if isinstance(p, PlayCommand)] == [slot_key(sid, at)]
    finally:
        uc.close()


# ------------------------------------------------------------------ offline receipts


def _offline(node, state: str, slot: str, started: float, **fields) -> None:  # type: ignore[no-untyped-def]
    """What a node sends for an airing it made on its own while the broker was down."""
    event = Event(
        state=state, broadcast_id=None, slot=slot, offline=True, started_at=started, ts=started, **fields
    )
    node.transport.publish(node.topics.events(node.id), event.encode())


@pytest.mark.parametrize("late", [False, True])
def test_offline_receipts_of_an_airing_the_controller_never_recorded(tmp_path: Path, late: bool) -> None:
    """The controller was down at the slot's time. Back within the grace, the node's receipts make
    the airing's record and the other clusters get it now; back after the grace, the airing is
    recorded missed except where the node aired it. Each receipt is applied once."""
    uc = UnitController(tmp_path)
    try:
        scheduler = SchedulerService(
            uc.services.settings, uc.sessions, uc.manager, uc.speech, uc.services.validator
        )
        fire = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=(2000 if late else 30))
        sid = scheduler.create_schedule(
            {"text": "Bản tin tự phát.", "kind": "daily", "time": "06:00", "targets": ["thon-1"]}
        )
        slot = slot_key(sid, fire)
        node = uc.nodes["loa-01"]
        started = fire.timestamp() + 0.01
        for _ in range(2):  # sent twice (a node crashed before the broker acknowledged)
            _offline(node, "playing", slot, started)
            _offline(node, "done", slot, started, finished_at=started + 3, seconds_played=3.0, rms_dbfs=-20.0)

        def record() -> Broadcast | None:
            with uc.sessions() as session:
                row = session.scalar(
                    select(Broadcast).where(Broadcast.schedule_id == sid, Broadcast.fire_time == fire)
                )
                if row is not None:
                    _ = [d.state for d in row.deliveries], [a.outcome for a in row.attempts]
                return row

        row = wait_until(
            lambda: (
                (r := record())
                and {d.speaker_id: d.state for d in r.deliveries}.get("loa-01") == "done"
                and r
            ),
            what="recorded",
        )
        if late:
            b = uc.wait_state(row.id, "partial")
            assert {d["speaker"]: d["state"] for d in b["deliveries"]} == {
                "loa-01": "done",
                "loa-02": "missed",
                "loa-03": "missed",
            }
        else:
            b = uc.wait_state(row.id, "done")  # the two others got it from the controller now
            assert [e["broadcast_id"] for e in uc.nodes["loa-02"].timeline] == [str(row.id)]
            assert uc.nodes["loa-01"].timeline == []  # it aired on its own; no second airing
        with uc.sessions() as session:
            attempts = session.scalars(
                select(DeliveryAttempt).where(
                    DeliveryAttempt.broadcast_id == row.id, DeliveryAttempt.speaker_id == "loa-01"
                )
            ).all()
            assert [(a.attempt, a.outcome, a.seconds_played) for a in attempts] == [(0, "done", 3.0)]
            assert abs(attempts[0].started_at.timestamp() - started) < 0.01
        d1 = next(d for d in b["deliveries"] if d["speaker"] == "loa-01")
        assert d1["seconds_played"] == 3.0
    finally:
        uc.close()

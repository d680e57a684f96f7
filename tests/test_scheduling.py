"""Scheduler unit tests: triggers, persistence, misses, render ahead, the lock (real SQLite + APScheduler,
a fake broadcast manager and speech service)."""

from __future__ import annotations

import time
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text

from broadcaster.db import create_schema, make_engine, make_session_factory
from broadcaster.domain import Source
from broadcaster.models import Broadcast, Delivery, LogEntry, Speaker, Zone
from broadcaster.scheduling import ScheduleError, SchedulerLockedError, SchedulerService
from broadcaster.scheduling.spec import validate_spec
from broadcaster.settings import load_settings
from tests.fakes import FakeBroadcastManager, FakeSpeechService

HCM = ZoneInfo("Asia/Ho_Chi_Minh")


class Env:
    """One controller's worth of scheduling parts on a tmp SQLite file; ``new()`` = a restart."""

    def __init__(self, tmp_path: Path, grace_s: int = 30) -> None:
        self.settings = load_settings(
            {
                "instance": tmp_path / "instance",
                "scheduling": {"schedules_dir": str(tmp_path / "schedules"), "misfire_grace_s": grace_s},
            },
            environ={},
        )
        self.settings.ensure_instance()
        self.engine = make_engine(self.settings.db_url)
        create_schema(self.engine)
        self.sessions = make_session_factory(self.engine)
        self.manager = FakeBroadcastManager(self.sessions)
        self.speech = FakeSpeechService()
        self.services: list[SchedulerService] = []
        with self.sessions.begin() as session:
            session.add(Zone(id="thon-1", name="Thôn 1"))
            session.add_all(Speaker(id=f"loa-{i}", name=f"Loa {i}", zone_id="thon-1") for i in (1, 2))

    def new(self) -> SchedulerService:
        service = SchedulerService(self.settings, self.sessions, self.manager, self.speech)
        self.manager.defer = service.schedule_broadcast
        self.manager.undefer = service.unschedule_broadcast
        self.services.append(service)
        return service

    def close(self) -> None:
        for service in self.services:
            service.shutdown()
        self.engine.dispose()

    def broadcasts(self, schedule_id: int) -> list[Broadcast]:
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(Broadcast).where(Broadcast.schedule_id == schedule_id).order_by(Broadcast.id)
                )
            )

    def job_ids(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.scalars(text("SELECT id FROM apscheduler_jobs")))


@pytest.fixture
def env(tmp_path: Path):
    e = Env(tmp_path)
    yield e
    e.close()


def wait_until(predicate, timeout: float = 10.0, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def wait_clock_past(moment: datetime) -> None:
    """Let wall-clock time pass ``moment`` (what a controller being down does)."""
    while datetime.now(UTC) <= moment:
        time.sleep(0.02)


def done(future: Future | None) -> str | None:
    assert future is not None
    return future.result(timeout=10)


def once(at: datetime, **extra) -> dict:
    return {
        "title": "Thông báo tiêm phòng",
        "text": "Kính thưa bà con, sáng mai tiêm phòng.",
        "kind": "once",
        "at": at.isoformat(),
        **extra,
    }


# ------------------------------------------------------------------ triggers


def test_weekdays_and_crontab_fire_monday_to_friday_local_time(env: Env) -> None:
    service = env.new()
    weekdays = service.build_trigger(validate_spec({"text": "x", "kind": "weekdays", "time": "06:00"}, HCM))
    cron = service.build_trigger(validate_spec({"text": "x", "kind": "cron", "cron": "0 6 * * 1-5"}, HCM))
    start = datetime(2026, 11, 29, 0, 0, tzinfo=HCM)  # a Sunday
    end = start + timedelta(days=7)
    got = list(service._fire_times(weekdays, start, end, 50))
    assert [t.astimezone(HCM).strftime("%a %H:%M") for t in got] == [
        "Mon 06:00",
        "Tue 06:00",
        "Wed 06:00",
        "Thu 06:00",
        "Fri 06:00",
    ]
    # crontab counts 1 = Monday (APScheduler's from_crontab would read Tuesday..Saturday)
    assert list(service._fire_times(cron, start, end, 50)) == got
    sunday = service.build_trigger(validate_spec({"text": "x", "kind": "cron", "cron": "30 7 * * 0"}, HCM))
    assert [t.astimezone(HCM).strftime("%a %H:%M") for t in service._fire_times(sunday, start, end, 50)] == [
        "Sun 07:30"
    ]


def test_weekly_days_and_validity_dates_bound_the_airings(env: Env) -> None:
    service = env.new()
    spec = validate_spec(
        {
            "text": "x",
            "kind": "weekly",
            "time": "19:00",
            "days": ["t2", "t6"],
            "valid_from": "2026-12-01",
            "valid_to": "2026-12-11",
        },
        HCM,
    )
    got = list(
        service._fire_times(
            service.build_trigger(spec),
            datetime(2026, 11, 1, tzinfo=UTC),
            datetime(2027, 1, 1, tzinfo=UTC),
            50,
        )
    )
    assert [t.astimezone(HCM).strftime("%d/%m %a %H:%M") for t in got] == [
        "04/12 Fri 19:00",
        "07/12 Mon 19:00",
        "11/12 Fri 19:00",
    ]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"text": "", "kind": "daily", "time": "06:00"}, "text"),
        ({"text": "x", "kind": "daily"}, "time"),
        ({"text": "x", "kind": "daily", "time": "6h"}, "time"),
        ({"text": "x", "kind": "weekly", "time": "06:00", "days": ["someday"]}, "days"),
        ({"text": "x", "kind": "cron", "cron": "0 6 * *"}, "cron"),
        ({"text": "x", "kind": "cron", "cron": "0 25 * * *"}, "cron"),
        ({"text": "x", "kind": "daily", "time": "06:00", "targets": ["thon-9"]}, "targets"),
        ({"text": "x", "kind": "daily", "time": "06:00", "tier": "urgent"}, "tier"),
        ({"text": "x", "kind": "daily", "time": "06:00", "repeat": 9}, "repeat"),
        ({"text": "x", "kind": "daily", "time": "06:00", "engine": "nope"}, "engine"),
        ({"text": "x", "kind": "daily", "time": "06:00", "colour": "red"}, "colour"),
        ({"text": "x", "kind": "once", "at": "2020-01-01T06:00:00"}, "at"),
        (
            {
                "text": "x",
                "kind": "daily",
                "time": "06:00",
                "valid_from": "2027-01-02",
                "valid_to": "2027-01-01",
            },
            "valid_to",
        ),
    ],
)
def test_bad_schedules_are_refused_naming_the_field(env: Env, data: dict, field: str) -> None:
    service = env.new()
    with pytest.raises(ScheduleError) as err:
        service.create_schedule(data)
    assert err.value.field == field, err.value.message
    assert service.list_schedules() == []


# ------------------------------------------------------------------ firing and render ahead


def test_a_schedule_fires_once_with_its_fire_time_and_prerendered_audio(env: Env) -> None:
    service = env.new()
    service.start()
    at = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
    sid = service.create_schedule(once(at), author="can-bo")
    key = done(service.pending_render(sid))
    assert key and key in env.speech.store.pinned
    assert service.get_schedule(sid)["audio_key"] == key
    assert env.manager.wait_for(1)
    ann, kwargs = env.manager.submitted[0]
    assert kwargs["schedule_id"] == sid and kwargs["fire_time"] == at
    assert ann.source == Source.SCHEDULE and ann.audio_key == key and ann.title == "Thông báo tiêm phòng"
    assert [b.fire_time for b in env.broadcasts(sid)] == [at]
    assert wait_until(lambda: f"schedule-{sid}" not in env.job_ids())
    assert service.get_schedule(sid)["next_run"] is None


def test_render_failure_is_logged_and_the_bulletin_still_fires(env: Env) -> None:
    service = env.new()
    service.start()
    env.speech.fail_with = RuntimeError("gTTS: no network")
    at = datetime.now(UTC) + timedelta(seconds=1)
    sid = service.create_schedule(once(at))
    assert done(service.pending_render(sid)) is None
    assert env.manager.wait_for(1)
    assert env.manager.submitted[0][0].audio_key is None  # rendered at air time instead
    with env.sessions() as session:
        messages = session.scalars(select(LogEntry.message).where(LogEntry.kind == "render_failed")).all()
    assert any("no network" in m for m in messages)


def test_editing_the_text_rerenders_and_unpins_the_old_audio(env: Env) -> None:
    service = env.new()
    service.start()
    sid = service.create_schedule({"text": "Bản tin sáng", "kind": "weekdays", "time": "06:00"})
    first = done(service.pending_render(sid))
    service.update_schedule(sid, {"text": "Bản tin sáng thứ hai"})
    second = done(service.pending_render(sid))
    assert first != second
    assert env.speech.store.pinned == {second}
    service.delete_schedule(sid)
    assert env.speech.store.pinned == set()
    assert f"schedule-{sid}" not in env.job_ids()


def test_two_schedules_with_the_same_audio_each_hold_a_pin(env: Env) -> None:
    service = env.new()
    service.start()
    a = service.create_schedule({"text": "Bản tin chung", "kind": "daily", "time": "06:00"})
    b = service.create_schedule({"text": "Bản tin chung", "kind": "daily", "time": "18:00"})
    key = done(service.pending_render(a))
    assert done(service.pending_render(b)) == key
    assert env.speech.store.owners[key] == {f"schedule:{a}", f"schedule:{b}"}
    service.delete_schedule(a)
    assert env.speech.store.pinned == {key}  # still needed by b
    service.delete_schedule(b)
    assert env.speech.store.pinned == set()


def test_render_ahead_uses_the_officers_lexicon(env: Env) -> None:
    from broadcaster.models import LexiconEntry

    with env.sessions.begin() as session:
        session.add(LexiconEntry(term="UBND", reading="ủy ban nhân dân"))
    service = env.new()
    service.start()
    sid = service.create_schedule({"text": "UBND xã thông báo", "kind": "daily", "time": "07:00"})
    done(service.pending_render(sid))
    assert env.speech.calls[-1]["lexicon"] == {"UBND": "ủy ban nhân dân"}


def test_firing_twice_for_one_fire_time_airs_once(env: Env) -> None:
    service = env.new()  # not started: no job fires by itself
    at = (datetime.now(UTC) - timedelta(seconds=5)).replace(microsecond=0)
    sid = service.create_schedule(once(at))
    first = service.fire_schedule(sid)
    second = service.fire_schedule(sid)
    assert first == second
    assert len(env.broadcasts(sid)) == 1


def test_pending_or_disabled_schedules_have_no_job_until_approved(env: Env) -> None:
    service = env.new()
    service.start()
    sid = service.create_schedule(
        {"text": "Chờ duyệt", "kind": "daily", "time": "07:00", "approval": "pending"}
    )
    assert f"schedule-{sid}" not in env.job_ids()
    assert service.fire_schedule(sid) is None and env.manager.submitted == []
    service.update_schedule(sid, {"approval": "approved"})
    assert f"schedule-{sid}" in env.job_ids()
    service.update_schedule(sid, {"enabled": False})
    assert f"schedule-{sid}" not in env.job_ids()
    assert service.get_schedule(sid)["next_run"] is None


def test_changing_kind_drops_the_old_timing(env: Env) -> None:
    service = env.new()
    sid = service.create_schedule({"text": "x", "kind": "daily", "time": "07:00"})
    out = service.update_schedule(sid, {"kind": "weekly", "time": "08:00", "days": "mon,thu"})
    assert (out["kind"], out["time"], out["days"]) == ("weekly", "08:00", ["mon", "thu"])
    out = service.update_schedule(sid, {"kind": "cron", "cron": "0 9 * * 6"})
    assert (out["time"], out["days"], out["cron"]) == (None, None, "0 9 * * 6")
    with pytest.raises(ScheduleError) as err:
        service.update_schedule(999, {"text": "y"})
    assert err.value.code == "not_found"


# ------------------------------------------------------------------ restarts and misses


def test_jobs_survive_a_restart_and_air_once(env: Env) -> None:
    first = env.new()
    first.start()
    at = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
    sid = first.create_schedule(once(at))
    assert f"schedule-{sid}" in env.job_ids()
    first.shutdown()
    assert f"schedule-{sid}" in env.job_ids()  # persisted, not in memory only

    second = env.new()
    second.start()
    assert env.manager.wait_for(1)
    second.shutdown()
    third = env.new()
    third.start()  # a restart after the airing must not air it again
    assert wait_until(lambda: f"schedule-{sid}" not in env.job_ids())
    assert [b.fire_time for b in env.broadcasts(sid)] == [at]
    assert len(env.manager.submitted) == 1


def test_missed_while_down_within_grace_plays_once(env: Env) -> None:
    first = env.new()
    first.start()
    at = (datetime.now(UTC) + timedelta(seconds=1)).replace(microsecond=0)
    sid = first.create_schedule(once(at))
    first.shutdown()
    wait_clock_past(at + timedelta(seconds=1))  # the controller is down at air time

    second = env.new()
    second.start()
    assert env.manager.wait_for(1)
    assert env.manager.submitted[0][1]["fire_time"] == at
    assert [b.fire_time for b in env.broadcasts(sid)] == [at]


def test_missed_beyond_grace_is_logged_missed_and_never_airs(tmp_path: Path) -> None:
    env = Env(tmp_path, grace_s=2)
    try:
        service = env.new()  # scheduler down when the one-off was due 30 s ago
        at = (datetime.now(UTC) - timedelta(seconds=30)).replace(microsecond=0)
        sid = service.create_schedule(once(at))
        service.start()
        assert wait_until(lambda: len(env.broadcasts(sid)) == 1)
        (missed,) = env.broadcasts(sid)
        assert missed.state == "missed" and missed.fire_time == at and "Lỡ giờ phát" in missed.reason
        with env.sessions() as session:
            deliveries = session.scalars(select(Delivery).where(Delivery.broadcast_id == missed.id)).all()
            assert {(d.speaker_id, d.state) for d in deliveries} == {("loa-1", "missed"), ("loa-2", "missed")}
            assert session.scalar(select(LogEntry.kind).where(LogEntry.broadcast_id == missed.id)) == "missed"
        assert service.fire_schedule(sid) is None
        service.shutdown()
        again = env.new()
        again.start()
        assert len(env.broadcasts(sid)) == 1 and env.manager.submitted == []
    finally:
        env.close()


def test_recurring_runs_missed_while_down_are_coalesced(env: Env) -> None:
    """A per-second bulletin down for ~3 s: the latest due run airs, the older ones are logged missed."""
    first = env.new()
    first.start()
    sid = first.create_schedule({"text": "Mỗi giây", "kind": "cron", "cron": "* * * * * *"})
    assert env.manager.wait_for(1)
    first.shutdown()
    down_at = datetime.now(UTC)
    submitted_before = len(env.manager.submitted)
    wait_clock_past(down_at + timedelta(seconds=3))

    second = env.new()
    second.start()
    assert env.manager.wait_for(submitted_before + 1)
    second.shutdown()
    rows = env.broadcasts(sid)
    fire_times = [b.fire_time for b in rows]
    assert len(fire_times) == len(set(fire_times))  # never twice for one fire time
    missed = [b for b in rows if b.state == "missed"]
    assert len(missed) >= 2 and all("chỉ phát lần gần nhất" in b.reason for b in missed)
    resumed = env.manager.submitted[submitted_before][1]["fire_time"]
    assert all(b.fire_time < resumed for b in missed)


def test_deferred_broadcast_job_airs_and_can_be_removed(env: Env) -> None:
    service = env.new()
    service.start()
    service.schedule_broadcast(41, datetime.now(UTC) + timedelta(seconds=30))
    assert "broadcast-41" in env.job_ids()
    service.unschedule_broadcast(41)
    assert "broadcast-41" not in env.job_ids()
    service.schedule_broadcast(42, datetime.now(UTC) + timedelta(seconds=1))
    with env.manager.changed:
        assert env.manager.changed.wait_for(lambda: env.manager.aired == [42], 10)


def test_deferred_broadcast_past_grace_at_start_is_marked_missed(tmp_path: Path) -> None:
    env = Env(tmp_path, grace_s=2)
    try:
        with env.sessions.begin() as session:
            from broadcaster.models import Announcement

            b = Broadcast(
                announcement=Announcement(title="Họp dân", text="Họp dân lúc 8 giờ"),
                tier="normal",
                targets=["all"],
                state="scheduled",
                scheduled_at=datetime.now(UTC) - timedelta(minutes=5),
                deliveries=[Delivery(speaker_id="loa-1", state="pending")],
            )
            session.add(b)
        service = env.new()
        service.start()
        with env.sessions() as session:
            assert wait_until(lambda: session.get(Broadcast, b.id, populate_existing=True).state == "missed")
            assert session.get(Delivery, b.deliveries[0].id, populate_existing=True).state == "missed"
        assert env.manager.aired == []
    finally:
        env.close()


def test_only_one_scheduler_per_database(env: Env) -> None:
    first = env.new()
    first.start()
    second = env.new()
    with pytest.raises(SchedulerLockedError, match="already runs on this database"):
        second.start()
    assert not second.running
    first.shutdown()
    second.start()
    assert second.running


# ------------------------------------------------------------------ week view


def test_upcoming_lists_schedule_airings_and_deferred_broadcasts(env: Env) -> None:
    from broadcaster.domain import Announcement

    service = env.new()
    service.start()
    sid = service.create_schedule({"title": "Bản tin sáng", "text": "x", "kind": "weekdays", "time": "06:00"})
    pending = service.create_schedule(
        {
            "title": "Nhắc vệ sinh",
            "text": "y",
            "kind": "weekly",
            "days": ["cn"],
            "time": "07:00",
            "approval": "pending",
        }
    )
    monday = datetime.now(HCM).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=7)
    monday -= timedelta(days=monday.weekday())
    deferred_at = (monday + timedelta(days=2, hours=15)).astimezone(UTC)
    bid = env.manager.submit(Announcement(text="Họp tổ dân phố", title="Họp", at=deferred_at))
    assert f"broadcast-{bid}" in env.job_ids()  # deferred through the manager's hook

    items = service.upcoming(monday.replace(tzinfo=None), (monday + timedelta(days=7)).replace(tzinfo=None))
    got = [
        (i["schedule_id"], i["broadcast_id"], datetime.fromisoformat(i["at"]).strftime("%a %H:%M"))
        for i in items
    ]
    assert got == [
        (sid, None, "Mon 06:00"),
        (sid, None, "Tue 06:00"),
        (sid, None, "Wed 06:00"),
        (None, bid, "Wed 15:00"),
        (sid, None, "Thu 06:00"),
        (sid, None, "Fri 06:00"),
        (pending, None, "Sun 07:00"),
    ]
    assert items[0]["at"].endswith("+07:00") and items[0]["title"] == "Bản tin sáng"
    assert items[3]["title"] == "Họp" and items[3]["state"] == "scheduled"
    assert items[-1]["approval"] == "pending" and items[-1]["title"] == "Nhắc vệ sinh"

"""Scheduler unit tests: triggers, persistence, misses, render ahead, the lock (real SQLite + APScheduler,
the real broadcast lifecycle, the fake speech service)."""

from __future__ import annotations

import time
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text

from broadcaster.models import Broadcast, Delivery, LogEntry
from broadcaster.scheduling import ScheduleError, SchedulerLockedError, SchedulerService
from broadcaster.scheduling.apsched import fire_times
from broadcaster.scheduling.spec import validate_spec
from tests.fixtures_controller import COMMUNE_NODES, unit_services

# On SQLite and on PostgreSQL (tests/fixtures_postgres.py).
pytestmark = pytest.mark.usefixtures("database")

HCM = ZoneInfo("Asia/Ho_Chi_Minh")


class Env:
    """One controller's worth of scheduling parts on a tmp SQLite file; ``new()`` = a restart of the
    scheduler over the same real broadcast lifecycle (which runs, with no cluster online)."""

    def __init__(self, tmp_path: Path, grace_s: int = 30) -> None:
        self.services = unit_services(
            tmp_path, scheduling={"schedules_dir": str(tmp_path / "schedules"), "misfire_grace_s": grace_s}
        )
        self.settings = self.services.settings
        self.engine = self.services.db_engine
        self.sessions = self.services.sessions
        self.manager = self.services.broadcasts
        self.speech = self.services.speech
        self.scheduled: list[SchedulerService] = []
        self.manager.start()

    def new(self) -> SchedulerService:
        service = SchedulerService(
            self.settings, self.sessions, self.manager, self.speech, self.services.validator
        )
        self.scheduled.append(service)
        return service

    def close(self) -> None:
        for service in self.scheduled:
            service.shutdown()
        self.manager.stop()
        self.engine.dispose()

    def pinned(self) -> set[str]:
        return {key for key, owners in self.speech.store.pinned.items() if owners}

    def airings(self, count: int, schedule_id: int | None = None, timeout: float = 10.0) -> list[Broadcast]:
        """Wait until ``count`` airings were submitted (of ``schedule_id``, or any), then list them."""
        assert wait_until(lambda: len(self._airings(schedule_id)) >= count, timeout), "airings"
        return self._airings(schedule_id)

    def _airings(self, schedule_id: int | None) -> list[Broadcast]:
        with self.sessions() as session:
            query = select(Broadcast).where(Broadcast.state != "missed").order_by(Broadcast.id)
            if schedule_id is not None:
                query = query.where(Broadcast.schedule_id == schedule_id)
            rows = list(session.scalars(query))
            for row in rows:
                _ = row.announcement  # loaded while the session is open
            return rows

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
    got = list(fire_times(weekdays, start, end, 50))
    assert [t.astimezone(HCM).strftime("%a %H:%M") for t in got] == [
        "Mon 06:00",
        "Tue 06:00",
        "Wed 06:00",
        "Thu 06:00",
        "Fri 06:00",
    ]
    # crontab counts 1 = Monday (APScheduler's from_crontab would read Tuesday..Saturday)
    assert list(fire_times(cron, start, end, 50)) == got
    sunday = service.build_trigger(validate_spec({"text": "x", "kind": "cron", "cron": "30 7 * * 0"}, HCM))
    assert [t.astimezone(HCM).strftime("%a %H:%M") for t in fire_times(sunday, start, end, 50)] == [
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
        fire_times(
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
    assert key and key in env.pinned()
    assert service.get_schedule(sid)["audio_key"] == key
    (airing,) = env.airings(1, sid)
    assert airing.schedule_id == sid and airing.fire_time == at
    ann = airing.announcement
    assert ann.source == "schedule" and ann.audio_key == key and ann.title == "Thông báo tiêm phòng"
    assert [b.fire_time for b in env.broadcasts(sid)] == [at]
    assert wait_until(lambda: f"schedule-{sid}" not in env.job_ids())
    assert service.get_schedule(sid)["next_run"] is None


def test_render_failure_is_logged_and_the_bulletin_still_fires(env: Env) -> None:
    service = env.new()
    service.start()
    env.speech.fail = "gTTS: no network"
    at = datetime.now(UTC) + timedelta(seconds=1)
    sid = service.create_schedule(once(at))
    assert done(service.pending_render(sid)) is None
    (airing,) = env.airings(1, sid)
    assert airing.announcement.audio_key is None  # rendered at air time instead
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
    assert env.pinned() == {second}
    service.delete_schedule(sid)
    assert env.pinned() == set()
    assert f"schedule-{sid}" not in env.job_ids()


def test_two_schedules_with_the_same_audio_each_hold_a_pin(env: Env) -> None:
    service = env.new()
    service.start()
    a = service.create_schedule({"text": "Bản tin chung", "kind": "daily", "time": "06:00"})
    b = service.create_schedule({"text": "Bản tin chung", "kind": "daily", "time": "18:00"})
    key = done(service.pending_render(a))
    assert done(service.pending_render(b)) == key
    assert env.speech.store.pinned[key] == {f"schedule:{a}", f"schedule:{b}"}
    service.delete_schedule(a)
    assert env.pinned() == {key}  # still needed by b
    service.delete_schedule(b)
    assert env.pinned() == set()


def test_render_ahead_uses_the_officers_lexicon(env: Env) -> None:
    from broadcaster.models import LexiconEntry

    with env.sessions.begin() as session:
        session.add(LexiconEntry(term="UBND", reading="ủy ban nhân dân"))
    service = env.new()
    service.start()
    sid = service.create_schedule({"text": "UBND xã thông báo", "kind": "daily", "time": "07:00"})
    done(service.pending_render(sid))
    assert env.speech.renders[-1]["lexicon"] == {"UBND": "ủy ban nhân dân"}


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
    assert service.fire_schedule(sid) is None and env.manager.list() == []
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
    env.airings(1, sid)
    second.shutdown()
    third = env.new()
    third.start()  # a restart after the airing must not air it again
    assert wait_until(lambda: f"schedule-{sid}" not in env.job_ids())
    assert [b.fire_time for b in env.broadcasts(sid)] == [at]
    assert len(env.manager.list()) == 1


def test_missed_while_down_within_grace_plays_once(env: Env) -> None:
    first = env.new()
    first.start()
    at = (datetime.now(UTC) + timedelta(seconds=1)).replace(microsecond=0)
    sid = first.create_schedule(once(at))
    first.shutdown()
    wait_clock_past(at + timedelta(seconds=1))  # the controller is down at air time

    second = env.new()
    second.start()
    assert env.airings(1, sid)[0].fire_time == at
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
            assert {(d.speaker_id, d.state) for d in deliveries} == {(s, "missed") for s in COMMUNE_NODES}
            assert session.scalar(select(LogEntry.kind).where(LogEntry.broadcast_id == missed.id)) == "missed"
        assert service.fire_schedule(sid) is None
        service.shutdown()
        again = env.new()
        again.start()
        assert len(env.broadcasts(sid)) == 1 and env.airings(0, sid) == []
    finally:
        env.close()


def test_recurring_runs_missed_while_down_are_coalesced(env: Env) -> None:
    """A per-second bulletin down for ~3 s: the latest due run airs, the older ones are logged missed."""
    first = env.new()
    first.start()
    sid = first.create_schedule({"text": "Mỗi giây", "kind": "cron", "cron": "* * * * * *"})
    env.airings(1, sid)
    first.shutdown()
    down_at = datetime.now(UTC)
    submitted_before = len(env.airings(0, sid))
    wait_clock_past(down_at + timedelta(seconds=3))

    second = env.new()
    second.start()
    resumed = env.airings(submitted_before + 1, sid)[submitted_before].fire_time
    second.shutdown()
    rows = env.broadcasts(sid)
    fire_times = [b.fire_time for b in rows]
    assert len(fire_times) == len(set(fire_times))  # never twice for one fire time
    missed = [b for b in rows if b.state == "missed"]
    assert len(missed) >= 2 and all("chỉ phát lần gần nhất" in b.reason for b in missed)
    assert all(b.fire_time < resumed for b in missed)


def test_legacy_deferred_broadcast_jobs_are_removed_at_start(env: Env) -> None:
    """Deferred one-off broadcasts were APScheduler jobs in earlier versions; the broadcast
    dispatcher airs them now, so a start removes such jobs instead of firing them twice."""
    service = env.new()
    service.start()
    service._clock.add(  # a job as an earlier version stored it
        "broadcast-41",
        "broadcast-41",
        "broadcaster.scheduling.jobs:fire_broadcast",
        service.build_trigger(validate_spec(once(datetime.now(UTC) + timedelta(hours=1)), HCM)),
        [41],
    )
    assert "broadcast-41" in env.job_ids()
    service.shutdown()
    again = env.new()
    again.start()
    assert "broadcast-41" not in env.job_ids()


def test_deferred_broadcast_past_grace_at_start_is_missed_and_its_audio_unpinned(tmp_path: Path) -> None:
    """A broadcast scheduled for a time the controller was down past the grace is recorded missed
    by the broadcast lifecycle, and the pin on its rendered-ahead audio is released (before, the
    scheduler marked it missed behind the lifecycle's back and the audio stayed pinned for ever)."""
    env = Env(tmp_path, grace_s=2)
    env.manager.stop()
    try:
        from broadcaster.domain import Announcement

        at = datetime.now(UTC) + timedelta(hours=1)
        bid = env.manager.submit(Announcement(text="Họp dân lúc 8 giờ", title="Họp dân", at=at))
        key = env.speech.render("Họp dân lúc 8 giờ").key
        env.speech.store.pin(key, f"broadcast:{bid}")
        with env.sessions.begin() as session:
            row = session.get(Broadcast, bid)
            row.audio_key = key
            row.scheduled_at = datetime.now(UTC) - timedelta(minutes=5)  # the controller was down
        restarted = unit_services(tmp_path / "again", commune=False)
        from broadcaster.broadcasts import BroadcastManager

        manager = BroadcastManager(
            env.sessions,
            env.speech,
            restarted.transport,
            None,
            restarted.broadcasts.config,
            deferred_grace_s=2,
        )
        manager.start()
        try:
            assert wait_until(lambda: manager.get(bid)["state"] == "missed")
            b = manager.get(bid)
            assert {d["state"] for d in b["deliveries"]} == {"missed"} and "Lỡ giờ phát" in b["reason"]
            assert env.speech.store.pinned[key] == set()
        finally:
            manager.stop()
            restarted.close()
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


def test_an_engine_that_cannot_be_checked_is_refused_not_accepted(env: Env) -> None:
    """Before, an exception while listing engines made the schedule's engine check accept any
    engine, which then failed at air time."""
    service = env.new()
    assert service.create_schedule({"text": "x", "kind": "daily", "time": "07:00", "engine": "espeak-ng"})
    env.speech.engines_fail = "the engine probe crashed"
    with pytest.raises(ScheduleError) as err:
        service.create_schedule({"text": "x", "kind": "daily", "time": "07:00", "engine": "robot"})
    assert err.value.field == "engine" and "Không kiểm tra được giọng đọc" in err.value.message
    env.speech.engines_fail = None
    with pytest.raises(ScheduleError, match="Giọng đọc không có") as err:
        service.create_schedule({"text": "x", "kind": "daily", "time": "07:00", "engine": "robot"})


def test_a_schedule_takes_the_same_limits_as_the_compose_page(tmp_path: Path) -> None:
    """The text limit and the repeat limit come from the settings, as for a broadcast: a
    15,000-character bulletin the compose page accepts is accepted here too (before, scheduling had
    its own hard-coded 10,000 and rejected it)."""
    env = Env(tmp_path)
    try:
        service = env.new()
        limits = env.services.validator.limits
        long_text = ("Thông báo lịch tiêm phòng cho trẻ em dưới năm tuổi. " * 400)[:15_000]
        assert limits.max_chars >= 15_000
        assert service.create_schedule({"text": long_text, "kind": "daily", "time": "07:00"})
        with pytest.raises(ScheduleError) as err:
            service.create_schedule({"text": "x" * (limits.max_chars + 1), "kind": "daily", "time": "07:00"})
        assert err.value.field == "text"
        with pytest.raises(ScheduleError) as err:
            service.create_schedule(
                {"text": "x", "kind": "daily", "time": "07:00", "repeat": limits.max_repeat + 1}
            )
        assert err.value.field == "repeat"
    finally:
        env.close()

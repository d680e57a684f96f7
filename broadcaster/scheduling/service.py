"""SchedulerService: persistent schedules that fire bulletins through the broadcast lifecycle.

* Schedules are rows of ``schedules`` (``book.py``: CRUD and ``schedules/*.yaml``); a job
  (``schedule-{id}``) is derived from each, idempotently, and kept in APScheduler's job store in
  the same database (``apsched.py``), so it survives a restart. One-off items scheduled from the
  compose page or the API are not jobs: the broadcast dispatcher airs them (and re-reads them at
  start).
* One scheduler per database (``lock.py``); a second one refuses to start, and a scheduler that
  loses its lease stops firing at once.
* Missed bulletins: see :meth:`SchedulerService.start`. A bulletin is never aired twice: every
  airing carries ``(schedule_id, fire_time)``, unique in ``broadcasts``.
* Render ahead (``ahead.py``): a schedule's audio is rendered and pinned when it is created,
  changed or loaded, and again at start.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.broadcasts.ports import SpeechPort
from broadcaster.broadcasts.validation import AnnouncementValidator
from broadcaster.models import Approval, Broadcast, Channel, LogEntry, Schedule
from broadcaster.scheduling import jobs
from broadcaster.scheduling.ahead import RenderAhead
from broadcaster.scheduling.apsched import JobClock, Trigger, due_runs, fire_times, next_fire
from broadcaster.scheduling.book import ScheduleBook, trigger_of
from broadcaster.scheduling.lock import SchedulerLock, lock_for
from broadcaster.scheduling.lookahead import LookaheadPublisher
from broadcaster.scheduling.spec import SPEC_FIELDS, ScheduleError, ScheduleFields
from broadcaster.scheduling.upcoming import upcoming
from broadcaster.transport import Transport

if TYPE_CHECKING:
    from broadcaster.broadcasts import BroadcastManager
    from broadcaster.settings import Settings

_LOGGER = logging.getLogger(__name__)

SCHEDULE_JOB = "schedule-{}"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SchedulerService:
    """Persistent scheduling of bulletins (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        broadcasts: BroadcastManager,
        speech: SpeechPort | None,
        validator: AnnouncementValidator,
        transport: Transport | None = None,
    ) -> None:
        """``transport``: where each node's lookahead is published (offline airing); None: not."""
        self.settings = settings
        self.sessions = sessions
        self.broadcasts = broadcasts
        self.speech = speech
        self.zone = ZoneInfo(settings.timezone)
        cfg = settings.scheduling
        # APScheduler's default misfire_grace_time of 1 s silently drops a job that ran a second
        # late (a busy machine, a restart); ours is the configured grace, and at least 1 s because
        # a job always runs a little after its time and a grace of 0 would miss every one.
        self.grace = timedelta(seconds=max(1, cfg.misfire_grace_s))
        schedules_dir: Path | None = cfg.schedules_dir if cfg.schedules_dir is not None else Path("schedules")
        self.max_upcoming = cfg.max_upcoming
        self.book = ScheduleBook(
            sessions,
            self.zone,
            validator,
            schedules_dir,
            changed=self._after_change,
            removed=self._after_removal,
            next_run=self.next_run,
            channels=getattr(broadcasts, "channels", None),
            relay_max_s=settings.live.relay_max_s,
        )
        self.lookahead: LookaheadPublisher | None = None
        if transport is not None and speech is not None:
            self.lookahead = LookaheadPublisher(
                sessions, speech.store, transport, self.zone, grace_s=self.grace.total_seconds()
            )
        self.ahead = RenderAhead(
            sessions,
            speech,
            enabled=cfg.render_ahead,
            next_run=self.next_run,
            log=self._log,
            rendered=self.lookahead.mark if self.lookahead is not None else None,
        )
        self._clock: JobClock | None = None
        self._lock: SchedulerLock | None = None
        self._own_engine: Any = None
        self._state = threading.RLock()
        self.lease_lost = threading.Event()

    # ------------------------------------------------------------------ life cycle

    @property
    def running(self) -> bool:
        return self._clock is not None

    @property
    def schedules_dir(self) -> Path | None:
        return self.book.schedules_dir

    @property
    def last_reload(self) -> dict[str, Any]:
        return self.book.last_reload

    def start(self) -> None:
        """Take the scheduler lock, open the job store, record missed airings, sync jobs, run.

        Missed airings while the controller was down: with ``coalesce=True`` APScheduler runs only
        the latest due fire time of a job (``coalesce=False`` would replay every missed run, e.g.
        seven morning bulletins after a week off). That latest one airs if it is within the grace,
        else it is recorded missed. The older ones are recorded here, before the scheduler resumes,
        as missed ("superseded"), so the log shows every bulletin that did not air.
        """
        with self._state:
            if self._clock is not None:
                return
            cfg = self.settings
            lock = lock_for(cfg.db_url, cfg.instance, self.sessions, cfg.scheduling.lease_s, self._lease_lost)
            lock.acquire()
            self.lease_lost.clear()
            try:
                self._start_locked()
            except BaseException:
                self._stop_clock()
                lock.release()
                raise
            self._lock = lock

    def _start_locked(self) -> None:
        engine = self.sessions.kw.get("bind")
        if engine is None:
            engine = self._own_engine = create_engine(self.settings.db_url)
        clock = JobClock(engine, self.zone, int(self.grace.total_seconds()), self._on_missed)
        self.ahead.start()
        clock.start_paused()
        self._clock = clock
        jobs.bind(self)
        self._record_superseded(_utcnow())
        self.reload_yaml()
        self.sync_jobs()
        self.ahead.render_all()
        clock.resume()
        if self.lookahead is not None:
            self.lookahead.start()
        _LOGGER.info("scheduler running: %d job(s), grace %s", len(clock.jobs()), self.grace)

    def shutdown(self) -> None:
        with self._state:
            self._stop_clock()
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def _stop_clock(self) -> None:
        if self.lookahead is not None:
            self.lookahead.stop()
        clock, self._clock = self._clock, None
        if clock is not None:
            try:
                clock.shutdown()
            except Exception:
                _LOGGER.exception("scheduler shutdown failed")
        jobs.unbind(self)
        self.ahead.stop()
        if self._own_engine is not None:
            self._own_engine.dispose()
            self._own_engine = None

    def _lease_lost(self, holder: str) -> None:
        """Another process took over the scheduler lease: stop firing at once (it fires now)."""
        self.lease_lost.set()
        clock = self._clock
        if clock is not None:
            clock.pause()
        self._log(
            "scheduler_lease_lost",
            f"Bộ hẹn giờ dừng phát theo lịch: một bộ điều khiển khác ({holder}) đã nhận quyền hẹn giờ.",
        )

    # ------------------------------------------------------------------ triggers

    def build_trigger(self, row: Schedule | ScheduleFields) -> Trigger:
        """The trigger of a schedule row or spec; ScheduleError on a bad definition."""
        return trigger_of(row, self.zone)

    @staticmethod
    def _fingerprint(row: Schedule) -> str:
        parts = [row.kind, row.time, row.days, row.run_at, row.cron, row.valid_from, row.valid_to]
        return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]

    def _latest_fire_time(self, trigger: Trigger, now: datetime) -> datetime | None:
        """The latest fire time at or before ``now`` within the grace: the airing a running job
        is for. Searched in growing windows so a per-second cron does not walk the whole grace."""
        window = timedelta(seconds=2)
        limit = self.grace + timedelta(seconds=60)
        while True:
            start = now - min(window, limit)
            times = list(fire_times(trigger, start, now, 100_000))
            if times:
                return times[-1]
            if window >= limit:
                return None
            window *= 8

    def next_run(self, row: Schedule) -> datetime | None:
        try:
            trigger = self.build_trigger(row)
        except ScheduleError:
            return None
        return next_fire(trigger, _utcnow())

    # ------------------------------------------------------------------ jobs

    def sync_jobs(self) -> None:
        """Make the job store match the schedules (idempotent).

        A job whose definition is unchanged is kept as it is, so its stored next run time (and a
        run missed while we were down) survives; a changed one is replaced. Jobs of deferred
        one-off broadcasts (``broadcast-<id>``, from earlier versions) are removed: the broadcast
        dispatcher airs scheduled broadcasts itself."""
        clock = self._clock
        if clock is None:
            return
        existing = clock.jobs()
        wanted: set[str] = set()
        with self.sessions() as session:
            for row in session.scalars(select(Schedule)):
                if self._sync_schedule_job(session, row, existing.get(SCHEDULE_JOB.format(row.id))):
                    wanted.add(SCHEDULE_JOB.format(row.id))
        for job_id in existing.keys() - wanted:
            if job_id.startswith(("schedule-", "broadcast-")):
                clock.remove(job_id)

    def _sync_schedule_job(self, session: Session, row: Schedule, job: Any) -> bool:
        """Add, keep or replace the job of one schedule; True when it should have a job."""
        if not (row.enabled and row.approval == Approval.APPROVED.value):
            return False
        try:
            trigger = self.build_trigger(row)
        except ScheduleError as exc:
            _LOGGER.error("schedule %s (%s) has a bad definition: %s", row.id, row.name, exc.message)
            return False
        if row.kind == "once" and row.run_at is not None:
            aired = session.scalar(
                select(Broadcast.id).where(Broadcast.schedule_id == row.id, Broadcast.fire_time == row.run_at)
            )
            if aired is not None:
                return False  # its one airing happened (or was recorded missed)
        job_id = SCHEDULE_JOB.format(row.id)
        name = f"{job_id}@{self._fingerprint(row)}"
        if job is not None and job.name == name:
            return True
        assert self._clock is not None
        self._clock.add(job_id, name, "broadcaster.scheduling.jobs:fire_schedule", trigger, [row.id])
        return True

    def _sync_one(self, schedule_id: int) -> None:
        clock = self._clock
        if clock is None:
            return
        job_id = SCHEDULE_JOB.format(schedule_id)
        with self.sessions() as session:
            row = session.get(Schedule, schedule_id)
            keep = row is not None and self._sync_schedule_job(session, row, clock.job(job_id))
        if not keep:
            clock.remove(job_id)

    def _after_change(self, schedule_id: int, audio_changed: bool) -> None:
        if self.lookahead is not None:
            self.lookahead.mark()
        with self._state:
            self._sync_one(schedule_id)
        if audio_changed or self.ahead.needs_render(schedule_id):
            self.ahead.render(schedule_id)

    def _after_removal(self, schedule_id: int, audio_key: str | None) -> None:
        if self.lookahead is not None:
            self.lookahead.mark()
        if self._clock is not None:
            self._clock.remove(SCHEDULE_JOB.format(schedule_id))
        if audio_key:
            self.ahead.unpin(audio_key, schedule_id)

    # ------------------------------------------------------------------ firing

    def fire_broadcast(self, broadcast_id: int) -> None:
        """A deferred-broadcast job of an earlier version fired before sync_jobs removed it."""
        self.broadcasts.air(broadcast_id)

    def fire_schedule(self, schedule_id: int) -> int | None:
        """Air one fire time of a schedule; returns the broadcast id (None when nothing aired)."""
        if self.lease_lost.is_set():
            _LOGGER.warning("schedule %s fired after the scheduler lease was lost; skipped", schedule_id)
            return None
        now = _utcnow()
        with self.sessions() as session:
            row = session.get(Schedule, schedule_id)
            if row is None:
                _LOGGER.warning("schedule %s fired but no longer exists", schedule_id)
                return None
            if not row.enabled or row.approval != Approval.APPROVED.value:
                _LOGGER.info("schedule %s fired while disabled or not approved; skipped", schedule_id)
                return None
            fire_time = self._latest_fire_time(self.build_trigger(row), now)
            if fire_time is None:
                _LOGGER.warning(
                    "schedule %s fired with no fire time within the grace; using now", schedule_id
                )
                fire_time = now.replace(microsecond=0)
            if now - fire_time > self.grace:
                self._record_missed(schedule_id, fire_time, self._late_reason(fire_time))
                return None
            if row.channel_id is not None:
                relay = (row.channel_id, row.duration_s or 0.0, row.title, row.tier, tuple(row.targets or ()))
                author = row.author or "lịch phát"
            else:
                relay = None
            audio_key = row.audio_key
            if audio_key and self.speech is not None and not self.speech.store.has(audio_key):
                audio_key = None  # the store was emptied: render at air time
            ann = row.announcement(audio_key)
        if relay is not None:
            return self._fire_relay(schedule_id, fire_time, now, relay, author, ann.title)
        try:
            broadcast_id = self.broadcasts.submit(
                ann, approved=True, schedule_id=schedule_id, fire_time=fire_time
            )
        except Exception as exc:
            _LOGGER.exception(
                "schedule %s: submitting the %s airing failed", schedule_id, fire_time.isoformat()
            )
            reason = getattr(exc, "message", None) or str(exc)
            self._log(
                "schedule_failed", f"Lịch «{ann.title}» ({self._local(fire_time)}) không phát được: {reason}"
            )
            return None
        _LOGGER.info(
            "schedule %s fired for %s: broadcast %s", schedule_id, fire_time.isoformat(), broadcast_id
        )
        return broadcast_id

    def _fire_relay(
        self,
        schedule_id: int,
        fire_time: datetime,
        now: datetime,
        relay: tuple[int, float, str, str, tuple[str, ...]],
        author: str,
        title: str,
    ) -> int | None:
        """One airing of a relay schedule: the channel from the fire time for ``duration_s`` (so a
        run that fires late still ends on time), submitted like a relay from the API."""
        from broadcaster.broadcasts.validation import MIN_STREAM_S, CheckedStream
        from broadcaster.domain import Source, Tier

        channel_id, duration_s, own_title, tier, targets = relay
        end = fire_time + timedelta(seconds=duration_s)
        try:
            _, name, _ = self.broadcasts.channels.usable(channel_id)
        except Exception as exc:
            reason = getattr(exc, "message", None) or str(exc)
            self._record_missed(schedule_id, fire_time, f"Không tiếp sóng được: {reason}")
            self._log(
                "schedule_failed", f"Lịch «{title}» ({self._local(fire_time)}) không phát được: {reason}"
            )
            return None
        if (end - now).total_seconds() < MIN_STREAM_S:
            self._record_missed(schedule_id, fire_time, self._late_reason(fire_time))
            return None
        checked = CheckedStream(
            channel_id, name, own_title or name, Tier(tier), targets or ("all",), at=None, end=end
        )
        try:
            broadcast_id = self.broadcasts.submit_stream(
                checked,
                author=author,
                source=Source.SCHEDULE,
                approved=True,
                schedule_id=schedule_id,
                fire_time=fire_time,
            )
        except Exception as exc:
            _LOGGER.exception("schedule %s: submitting the relay of %s failed", schedule_id, fire_time)
            reason = getattr(exc, "message", None) or str(exc)
            self._log(
                "schedule_failed", f"Lịch «{title}» ({self._local(fire_time)}) không phát được: {reason}"
            )
            return None
        _LOGGER.info("schedule %s fired for %s: relay %s", schedule_id, fire_time.isoformat(), broadcast_id)
        return broadcast_id

    def _late_reason(self, fire_time: datetime) -> str:
        seconds = int(self.grace.total_seconds())
        return (
            f"Lỡ giờ phát {self._local(fire_time)}: bộ điều khiển không chạy vào giờ đó và đã quá "
            f"{seconds} giây cho phép."
        )

    def _local(self, value: datetime) -> str:
        return value.astimezone(self.zone).strftime("%H:%M:%S %d/%m/%Y")

    def _on_missed(self, job_id: str, scheduled: datetime) -> None:
        """A run past the grace (APScheduler did not run it): record it."""
        kind, _, ident = job_id.partition("-")
        if kind == "schedule":
            self._record_missed(int(ident), scheduled, self._late_reason(scheduled))

    def _record_superseded(self, now: datetime) -> None:
        """Before resuming: every due fire time of a job except its latest is recorded missed."""
        assert self._clock is not None
        for job in self._clock.jobs().values():
            kind, _, ident = job.id.partition("-")
            if kind != "schedule" or job.next_run is None or job.next_run > now:
                continue
            due = due_runs(job, now)
            latest = due[-1]
            for fire_time in due[:-1]:
                self._record_missed(
                    int(ident),
                    fire_time,
                    f"Lỡ giờ phát {self._local(fire_time)} khi bộ điều khiển không chạy; chỉ phát lần gần nhất "
                    f"({self._local(latest)}) nếu còn trong thời gian cho phép.",
                )

    def _record_missed(self, schedule_id: int, fire_time: datetime, reason: str) -> int | None:
        """A ``missed`` airing of one fire time, written by the broadcast lifecycle; a no-op when
        that airing is already recorded."""
        with self.sessions() as session:
            row = session.get(Schedule, schedule_id)
            if row is None:
                return None
            ann = row.announcement()
            relay = None
            if row.channel_id is not None:
                channel = session.get(Channel, row.channel_id)
                relay = (row.channel_id, channel.name if channel is not None else row.name)
        broadcast_id = self.broadcasts.record_missed(
            ann, schedule_id=schedule_id, fire_time=fire_time.astimezone(UTC), reason=reason, relay=relay
        )
        if broadcast_id is not None:
            _LOGGER.warning("schedule %s: %s", schedule_id, reason)
        return broadcast_id

    def _log(self, kind: str, message: str) -> None:
        """A scheduler decision for the officer's log (not about one broadcast)."""
        try:
            with self.sessions.begin() as session:
                session.add(LogEntry(kind=kind, message=message))
        except Exception:
            _LOGGER.exception("could not write a log entry")

    # ------------------------------------------------------------------ the schedules (book.py)

    def create_schedule(self, data: dict[str, Any], author: str | None = None) -> int:
        return self.book.create(data, author)

    def update_schedule(self, schedule_id: int, data: dict[str, Any]) -> dict[str, Any]:
        return self.book.update(schedule_id, data)

    def delete_schedule(self, schedule_id: int) -> None:
        self.book.delete(schedule_id)

    def get_schedule(self, schedule_id: int) -> dict[str, Any]:
        return self.book.get(schedule_id)

    def list_schedules(self) -> list[dict[str, Any]]:
        return self.book.list()

    def schedule_dict(self, row: Schedule) -> dict[str, Any]:
        return self.book.as_dict(row)

    def reload_yaml(self) -> dict[str, Any]:
        return self.book.reload_yaml()

    # ------------------------------------------------------------------ render ahead (ahead.py)

    def render_ahead(self, schedule_id: int) -> Future[str | None] | None:
        return self.ahead.render(schedule_id)

    def render_all(self) -> None:
        """Re-render every schedule with a future airing; after the lexicon changed."""
        self.ahead.render_all()

    def pending_render(self, schedule_id: int) -> Future[str | None] | None:
        return self.ahead.pending(schedule_id)

    # ------------------------------------------------------------------ week view (upcoming.py)

    def upcoming(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        with self.sessions() as session:
            return upcoming(session, self.zone, start, end, self.max_upcoming)


__all__ = ["SCHEDULE_JOB", "SPEC_FIELDS", "SchedulerService"]

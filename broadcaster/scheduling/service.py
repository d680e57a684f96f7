"""SchedulerService: persistent schedules that fire bulletins through the broadcast lifecycle.

This module keeps the scheduler's life cycle and the jobs derived from the schedules; the book of
schedules, firing, render ahead and the week view are collaborators behind this one public face.

* Schedules are rows of ``schedules`` (``book.py``: CRUD and ``schedules/*.yaml``); a job
  (``schedule-{id}``) is derived from each, idempotently, and kept in APScheduler's job store in
  the same database (``apsched.py``), so it survives a restart. One-off items scheduled from the
  compose page or the API are not jobs: the broadcast dispatcher airs them (and re-reads them at
  start).
* One scheduler per database (``lock.py``); a second one refuses to start, and a scheduler that
  loses its lease stops firing at once.
* Firing (``firing.py``): a job airs one fire time of its schedule through the broadcast lifecycle,
  or records it missed. Missed bulletins: see :meth:`SchedulerService.start`. A bulletin is never
  aired twice: every airing carries ``(schedule_id, fire_time)``, unique in ``broadcasts``.
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
from broadcaster.models import Approval, Broadcast, Schedule
from broadcaster.scheduling import jobs
from broadcaster.scheduling.ahead import RenderAhead
from broadcaster.scheduling.apsched import JobClock, Trigger, next_fire
from broadcaster.scheduling.book import ScheduleBook, trigger_of
from broadcaster.scheduling.firing import ScheduleFiring
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
        self.lease_lost = threading.Event()
        self.firing = ScheduleFiring(sessions, broadcasts, speech, self.zone, self.grace, self.lease_lost)
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
            log=self.firing.log,
            rendered=self.lookahead.mark if self.lookahead is not None else None,
        )
        self._clock: JobClock | None = None
        self._lock: SchedulerLock | None = None
        self._own_engine: Any = None
        self._state = threading.RLock()

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
        clock = JobClock(engine, self.zone, int(self.grace.total_seconds()), self.firing.on_missed)
        self.ahead.start()
        clock.start_paused()
        self._clock = clock
        jobs.bind(self)
        self.firing.record_superseded(clock.jobs().values(), _utcnow())
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
        self.firing.log(
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

    # ------------------------------------------------------------------ firing (firing.py)

    def fire_broadcast(self, broadcast_id: int) -> None:
        """A deferred-broadcast job of an earlier version fired before sync_jobs removed it."""
        self.broadcasts.air(broadcast_id)

    def fire_schedule(self, schedule_id: int) -> int | None:
        """Air one fire time of a schedule; returns the broadcast id (None when nothing aired)."""
        return self.firing.fire_schedule(schedule_id)

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

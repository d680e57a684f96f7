"""SchedulerService: persistent schedules on APScheduler 3.11 (the only apscheduler import).

* Schedules are rows of ``schedules``; APScheduler jobs (``schedule-{id}``) are derived from them
  idempotently and kept in a ``SQLAlchemyJobStore`` in the same database, so they survive a
  restart. Deferred one-off broadcasts are ``broadcast-{id}`` date jobs.
* One scheduler per database (``lock.py``); a second one refuses to start.
* Missed bulletins: see :meth:`SchedulerService.start` and ``_on_missed``. A bulletin is never
  aired twice: every airing carries ``(schedule_id, fire_time)``, unique in ``broadcasts``.
* Render ahead: a schedule's audio is rendered (and pinned in the store) when it is created,
  changed or loaded, and again at start, on a worker thread.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor as JobThreadPool
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from sqlalchemy import create_engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.domain import Announcement, AudioKey, Source, Tier
from broadcaster.fleet.registry import RegistryError, resolve_targets
from broadcaster.models import Announcement as AnnouncementRow
from broadcaster.models import (
    Approval,
    Broadcast,
    BroadcastState,
    Delivery,
    DeliveryState,
    LexiconEntry,
    LogEntry,
    Schedule,
    Zone,
)
from broadcaster.models import Speaker as SpeakerRow
from broadcaster.scheduling import jobs
from broadcaster.scheduling.lock import SchedulerLock, lock_for
from broadcaster.scheduling.spec import (
    SPEC_FIELDS,
    ScheduleError,
    ScheduleFields,
    parse_cron,
    validate_spec,
)
from broadcaster.scheduling.yamlfiles import load_dir

if TYPE_CHECKING:
    from broadcaster.broadcasts import BroadcastManager
    from broadcaster.settings import Settings
    from broadcaster.speech import SpeechService

_LOGGER = logging.getLogger(__name__)

JOBSTORE_TABLE = "apscheduler_jobs"
SCHEDULE_JOB = "schedule-{}"
BROADCAST_JOB = "broadcast-{}"
# A one-off time this close behind "now" is still accepted (clock skew between browser and server).
PAST_TOLERANCE = timedelta(seconds=60)
# Job threads: a fire job only submits to the broadcast manager, which returns at once.
JOB_THREADS = 4
# Fields whose change needs new audio.
_AUDIO_FIELDS = ("text", "engine", "voice", "repeat")
_TIMING_FIELDS = ("kind", "time", "days", "at", "cron", "valid_from", "valid_to")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _pin_owner(schedule_id: int) -> str:
    """Each schedule pins its rendered-ahead audio under its own name in the store."""
    return f"schedule:{schedule_id}"


class SchedulerService:
    """Persistent scheduling of bulletins and deferred broadcasts (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        broadcasts: BroadcastManager,
        speech: SpeechService | None,
    ) -> None:
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
        self.schedules_dir: Path | None = (
            cfg.schedules_dir if cfg.schedules_dir is not None else Path("schedules")
        )
        self.render_ahead_enabled = cfg.render_ahead
        self.max_upcoming = cfg.max_upcoming
        self.last_reload: dict[str, Any] = {}
        self._scheduler: BackgroundScheduler | None = None
        self._lock: SchedulerLock | None = None
        self._own_engine = None
        self._render_pool: ThreadPoolExecutor | None = None
        self._renders: dict[int, Future[str | None]] = {}
        self._state = threading.RLock()

    # ------------------------------------------------------------------ life cycle

    @property
    def running(self) -> bool:
        return self._scheduler is not None

    def start(self) -> None:
        """Take the scheduler lock, open the job store, record missed airings, sync jobs, run.

        Missed airings while the controller was down: with ``coalesce=True`` APScheduler runs only
        the latest due fire time of a job (``coalesce=False`` would replay every missed run, e.g.
        seven morning bulletins after a week off). That latest one airs if it is within the grace,
        else EVENT_JOB_MISSED records it as missed. The older ones are recorded here, before the
        scheduler resumes, as missed ("superseded"), so the log shows every bulletin that did not air.
        """
        with self._state:
            if self._scheduler is not None:
                return
            lock = lock_for(
                self.settings.db_url, self.settings.instance, self.sessions, self.settings.scheduling.lease_s
            )
            lock.acquire()
            try:
                self._start_locked()
            except BaseException:
                self._stop_scheduler()
                lock.release()
                raise
            self._lock = lock

    def _start_locked(self) -> None:
        engine = self.sessions.kw.get("bind")
        if engine is None:
            engine = self._own_engine = create_engine(self.settings.db_url)
        scheduler = BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=engine, tablename=JOBSTORE_TABLE)},
            executors={"default": JobThreadPool(JOB_THREADS)},
            job_defaults={
                # Play the latest missed run once, not every missed run (see start()).
                "coalesce": True,
                "misfire_grace_time": int(self.grace.total_seconds()),
                "max_instances": 1,
            },
            timezone=self.zone,
        )
        scheduler.add_listener(self._on_missed, EVENT_JOB_MISSED)
        scheduler.add_listener(self._on_error, EVENT_JOB_ERROR)
        self._render_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render-ahead")
        scheduler.start(paused=True)
        self._scheduler = scheduler
        jobs.bind(self)
        self._record_superseded(_utcnow())
        self.reload_yaml()
        self.sync_jobs()
        if self.render_ahead_enabled:
            self.render_all()
        scheduler.resume()
        _LOGGER.info("scheduler running: %d job(s), grace %s", len(scheduler.get_jobs()), self.grace)

    def shutdown(self) -> None:
        with self._state:
            self._stop_scheduler()
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def _stop_scheduler(self) -> None:
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            try:
                # APScheduler's shutdown() marks the scheduler stopped without waiting for a pass of
                # its loop in progress; that pass then fails to remove a finished one-shot job
                # (JobLookupError in the APScheduler thread). Pause, then wait for the pass (it
                # holds the job stores lock throughout) before shutting down.
                scheduler.pause()
                with scheduler._jobstores_lock:
                    pass
                scheduler.shutdown(wait=True)
            except Exception:
                _LOGGER.exception("scheduler shutdown failed")
        jobs.unbind(self)
        pool, self._render_pool = self._render_pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        self._renders.clear()
        if self._own_engine is not None:
            self._own_engine.dispose()
            self._own_engine = None

    # ------------------------------------------------------------------ triggers

    def build_trigger(self, row: Schedule | ScheduleFields) -> BaseTrigger:
        """The APScheduler trigger of a schedule row or spec; ScheduleError on a bad definition."""
        kind = row.kind
        at = row.run_at if isinstance(row, Schedule) else row.at
        days = row.days if isinstance(row, Schedule) else (",".join(row.days) if row.days else None)
        start, end = row.valid_from, row.valid_to
        try:
            if kind == "once":
                if at is None:
                    raise ScheduleError("kind 'once' needs 'at'", field="at")
                return DateTrigger(run_date=at.astimezone(self.zone), timezone=self.zone)
            common: dict[str, Any] = {"timezone": self.zone, "start_date": start, "end_date": end}
            if kind == "cron":
                if not row.cron:
                    raise ScheduleError("kind 'cron' needs 'cron'", field="cron")
                return CronTrigger(**parse_cron(row.cron), **common)
            if not row.time:
                raise ScheduleError(f"kind {kind!r} needs 'time'", field="time")
            hour, minute = (int(x) for x in row.time.split(":"))
            dow = {"daily": "*", "weekdays": "mon-fri", "weekly": days}.get(kind)
            if dow is None:
                raise ScheduleError(
                    f"unknown kind {kind!r}" if kind != "weekly" else "weekly needs days", field="kind"
                )
            return CronTrigger(day_of_week=dow, hour=hour, minute=minute, second=0, **common)
        except ScheduleError:
            raise
        except ValueError as exc:
            raise ScheduleError(f"{kind}: {exc}", field="cron" if kind == "cron" else "kind") from exc

    @staticmethod
    def _fingerprint(row: Schedule) -> str:
        parts = [row.kind, row.time, row.days, row.run_at, row.cron, row.valid_from, row.valid_to]
        return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]

    def _fire_times(
        self, trigger: BaseTrigger, start: datetime, end: datetime, limit: int
    ) -> Iterator[datetime]:
        """Fire times of ``trigger`` in ``[start, end]``, at most ``limit``."""
        t = trigger.get_next_fire_time(None, start)
        count = 0
        while t is not None and t <= end and count < limit:
            if t >= start:
                yield t.astimezone(UTC)
                count += 1
            if isinstance(trigger, DateTrigger):
                return
            t = trigger.get_next_fire_time(t, t)

    def _latest_fire_time(self, trigger: BaseTrigger, now: datetime) -> datetime | None:
        """The latest fire time at or before ``now`` within the grace: the airing a running job
        is for. Searched in growing windows so a per-second cron does not walk the whole grace."""
        window = timedelta(seconds=2)
        limit = self.grace + timedelta(seconds=60)
        while True:
            start = now - min(window, limit)
            times = list(self._fire_times(trigger, start, now, 100_000))
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
        now = _utcnow()
        nxt = trigger.get_next_fire_time(None, now)
        if nxt is not None and nxt < now:  # a one-off in the past
            return None
        return None if nxt is None else nxt.astimezone(UTC)

    # ------------------------------------------------------------------ jobs

    def sync_jobs(self) -> None:
        """Make the job store match the schedules (idempotent).

        A job whose definition is unchanged is kept as it is, so its stored next run time (and a
        run missed while we were down) survives; a changed one is replaced. Jobs of deferred
        one-off broadcasts (``broadcast-<id>``, from earlier versions) are removed: the broadcast
        dispatcher airs scheduled broadcasts itself and re-reads them at start."""
        scheduler = self._scheduler
        if scheduler is None:
            return
        existing = {job.id: job for job in scheduler.get_jobs()}
        wanted: set[str] = set()
        with self.sessions() as session:
            for row in session.scalars(select(Schedule)):
                if self._sync_schedule_job(session, row, existing.get(SCHEDULE_JOB.format(row.id))):
                    wanted.add(SCHEDULE_JOB.format(row.id))
        for job_id in existing.keys() - wanted:
            if job_id.startswith(("schedule-", "broadcast-")):
                self._remove_job(job_id)

    def _sync_schedule_job(self, session: Session, row: Schedule, job: Any) -> bool:
        """Add, keep or replace the job of one schedule; True when it should have a job."""
        job_id = SCHEDULE_JOB.format(row.id)
        active = row.enabled and row.approval == Approval.APPROVED.value
        if not active:
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
        name = f"{job_id}@{self._fingerprint(row)}"
        if job is not None and job.name == name:
            return True
        assert self._scheduler is not None
        self._scheduler.add_job(
            "broadcaster.scheduling.jobs:fire_schedule",
            trigger=trigger,
            args=[row.id],
            id=job_id,
            name=name,
            replace_existing=True,
        )
        return True

    def _sync_one(self, schedule_id: int) -> None:
        if self._scheduler is None:
            return
        job_id = SCHEDULE_JOB.format(schedule_id)
        with self.sessions() as session:
            row = session.get(Schedule, schedule_id)
            keep = row is not None and self._sync_schedule_job(session, row, self._scheduler.get_job(job_id))
        if not keep:
            self._remove_job(job_id)

    def _remove_job(self, job_id: str) -> None:
        if self._scheduler is None:
            return
        try:
            self._scheduler.remove_job(job_id)
        except JobLookupError:
            pass

    # ------------------------------------------------------------------ firing

    def fire_broadcast(self, broadcast_id: int) -> None:
        """A deferred-broadcast job of an earlier version fired before sync_jobs removed it."""
        self.broadcasts.air(broadcast_id)

    def fire_schedule(self, schedule_id: int) -> int | None:
        """Air one fire time of a schedule; returns the broadcast id (None when nothing aired)."""
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
            audio_key = row.audio_key
            if audio_key and self.speech is not None and not self.speech.store.has(audio_key):
                audio_key = None  # the store was emptied: render at air time
            ann = Announcement(
                text=row.text,
                tier=Tier(row.tier),
                targets=tuple(row.targets or ("all",)),
                title=row.title or row.name,
                repeat=row.repeat,
                engine=row.engine,
                voice=row.voice,
                author=row.author or "lịch phát",
                source=Source.SCHEDULE,
                audio_key=AudioKey(audio_key) if audio_key else None,
                extra={"schedule_id": str(row.id), "schedule_name": row.name},
            )
        try:
            broadcast_id = self.broadcasts.submit(
                ann, approved=True, schedule_id=schedule_id, fire_time=fire_time
            )
        except Exception as exc:
            _LOGGER.exception(
                "schedule %s: submitting the %s airing failed", schedule_id, fire_time.isoformat()
            )
            self._log(
                "schedule_failed",
                f"Lịch '{ann.title}' ({self._local(fire_time)}) không phát được: {exc}",
            )
            return None
        _LOGGER.info(
            "schedule %s fired for %s: broadcast %s", schedule_id, fire_time.isoformat(), broadcast_id
        )
        return broadcast_id

    def _late_reason(self, fire_time: datetime) -> str:
        seconds = int(self.grace.total_seconds())
        return (
            f"Lỡ giờ phát {self._local(fire_time)}: bộ điều khiển không chạy vào giờ đó và đã quá "
            f"{seconds} giây cho phép."
        )

    def _local(self, value: datetime) -> str:
        return value.astimezone(self.zone).strftime("%H:%M:%S %d/%m/%Y")

    def _on_missed(self, event: JobExecutionEvent) -> None:
        """EVENT_JOB_MISSED: a run past the grace (APScheduler did not run it). Record it."""
        try:
            kind, _, ident = event.job_id.partition("-")
            if kind == "schedule":
                self._record_missed(
                    int(ident), event.scheduled_run_time, self._late_reason(event.scheduled_run_time)
                )
        except Exception:
            _LOGGER.exception("could not record the missed job %s", event.job_id)

    def _on_error(self, event: JobExecutionEvent) -> None:
        _LOGGER.error("job %s failed: %r", event.job_id, event.exception)

    def _record_superseded(self, now: datetime) -> None:
        """Before resuming: every due fire time of a job except its latest is recorded missed."""
        assert self._scheduler is not None
        for job in self._scheduler.get_jobs():
            kind, _, ident = job.id.partition("-")
            if kind != "schedule" or job.next_run_time is None or job.next_run_time > now:
                continue
            due: list[datetime] = []
            t = job.next_run_time
            while t is not None and t <= now and len(due) < 10_000:
                due.append(t)
                t = job.trigger.get_next_fire_time(t, now)
            latest = due[-1]
            for fire_time in due[:-1]:
                self._record_missed(
                    int(ident),
                    fire_time,
                    f"Lỡ giờ phát {self._local(fire_time)} khi bộ điều khiển không chạy; chỉ phát lần gần nhất "
                    f"({self._local(latest)}) nếu còn trong thời gian cho phép.",
                )

    def _record_missed(self, schedule_id: int, fire_time: datetime, reason: str) -> int | None:
        """A ``missed`` broadcast (with per-cluster deliveries) and a log entry for one fire time,
        written by the broadcast lifecycle; a no-op when that airing is already recorded."""
        with self.sessions() as session:
            row = session.get(Schedule, schedule_id)
            if row is None:
                return None
            ann = self._announcement(row)
        broadcast_id = self.broadcasts.record_missed(
            ann, schedule_id=schedule_id, fire_time=fire_time.astimezone(UTC), reason=reason
        )
        if broadcast_id is not None:
            _LOGGER.warning("schedule %s: %s", schedule_id, reason)
        return broadcast_id

    def _log(self, kind: str, message: str, broadcast_id: int | None = None) -> None:
        try:
            with self.sessions.begin() as session:
                session.add(LogEntry(kind=kind, message=message, broadcast_id=broadcast_id))
        except Exception:
            _LOGGER.exception("could not write a log entry")

    # ------------------------------------------------------------------ CRUD

    def _check_targets(self, session: Session, targets: list[str]) -> None:
        known = {"all", *session.scalars(select(Zone.id)), *session.scalars(select(SpeakerRow.id))}
        unknown = [t for t in targets if t not in known]
        if unknown:
            raise ScheduleError(f"targets: unknown zone or speaker: {', '.join(unknown)}", field="targets")

    def _check_engine(self, spec: ScheduleFields) -> None:
        if spec.engine is None or self.speech is None:
            return
        try:
            engines = self.speech.engines()
        except Exception:
            return
        names = {e if isinstance(e, str) else getattr(e, "name", None) or e.get("name") for e in engines}
        if spec.engine not in names:
            raise ScheduleError(
                f"engine: unknown engine {spec.engine!r}; known: {', '.join(sorted(map(str, names)))}",
                field="engine",
            )

    def _apply(self, row: Schedule, spec: ScheduleFields) -> set[str]:
        """Copy a spec onto a row; return the names of the columns that changed."""
        values = {
            "name": spec.name,
            "title": spec.title,
            "text": spec.text,
            "tier": Tier(spec.tier).value,
            "targets": list(spec.targets),
            "repeat": spec.repeat,
            "engine": spec.engine,
            "voice": spec.voice,
            "kind": spec.kind,
            "time": spec.time,
            "days": ",".join(spec.days) if spec.days else None,
            "run_at": spec.at,
            "cron": spec.cron,
            "valid_from": spec.valid_from,
            "valid_to": spec.valid_to,
            "enabled": spec.enabled,
        }
        approval = getattr(spec, "approval", None)
        if approval is not None:
            values["approval"] = Approval(approval).value
        changed = set()
        for key, value in values.items():
            if getattr(row, key) != value:
                setattr(row, key, value)
                changed.add(key)
        return changed

    def _validate(self, session: Session, data: dict[str, Any], *, is_new: bool) -> ScheduleFields:
        spec = validate_spec(data, self.zone)
        self._check_targets(session, spec.targets)
        self._check_engine(spec)
        self.build_trigger(spec)  # the definition must make a trigger
        if spec.kind == "once" and spec.at is not None and is_new and spec.at < _utcnow() - PAST_TOLERANCE:
            raise ScheduleError("at: the time is in the past", field="at")
        return spec

    def create_schedule(self, data: dict[str, Any], author: str | None = None) -> int:
        """Validate and store a schedule, sync its job, render its audio ahead. Returns its id."""
        with self.sessions.begin() as session:
            spec = self._validate(session, data, is_new=True)
            row = Schedule(author=author)
            self._apply(row, spec)
            session.add(row)
            session.flush()
            schedule_id = row.id
        _LOGGER.info("schedule %s (%s) created by %s", schedule_id, spec.name, author)
        self._after_change(schedule_id, audio_changed=True)
        return schedule_id

    def update_schedule(self, schedule_id: int, data: dict[str, Any]) -> dict[str, Any]:
        """Change some fields (a partial update). A change of ``kind`` drops the old timing fields."""
        with self.sessions.begin() as session:
            row = self._get_row(session, schedule_id)
            if row.source_file:
                raise ScheduleError(
                    f"this schedule comes from the file schedules/{row.source_file}; edit that file instead",
                    code="conflict",
                )
            if not isinstance(data, dict):
                raise ScheduleError("a schedule must be a mapping of fields")
            current = self._row_spec_data(row)
            if "kind" in data and data["kind"] != row.kind:
                for key in ("time", "days", "at", "cron"):
                    current.pop(key, None)
            merged = {**current, **data}
            spec = self._validate(session, merged, is_new="at" in data)
            changed = self._apply(row, spec)
        self._after_change(schedule_id, audio_changed=bool(changed & set(_AUDIO_FIELDS)))
        return self.get_schedule(schedule_id)

    def delete_schedule(self, schedule_id: int) -> None:
        with self.sessions.begin() as session:
            row = self._get_row(session, schedule_id)
            if row.source_file:
                raise ScheduleError(
                    f"this schedule comes from the file schedules/{row.source_file}; remove that file instead",
                    code="conflict",
                )
            self._delete_row(session, row)
        self._remove_job(SCHEDULE_JOB.format(schedule_id))
        _LOGGER.info("schedule %s deleted", schedule_id)

    def _delete_row(self, session: Session, row: Schedule) -> None:
        key, schedule_id = row.audio_key, row.id
        session.delete(row)
        session.flush()
        if key:
            self._unpin(key, schedule_id)

    def _get_row(self, session: Session, schedule_id: int) -> Schedule:
        row = session.get(Schedule, schedule_id) if isinstance(schedule_id, int) else None
        if row is None:
            raise ScheduleError(f"no schedule {schedule_id}", code="not_found")
        return row

    def _row_spec_data(self, row: Schedule) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": row.name,
            "title": row.title,
            "text": row.text,
            "tier": row.tier,
            "targets": list(row.targets),
            "repeat": row.repeat,
            "engine": row.engine,
            "voice": row.voice,
            "kind": row.kind,
            "enabled": row.enabled,
            "approval": row.approval,
        }
        for key, value in (
            ("time", row.time),
            ("days", row.days.split(",") if row.days else None),
            ("at", row.run_at),
            ("cron", row.cron),
            ("valid_from", row.valid_from),
            ("valid_to", row.valid_to),
        ):
            if value is not None:
                data[key] = value
        return data

    def _iso(self, value: datetime | None) -> str | None:
        return None if value is None else value.astimezone(self.zone).isoformat()

    def schedule_dict(self, row: Schedule) -> dict[str, Any]:
        """JSON-ready view of a schedule; times in settings.timezone with their offset."""
        # The spec fields, with the timing fields it leaves out when unset shown as null.
        data = {**dict.fromkeys(_TIMING_FIELDS), **self._row_spec_data(row)}
        for key in ("at", "valid_from", "valid_to"):
            data[key] = self._iso(data[key])
        return {
            "id": row.id,
            **data,
            "author": row.author,
            "source_file": row.source_file,
            "audio_key": row.audio_key,
            "created": self._iso(row.created),
            "next_run": self._iso(self.next_run(row)) if row.enabled else None,
        }

    def get_schedule(self, schedule_id: int) -> dict[str, Any]:
        with self.sessions() as session:
            return self.schedule_dict(self._get_row(session, schedule_id))

    def list_schedules(self) -> list[dict[str, Any]]:
        with self.sessions() as session:
            return [self.schedule_dict(r) for r in session.scalars(select(Schedule).order_by(Schedule.id))]

    def _after_change(self, schedule_id: int, *, audio_changed: bool) -> None:
        with self._state:
            self._sync_one(schedule_id)
        if audio_changed or self._needs_render(schedule_id):
            self.render_ahead(schedule_id)

    # ------------------------------------------------------------------ schedules/*.yaml

    def reload_yaml(self) -> dict[str, Any]:
        """Load schedules/*.yaml: create, update or remove the file-based schedules (idempotent).

        Returns ``{"created": [...], "updated": [...], "unchanged": [...], "removed": [...],
        "errors": {file: message}}``. A file that turned bad keeps its last good schedule."""
        loaded = load_dir(self.schedules_dir, self.zone)
        report: dict[str, Any] = {"created": [], "updated": [], "unchanged": [], "removed": [], "errors": {}}
        report["errors"].update(loaded.errors)
        touched: list[tuple[int, bool]] = []
        removed_ids: list[int] = []
        with self.sessions.begin() as session:
            rows = {
                r.source_file: r
                for r in session.scalars(select(Schedule).where(Schedule.source_file.is_not(None)))
            }
            for name, spec in loaded.specs.items():
                try:
                    self._check_targets(session, spec.targets)
                    self.build_trigger(spec)
                except ScheduleError as exc:
                    report["errors"][name] = f"{name}: {exc.message}"
                    _LOGGER.error("schedule file skipped: %s: %s", name, exc.message)
                    continue
                row = rows.get(name)
                if row is None:
                    row = Schedule(
                        source_file=name, author=f"schedules/{name}", approval=Approval.APPROVED.value
                    )
                    self._apply(row, spec)
                    session.add(row)
                    session.flush()
                    report["created"].append(name)
                    touched.append((row.id, True))
                    continue
                changed = self._apply(row, spec)
                if changed:
                    report["updated"].append(name)
                    touched.append((row.id, bool(changed & set(_AUDIO_FIELDS))))
                else:
                    report["unchanged"].append(name)
            for name, row in rows.items():
                if name not in loaded.specs and name not in loaded.errors:
                    removed_ids.append(row.id)
                    self._delete_row(session, row)
                    report["removed"].append(name)
        for schedule_id in removed_ids:
            self._remove_job(SCHEDULE_JOB.format(schedule_id))
        for schedule_id, audio_changed in touched:
            self._after_change(schedule_id, audio_changed=audio_changed)
        if report["created"] or report["updated"] or report["removed"] or report["errors"]:
            _LOGGER.info(
                "schedules/*.yaml: %d created, %d updated, %d removed, %d with errors",
                len(report["created"]),
                len(report["updated"]),
                len(report["removed"]),
                len(report["errors"]),
            )
        self.last_reload = report
        return report

    # ------------------------------------------------------------------ render ahead

    def _lexicon(self, session: Session) -> dict[str, str]:
        return dict(session.execute(select(LexiconEntry.term, LexiconEntry.reading)).all())

    def _needs_render(self, schedule_id: int) -> bool:
        if self.speech is None:
            return False
        with self.sessions() as session:
            row = session.get(Schedule, schedule_id)
            return row is not None and (not row.audio_key or not self.speech.store.has(row.audio_key))

    def render_ahead(self, schedule_id: int) -> Future[str | None] | None:
        """Render a schedule's audio on the worker; the future gives the audio key (None on failure).
        Without a running scheduler (or render ahead off, or no speech service) nothing happens."""
        pool = self._render_pool
        if pool is None or self.speech is None or not self.render_ahead_enabled:
            return None
        queued = self._renders.get(schedule_id)
        if queued is not None and not queued.running() and not queued.done():
            return queued  # not started yet: it reads the schedule when it runs, so it is current
        try:
            future = pool.submit(self._render, schedule_id)
        except RuntimeError:  # shutting down
            return None
        self._renders[schedule_id] = future
        return future

    def render_all(self) -> None:
        """Re-render every enabled schedule with a future airing (cache hits cost nothing); call it
        after the lexicon changed so the bulletins read the new way."""
        with self.sessions() as session:
            ids = [r.id for r in session.scalars(select(Schedule).where(Schedule.enabled.is_(True)))]
            rows = {r.id: r for r in session.scalars(select(Schedule).where(Schedule.id.in_(ids)))}
            ids = [i for i in ids if self.next_run(rows[i]) is not None]
        for schedule_id in ids:
            self.render_ahead(schedule_id)

    def pending_render(self, schedule_id: int) -> Future[str | None] | None:
        """The last render-ahead future of a schedule (tests and the UI wait on it)."""
        return self._renders.get(schedule_id)

    def _render(self, schedule_id: int) -> str | None:
        assert self.speech is not None
        with self.sessions() as session:
            row = session.get(Schedule, schedule_id)
            if row is None or not row.enabled:
                return None
            inputs = (row.text, row.engine, row.voice, row.repeat)
            lexicon = self._lexicon(session)
        try:
            result = self.speech.render(
                inputs[0], engine=inputs[1], voice=inputs[2], repeat=inputs[3], chime=True, lexicon=lexicon
            )
        except Exception as exc:
            _LOGGER.warning(
                "render ahead of schedule %s failed (it renders at air time): %s", schedule_id, exc
            )
            self._log(
                "render_failed",
                f"Chưa tạo trước được âm thanh cho lịch {schedule_id}; sẽ tạo lúc phát. Lỗi: {exc}",
            )
            return None
        key = str(result.key)
        self.speech.store.pin(key, _pin_owner(schedule_id))
        with self.sessions.begin() as session:
            row = session.get(Schedule, schedule_id)
            if row is None or (row.text, row.engine, row.voice, row.repeat) != inputs:
                # deleted or edited while rendering: the newer render (already queued) wins
                self._unpin(key, schedule_id)
                return None
            old, row.audio_key = row.audio_key, key
        if old and old != key:
            self._unpin(old, schedule_id)
        _LOGGER.info("schedule %s rendered ahead: %s (%.1f s)", schedule_id, key[:12], result.duration_s)
        return key

    def _unpin(self, key: str, schedule_id: int) -> None:
        if self.speech is None:
            return
        try:
            self.speech.store.unpin(key, _pin_owner(schedule_id))
        except Exception:
            _LOGGER.exception("could not unpin %s", key)

    # ------------------------------------------------------------------ week view

    def _window(self, value: datetime) -> datetime:
        return (value.replace(tzinfo=self.zone) if value.tzinfo is None else value).astimezone(UTC)

    def upcoming(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Airings between ``start`` and ``end`` (naive = settings.timezone), sorted by time.

        Each: ``{schedule_id, broadcast_id, title, name, tier, targets, at, state, approval, kind}``.
        Future airings come from the schedules' triggers (``broadcast_id`` None until they air);
        aired, missed and deferred ones from the broadcasts."""
        start, end = self._window(start), self._window(end)
        items: dict[tuple[Any, ...], dict[str, Any]] = {}
        with self.sessions() as session:
            for row in session.scalars(select(Schedule).where(Schedule.enabled.is_(True))):
                try:
                    trigger = self.build_trigger(row)
                except ScheduleError:
                    continue
                for at in self._fire_times(trigger, start, end, self.max_upcoming):
                    items[("s", row.id, at)] = {
                        "schedule_id": row.id,
                        "broadcast_id": None,
                        "title": row.title or row.name,
                        "name": row.name,
                        "tier": row.tier,
                        "targets": list(row.targets),
                        "at": at,
                        "state": None,
                        "approval": row.approval,
                        "kind": row.kind,
                    }
            when = Broadcast.fire_time
            query = (
                select(Broadcast, AnnouncementRow.title, AnnouncementRow.approval)
                .join(AnnouncementRow, Broadcast.announcement_id == AnnouncementRow.id)
                .where(
                    ((when >= start) & (when <= end))
                    | ((Broadcast.scheduled_at >= start) & (Broadcast.scheduled_at <= end))
                )
            )
            for broadcast, title, approval in session.execute(query).all():
                at = broadcast.fire_time or broadcast.scheduled_at
                if at is None:
                    continue
                key = ("s", broadcast.schedule_id, at) if broadcast.schedule_id else ("b", broadcast.id)
                item = items.get(key) or {
                    "schedule_id": broadcast.schedule_id,
                    "name": title,
                    "kind": "once" if broadcast.schedule_id is None else None,
                }
                item.update(
                    broadcast_id=broadcast.id,
                    title=title or item.get("title") or "",
                    tier=broadcast.tier,
                    targets=list(broadcast.targets),
                    at=at,
                    state=broadcast.state,
                    approval=approval,
                )
                items[key] = item
        out = sorted(items.values(), key=lambda i: (i["at"], i["schedule_id"] or 0, i["broadcast_id"] or 0))
        for item in out:
            item["at"] = self._iso(item["at"])
        return out


__all__ = ["SPEC_FIELDS", "SchedulerService"]

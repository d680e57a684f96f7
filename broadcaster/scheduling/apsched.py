"""APScheduler 3.11 behind a small interface: the only module that imports apscheduler.

- :class:`JobClock` runs a ``BackgroundScheduler`` with a ``SQLAlchemyJobStore`` in the
  controller's database, so jobs survive a restart;
- :func:`build_trigger` turns a schedule's timing fields into a trigger, and :func:`fire_times`,
  :func:`next_fire` and :func:`due_runs` answer "when does it fire" without a running scheduler.

Triggers are APScheduler objects; other modules treat them as opaque (``Trigger``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor as JobThreadPool
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from sqlalchemy import Engine

_LOGGER = logging.getLogger(__name__)

Trigger = BaseTrigger
JOBSTORE_TABLE = "apscheduler_jobs"
# Job threads: a fire job only submits to the broadcast service, which returns at once.
JOB_THREADS = 4


class TriggerError(ValueError):
    """Timing fields that make no trigger; ``field`` names the field at fault."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class Timing:
    """The timing fields of a schedule (a row or a validated spec)."""

    kind: str
    time: str | None = None
    days: str | None = None  # "mon,wed,fri"
    at: datetime | None = None
    cron: dict[str, str] | None = None  # crontab fields by APScheduler name
    valid_from: datetime | None = None
    valid_to: datetime | None = None


def build_trigger(timing: Timing, zone: tzinfo) -> Trigger:
    """The trigger of ``timing``; TriggerError on a bad definition."""
    kind = timing.kind
    try:
        if kind == "once":
            if timing.at is None:
                raise TriggerError("kind 'once' needs 'at'", "at")
            return DateTrigger(run_date=timing.at.astimezone(zone), timezone=zone)
        common: dict[str, Any] = {
            "timezone": zone,
            "start_date": timing.valid_from,
            "end_date": timing.valid_to,
        }
        if kind == "cron":
            if not timing.cron:
                raise TriggerError("kind 'cron' needs 'cron'", "cron")
            return CronTrigger(**timing.cron, **common)
        if not timing.time:
            raise TriggerError(f"kind {kind!r} needs 'time'", "time")
        hour, minute = (int(x) for x in timing.time.split(":"))
        dow = {"daily": "*", "weekdays": "mon-fri", "weekly": timing.days}.get(kind)
        if dow is None:
            raise TriggerError(f"unknown kind {kind!r}" if kind != "weekly" else "weekly needs days", "kind")
        return CronTrigger(day_of_week=dow, hour=hour, minute=minute, second=0, **common)
    except TriggerError:
        raise
    except ValueError as exc:
        raise TriggerError(f"{kind}: {exc}", "cron" if kind == "cron" else "kind") from exc


def fire_times(trigger: Trigger, start: datetime, end: datetime, limit: int) -> Iterator[datetime]:
    """Fire times of ``trigger`` in ``[start, end]`` (aware UTC), at most ``limit``."""
    t = trigger.get_next_fire_time(None, start)
    count = 0
    while t is not None and t <= end and count < limit:
        if t >= start:
            yield t.astimezone(UTC)
            count += 1
        if isinstance(trigger, DateTrigger):
            return
        t = trigger.get_next_fire_time(t, t)


def next_fire(trigger: Trigger, now: datetime) -> datetime | None:
    """The next fire time at or after ``now`` (None: never again)."""
    nxt = trigger.get_next_fire_time(None, now)
    if nxt is None or nxt < now:  # a one-off in the past
        return None
    return nxt.astimezone(UTC)


@dataclass(frozen=True)
class JobInfo:
    id: str
    name: str
    next_run: datetime | None
    trigger: Trigger


def due_runs(job: JobInfo, now: datetime, limit: int = 10_000) -> list[datetime]:
    """Every fire time of a stored job from its next run up to ``now`` (runs missed while down)."""
    due: list[datetime] = []
    t = job.next_run
    while t is not None and t <= now and len(due) < limit:
        due.append(t)
        t = job.trigger.get_next_fire_time(t, now)
    return due


class _Scheduler(BackgroundScheduler):
    """APScheduler 3.11's loop runs one more pass of due jobs after ``shutdown()`` (its wake-up
    ends the wait, then it processes before checking the state), against job stores and executors
    already shut down: a job due while the scheduler was paused then fails with JobLookupError in
    its thread. A stopped scheduler processes nothing."""

    def _process_jobs(self) -> float | None:
        if self.state == STATE_STOPPED:
            return None
        return super()._process_jobs()


class SharedEngineJobStore(SQLAlchemyJobStore):  # type: ignore[misc]
    """The job store on the controller's own engine. APScheduler's store disposes its engine at
    shutdown: the whole controller's pool, while the dispatcher and the fleet may hold connections
    of it (on PostgreSQL those are then orphaned, closed only by the garbage collector). The
    engine belongs to the services, which dispose it when they close."""

    def shutdown(self) -> None:
        pass


class JobClock:
    """A paused-at-start ``BackgroundScheduler`` with its job store in the database.

    ``on_missed(job_id, scheduled_time)`` is called when APScheduler skips a run past the grace
    (``coalesce=True``: only the latest due run of a job runs; see SchedulerService.start)."""

    def __init__(
        self, engine: Engine, zone: tzinfo, grace_s: int, on_missed: Callable[[str, datetime], None]
    ) -> None:
        self._on_missed = on_missed
        self._scheduler = _Scheduler(
            jobstores={"default": SharedEngineJobStore(engine=engine, tablename=JOBSTORE_TABLE)},
            executors={"default": JobThreadPool(JOB_THREADS)},
            job_defaults={"coalesce": True, "misfire_grace_time": grace_s, "max_instances": 1},
            timezone=zone,
        )
        self._scheduler.add_listener(self._missed, EVENT_JOB_MISSED)
        self._scheduler.add_listener(self._error, EVENT_JOB_ERROR)

    def start_paused(self) -> None:
        self._scheduler.start(paused=True)

    def resume(self) -> None:
        self._scheduler.resume()

    def pause(self) -> None:
        self._scheduler.pause()

    def shutdown(self) -> None:
        # APScheduler's shutdown() marks the scheduler stopped without waiting for a pass of its
        # loop in progress; that pass then fails to remove a finished one-shot job (JobLookupError
        # in the APScheduler thread). Pause, then wait for the pass (it holds the job stores lock
        # throughout) before shutting down.
        self._scheduler.pause()
        with self._scheduler._jobstores_lock:
            pass
        self._scheduler.shutdown(wait=True)

    def jobs(self) -> dict[str, JobInfo]:
        return {
            job.id: JobInfo(job.id, job.name, job.next_run_time, job.trigger)
            for job in self._scheduler.get_jobs()
        }

    def job(self, job_id: str) -> JobInfo | None:
        job = self._scheduler.get_job(job_id)
        return None if job is None else JobInfo(job.id, job.name, job.next_run_time, job.trigger)

    def add(self, job_id: str, name: str, func: str, trigger: Trigger, args: list[Any]) -> None:
        self._scheduler.add_job(func, trigger=trigger, args=args, id=job_id, name=name, replace_existing=True)

    def remove(self, job_id: str) -> None:
        try:
            self._scheduler.remove_job(job_id)
        except JobLookupError:
            pass

    def _missed(self, event: JobExecutionEvent) -> None:
        try:
            self._on_missed(event.job_id, event.scheduled_run_time)
        except Exception:
            _LOGGER.exception("could not record the missed job %s", event.job_id)

    @staticmethod
    def _error(event: JobExecutionEvent) -> None:
        _LOGGER.error("job %s failed: %r", event.job_id, event.exception)


__all__ = [
    "JOBSTORE_TABLE",
    "JobClock",
    "JobInfo",
    "Timing",
    "Trigger",
    "TriggerError",
    "build_trigger",
    "due_runs",
    "fire_times",
    "next_fire",
]

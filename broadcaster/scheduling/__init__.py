"""Persistent scheduling of bulletins (APScheduler 3.11 with a job store in the database).

``SchedulerService`` is the entry point; ``ScheduleError`` carries a clear message and the field
at fault; ``SchedulerLockedError`` means another scheduler already runs on the same database.
"""

from broadcaster.scheduling.lock import SchedulerLockedError
from broadcaster.scheduling.service import SchedulerService
from broadcaster.scheduling.spec import ScheduleError, ScheduleSpec

__all__ = ["ScheduleError", "ScheduleSpec", "SchedulerLockedError", "SchedulerService"]

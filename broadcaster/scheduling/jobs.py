"""Job functions of the persistent job store.

APScheduler stores a job as a textual reference to a module-level function plus its arguments
(``broadcaster.scheduling.jobs:fire_schedule``, ``(schedule_id,)``), so a job survives a restart
and a code reload. The functions find the running :class:`SchedulerService` through the binding
that ``SchedulerService.start()`` sets (one scheduler per process: see ``lock.py``).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broadcaster.scheduling.service import SchedulerService

_LOGGER = logging.getLogger(__name__)

_bound: SchedulerService | None = None
_bind_lock = threading.Lock()


def bind(service: SchedulerService) -> None:
    global _bound
    with _bind_lock:
        if _bound is not None and _bound is not service:
            raise RuntimeError("another SchedulerService is already running in this process")
        _bound = service


def unbind(service: SchedulerService) -> None:
    global _bound
    with _bind_lock:
        if _bound is service:
            _bound = None


def bound() -> SchedulerService | None:
    return _bound


def fire_schedule(schedule_id: int) -> None:
    """A schedule's trigger fired: air its bulletin (once per fire time)."""
    service = _bound
    if service is None:
        _LOGGER.error("schedule %s fired with no running scheduler service; skipped", schedule_id)
        return
    service.fire_schedule(schedule_id)


def fire_broadcast(broadcast_id: int) -> None:
    """A deferred one-off broadcast is due: tell the broadcast manager to air it."""
    service = _bound
    if service is None:
        _LOGGER.error("broadcast %s due with no running scheduler service; skipped", broadcast_id)
        return
    service.fire_broadcast(broadcast_id)

"""Controller-level alerts about relay sources: a channel whose stream stalled (``source_stalled``).

The fleet's alerts are per cluster; a relay source is no cluster, so its alert row has no
``speaker_id``. The stream hub (``broadcaster/live``) reports a stall when the source went silent
past ``live.stall_s`` and is being reconnected, and the recovery when audio is back. Each stall is
one alert: raised (written, logged, told to the alert listeners: the notifier sends it by e-mail
and webhook like a cluster's) and resolved when the source is back, with a "resolved" message.
An alert listener sees the source's name where a cluster's id would be (``AlertChange.speaker``),
so a message and its resolution pair up per source.

Thread-safe: the hub calls it from its pump threads; each change is one short transaction.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.fleet.alerting import ALERT_MESSAGES, SOURCE_STALLED, AlertChange
from broadcaster.models import Alert, LogEntry

_LOGGER = logging.getLogger(__name__)


class SourceAlerts:
    """``stalled(key, name, detail)`` / ``resumed(key, name)``; ``key`` identifies the source (the
    stream id, e.g. ``ch3``), ``name`` is what the officer calls it (the channel's name)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        notify: Callable[[AlertChange], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.sessions = sessions
        self.notify = notify
        self.clock = clock
        self._open: dict[str, tuple[int, str, datetime]] = {}  # key -> (alert id, message, raised)
        self._lock = threading.Lock()

    def close_stale(self) -> int:
        """At start: source alerts left active by a previous run are closed (their relays were
        restarted or ended with it; a source still down raises a new one). Returns how many."""
        now = self.clock()
        with self.sessions.begin() as session:
            rows = session.scalars(
                select(Alert).where(
                    Alert.speaker_id.is_(None), Alert.kind == SOURCE_STALLED, Alert.cleared_at.is_(None)
                )
            ).all()
            for row in rows:
                row.cleared_at = now
        return len(rows)

    def stalled(self, key: str, name: str, detail: str) -> None:
        message = ALERT_MESSAGES[SOURCE_STALLED].format(name=name, detail=detail)
        now = self.clock()
        with self._lock:
            if key in self._open:
                return
            try:
                with self.sessions.begin() as session:
                    alert = Alert(speaker_id=None, kind=SOURCE_STALLED, message=message, raised_at=now)
                    session.add(alert)
                    session.flush()
                    alert_id = alert.id
                    session.add(LogEntry(ts=now, kind="alert", message=message))
            except Exception:
                _LOGGER.exception("source alert for %s could not be written", name)
                return
            self._open[key] = (alert_id, message, now)
        _LOGGER.warning("alert %s: %s", SOURCE_STALLED, message)
        self._tell(AlertChange("raised", alert_id, name, SOURCE_STALLED, message, now))

    def resumed(self, key: str, name: str) -> None:
        now = self.clock()
        with self._lock:
            found = self._open.pop(key, None)
            if found is None:
                return
            alert_id, message, raised = found
            try:
                with self.sessions.begin() as session:
                    row = session.get(Alert, alert_id)
                    if row is not None:
                        row.cleared_at = now
                    session.add(LogEntry(ts=now, kind="alert_cleared", message=f"Hết cảnh báo: {message}"))
            except Exception:
                _LOGGER.exception("source alert for %s could not be closed", name)
        self._tell(AlertChange("resolved", alert_id, name, SOURCE_STALLED, message, raised, now))

    def active(self) -> list[dict[str, Any]]:
        """The active source alerts (the dashboard): message and since when."""
        with self.sessions() as session:
            rows = session.scalars(
                select(Alert)
                .where(Alert.speaker_id.is_(None), Alert.cleared_at.is_(None))
                .order_by(Alert.raised_at)
            ).all()
            return [
                {"id": a.id, "kind": a.kind, "message": a.message, "raised_at": a.raised_at.isoformat()}
                for a in rows
            ]

    def _tell(self, change: AlertChange) -> None:
        if self.notify is None:
            return
        try:
            self.notify(change)
        except Exception:
            _LOGGER.exception("source alert listener failed")


__all__ = ["SourceAlerts"]

"""The fleet's alerts in the database, and the listeners told about them.

:class:`AlertBook` writes the alert changes the fleet worker decided (``alerting.py`` decides, this
module records): a raised alert becomes an ``alerts`` row and a decision-log line, a cleared one
gets its ``cleared_at`` and a log line, in the caller's transaction. Once that transaction is
committed, the worker hands the changes back here and each alert listener (the notifier) is told
with the cluster's name and zone. At start-up the active alerts of a previous run are loaded onto
the live board, where they stay until the condition is seen to be gone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.fleet.alerting import AlertChange, AlertOp, LiveState
from broadcaster.fleet.board import LiveBoard
from broadcaster.models import Alert, LogEntry

_LOGGER = logging.getLogger(__name__)

# The alert list shows at most this many rows (newest first).
_MAX_LISTED = 1000

AlertListener = Callable[[AlertChange], None]


class AlertBook:
    """Alert rows, their log lines, and the alert listeners."""

    def __init__(self, sessions: sessionmaker[Session], board: LiveBoard) -> None:
        self.sessions = sessions
        self.board = board
        self._listeners: list[AlertListener] = []

    def alerts(self, active_only: bool = True) -> list[dict[str, Any]]:
        with self.sessions() as session:
            query = select(Alert).order_by(Alert.raised_at.desc(), Alert.id.desc())
            if active_only:
                query = query.where(Alert.cleared_at.is_(None))
            return [
                {
                    "id": a.id,
                    "speaker": a.speaker_id,
                    "kind": a.kind,
                    "message": a.message,
                    "raised_at": a.raised_at.isoformat(),
                    "cleared_at": a.cleared_at.isoformat() if a.cleared_at else None,
                    "active": a.cleared_at is None,
                }
                for a in session.scalars(query.limit(_MAX_LISTED))
            ]

    def load(self) -> None:
        """Active alerts of a previous run stay active until the condition is seen to be gone."""
        with self.sessions() as session:
            rows = session.scalars(select(Alert).where(Alert.cleared_at.is_(None))).all()
        with self.board.lock:
            for alert in rows:
                if alert.speaker_id is None:
                    continue
                live = self.board.live.setdefault(alert.speaker_id, LiveState())
                live.alerts[alert.kind] = (alert.id, alert.message)

    # ------------------------------------------------------------------ listeners

    def add_listener(self, callback: AlertListener) -> None:
        self._listeners.append(callback)

    def notify(self, change: AlertChange) -> None:
        """Tell every listener one change as it is (an alert written elsewhere)."""
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:
                _LOGGER.exception("alert listener failed")

    def tell(self, changes: list[AlertChange]) -> None:
        """Committed alert changes, with the cluster's name and zone, to every alert listener."""
        if not self._listeners:
            return
        try:
            registry = self.board.registry_rows()
        except Exception:
            _LOGGER.exception("fleet: registry unreadable; alerts told without names")
            registry = self.board.cached_registry()
        for change in changes:
            name, zone, _ = registry.get(change.speaker, (None, None, True))
            self.notify(replace(change, speaker_name=name, zone=zone, zone_name=self.board.zone_name(zone)))

    # ------------------------------------------------------------------ writing

    def apply(self, session: Session, ops: list[AlertOp], changes: list[AlertChange]) -> None:
        """Write ``ops`` in ``session``; what was raised or resolved is appended to ``changes``."""
        for speaker, kind, message, raise_it in ops:
            if raise_it:
                self._raise(session, speaker, kind, message, changes)
            else:
                self._clear(session, speaker, kind, message, changes)

    def _raise(
        self, session: Session, speaker: str, kind: str, message: str, changes: list[AlertChange]
    ) -> None:
        now = datetime.now(UTC)
        alert = Alert(speaker_id=speaker, kind=kind, message=message, raised_at=now)
        session.add(alert)
        session.flush()
        changes.append(AlertChange("raised", alert.id, speaker, kind, message, now))
        with self.board.lock:
            live = self.board.live.get(speaker)
            if live is not None and kind in live.alerts and live.alerts[kind][1] == message:
                live.alerts[kind] = (alert.id, message)
        session.add(LogEntry(ts=now, kind="alert", message=f"{speaker}: {message}", speaker_id=speaker))
        _LOGGER.warning("alert %s on %s: %s", kind, speaker, message)

    def _clear(
        self, session: Session, speaker: str, kind: str, message: str, changes: list[AlertChange]
    ) -> None:
        now = datetime.now(UTC)
        for alert in session.scalars(
            select(Alert).where(Alert.speaker_id == speaker, Alert.kind == kind, Alert.cleared_at.is_(None))
        ):
            alert.cleared_at = now
            changes.append(
                AlertChange("resolved", alert.id, speaker, kind, alert.message, alert.raised_at, now)
            )
        session.add(
            LogEntry(
                ts=now,
                kind="alert_cleared",
                message=f"{speaker}: hết cảnh báo: {message}",
                speaker_id=speaker,
            )
        )

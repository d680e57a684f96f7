"""The rows of the upstream inbox (``fed_inbox``): each change of state, and its report up.

Both the intake (bulletins arriving and routed by class, ``intake.py``) and the officer's desk
(decisions on what waits, ``desk.py``) change an item's state only through :class:`InboxRows`, so
every change of an item from the Loa xã link above is queued for the report up (``reportqueue``).
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import Session, sessionmaker

from broadcaster.federation.models import FedInbox
from broadcaster.federation.reportqueue import ReportQueue

_LOGGER = logging.getLogger(__name__)

UPSTREAM = "upstream"


class IntakeError(ValueError):
    """An officer's action that cannot be done (the message is Vietnamese, for the page)."""


class InboxRows:
    """State changes of inbox items, reported up for items of the Loa xã link."""

    def __init__(self, sessions: sessionmaker[Session], queue: ReportQueue, lock: threading.RLock) -> None:
        self.sessions = sessions
        self.queue = queue
        self.lock = lock

    def open(self, session: Session, rid: int, states: tuple[str, ...]) -> FedInbox:
        """The item, when it waits in one of ``states``; IntakeError for the officer otherwise."""
        row = session.get(FedInbox, rid)
        if row is None:
            raise IntakeError("Không có tin này trong hộp tin cấp trên.")
        if row.state not in states:
            raise IntakeError("Tin này đã được xử lý rồi.")
        return row

    def finish(self, rid: int, state: str, reason: str) -> None:
        """A final state, in its own transaction."""
        with self.lock, self.sessions.begin() as session:
            row = session.get(FedInbox, rid)
            if row is not None:
                self.set(session, row, state, reason, final=True)
        _LOGGER.warning("federation: inbox item %s %s: %s", rid, state, reason)

    def set(
        self, session: Session, row: FedInbox, state: str, reason: str | None, *, final: bool = False
    ) -> None:
        row.state = state
        row.reason = reason
        if final:
            row.final = True
        self.report(session, row, state)

    def report(self, session: Session, row: FedInbox, state: str) -> None:
        if row.origin == UPSTREAM:
            data = {"bulletin": row.ref, "unit": "", "state": state, "reason": row.reason}
            self.queue.enqueue(session, "bulletin", data)

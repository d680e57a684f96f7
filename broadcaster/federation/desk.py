"""The officer's desk: decisions on the bulletins from above that wait for the officer.

A normal bulletin waits in the "Tin cấp trên" inbox: the officer listens to it (a preview rendered
ahead, :meth:`InboxDesk.prepare_preview`), then airs it now or at a chosen time, or declines it with
a reason that is reported up. A priority bulletin that clashes with the commune's own item waits
("held") for the officer to say which goes first. The airing itself goes through the intake
(``intake.py``), like every bulletin; the state changes through ``inbox.py``.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.broadcasts.ports import SpeechPort
from broadcaster.federation.inbox import InboxRows, IntakeError
from broadcaster.federation.intake import CLASH_LOCAL, CLASH_UPSTREAM, Intake
from broadcaster.federation.models import FedInbox

_LOGGER = logging.getLogger(__name__)

# A declining reason is reported up as it is, cut to this many characters.
_MAX_REASON = 2000


class InboxDesk:
    """What the officer does with the items waiting in the upstream inbox."""

    def __init__(self, sessions: sessionmaker[Session], intake: Intake, rows: InboxRows) -> None:
        self.sessions = sessions
        self.intake = intake
        self.rows = rows

    def accept(self, rid: int, by: str, *, at: datetime | None = None, approved: bool = True) -> int | None:
        """Air now (``at`` None) or schedule a normal item from the inbox."""
        with self.sessions() as session:
            row = self.rows.open(session, rid, ("inbox",))
            if at is not None and row.valid_until is not None and at > row.valid_until:
                raise IntakeError("Giờ đã chọn sau hạn phát của tin này.")
        return self.intake.submit(rid, by=by, at=at, approved=approved)

    def decline(self, rid: int, by: str, reason: str) -> None:
        reason = (reason or "").strip()
        if not reason:
            raise IntakeError("Vui lòng nêu lý do không phát (lý do được báo lên cấp trên).")
        with self.rows.lock, self.sessions.begin() as session:
            row = self.rows.open(session, rid, ("inbox",))
            row.decided_by = by
            self.rows.set(session, row, "declined", reason[:_MAX_REASON], final=True)

    def decide_clash(self, rid: int, choice: str, by: str) -> None:
        if choice not in (CLASH_UPSTREAM, CLASH_LOCAL):
            raise IntakeError("Lựa chọn không hợp lệ.")
        with self.rows.lock, self.sessions.begin() as session:
            row = self.rows.open(session, rid, ("held",))
            clash = list(row.clash or [])
            row.state = "deciding"
        self.intake.resolve_clash(rid, clash, choice, by)

    def mark_seen(self, rid: int) -> None:
        with self.sessions.begin() as session:
            row = session.get(FedInbox, rid)
            if row is not None:
                row.seen = True

    def prepare_preview(self, speech: SpeechPort) -> bool:
        """Render one text item waiting in the inbox, so the officer can listen to it (and so it
        airs from the cache once accepted). One per call: the federation thread calls it each tick."""
        from broadcaster.lexicon import overrides_in

        with self.sessions() as session:
            row = session.scalar(
                select(FedInbox).where(FedInbox.state == "inbox", FedInbox.format == "text").order_by(FedInbox.id)
                .where(FedInbox.audio_key.is_(None))
            )  # fmt: skip
            if row is None or (row.data or {}).get("preview_key") or (row.data or {}).get("preview_failed"):
                return False
            rid, text, repeat, lexicon = row.id, row.text, row.repeat, overrides_in(session)
        try:
            key = speech.render(text, repeat=repeat, chime=True, lexicon=lexicon or None).key
            extra: dict[str, object] = {"preview_key": key}
        except Exception as exc:  # the officer can still air it; the lifecycle says why if it fails
            _LOGGER.warning("federation: preview of inbox item %s failed: %s", rid, exc)
            extra = {"preview_failed": True}
        with self.rows.lock, self.sessions.begin() as session:
            row = session.get(FedInbox, rid)
            if row is not None:
                row.data = {**(row.data or {}), **extra}
        return True

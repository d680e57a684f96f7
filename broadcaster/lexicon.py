"""The officers' lexicon: readings of abbreviations and words, kept in the database.

Officers teach the system "UBND" -> "ủy ban nhân dân" on the lexicon page; every preview and render
passes these ``{term: reading}`` overrides to the normalizer (they win over the vocabularies shipped
as data files, see ``broadcaster/textnorm/lexicon.py``). The term is unique: saving a term that
exists updates its reading.

A reading changes how every later render sounds, approved recurring bulletins included, so while
approval is required an editor's change is only *proposed* (``lexicon_changes``): it reaches the
lexicon when an approver accepts it, like an announcement (``propose``, ``approve``, ``reject``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.domain import nfc
from broadcaster.models import Approval, LexiconChange, LexiconEntry

_LOGGER = logging.getLogger(__name__)


class LexiconError(Exception):
    """A lexicon change that cannot be made; ``message_vi`` for the officer, ``field`` names the
    form field at fault, ``not_found`` when the entry does not exist (any more)."""

    def __init__(self, message_vi: str, field: str | None = None, *, not_found: bool = False) -> None:
        super().__init__(message_vi)
        self.message_vi = message_vi
        self.field = field
        self.not_found = not_found


@dataclass(frozen=True)
class LexiconItem:
    id: int
    term: str
    reading: str
    updated_by: str | None
    updated: datetime | None


@dataclass(frozen=True)
class LexiconProposal:
    """An editor's change waiting for an approver; ``reading`` None proposes deleting the entry."""

    id: int
    term: str
    reading: str | None
    entry_id: int | None
    current: str | None  # the reading in use now, if the term has one
    proposed_by: str | None
    created: datetime | None
    state: str

    @property
    def deletes(self) -> bool:
        return self.reading is None


def _item(entry: LexiconEntry) -> LexiconItem:
    return LexiconItem(entry.id, entry.term, entry.reading, entry.updated_by, entry.updated)


def overrides_in(session: Session) -> dict[str, str]:
    """``{term: reading}`` read in an open session (for callers already inside a transaction)."""
    return dict(session.execute(select(LexiconEntry.term, LexiconEntry.reading)).all())


_NOT_FOUND = "Không tìm thấy mục từ điển này."
_CHANGE_NOT_FOUND = "Không tìm thấy đề xuất này, hoặc đề xuất đã được xử lý."


class Lexicon:
    """Session-per-call access to the officers' lexicon."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def overrides(self) -> dict[str, str]:
        """``{term: reading}``, passed to every preview and render."""
        with self.sessions() as session:
            return overrides_in(session)

    def entries(self) -> list[LexiconItem]:
        """Every entry, in term order."""
        with self.sessions() as session:
            return [_item(e) for e in session.scalars(select(LexiconEntry).order_by(LexiconEntry.term))]

    def save(self, term: str, reading: str, *, by: str | None, entry_id: int | None = None) -> LexiconItem:
        """Add ``term`` or change its reading; with ``entry_id``, edit that entry (its term too).

        Raises ``LexiconError`` when ``entry_id`` does not exist or the new term belongs to
        another entry."""
        term, reading = nfc(term).strip(), nfc(reading).strip()
        with self.sessions.begin() as session:
            existing = session.scalar(select(LexiconEntry).where(LexiconEntry.term == term))
            if entry_id is not None:
                entry = session.get(LexiconEntry, entry_id)
                if entry is None:
                    raise LexiconError(_NOT_FOUND, not_found=True)
                if existing is not None and existing.id != entry.id:
                    raise LexiconError(f"«{term}» đã có trong từ điển.", "term")
                entry.term, entry.reading, entry.updated_by = term, reading, by
            elif existing is not None:
                entry = existing
                entry.reading, entry.updated_by = reading, by
            else:
                entry = LexiconEntry(term=term, reading=reading, updated_by=by)
                session.add(entry)
            session.flush()
            item = _item(entry)
        _LOGGER.info("lexicon: %r reads %r (by %s)", term, reading, by)
        return item

    def delete(self, entry_id: int) -> str:
        """Remove an entry; returns its term. Raises ``LexiconError`` when it does not exist."""
        with self.sessions.begin() as session:
            entry = session.get(LexiconEntry, entry_id)
            if entry is None:
                raise LexiconError(_NOT_FOUND, not_found=True)
            term = entry.term
            session.delete(entry)
        _LOGGER.info("lexicon: %r removed", term)
        return term

    # ------------------------------------------------------------------ proposals (approval)

    def get(self, entry_id: int) -> LexiconItem:
        """One entry; ``LexiconError`` (not_found) when it does not exist."""
        with self.sessions() as session:
            entry = session.get(LexiconEntry, entry_id)
            if entry is None:
                raise LexiconError(_NOT_FOUND, not_found=True)
            return _item(entry)

    def propose(
        self, term: str, reading: str | None, *, by: str | None, entry_id: int | None = None
    ) -> LexiconProposal:
        """Record a change for an approver: a new or changed reading of ``term`` (or of the entry
        ``entry_id``), or deleting ``entry_id`` when ``reading`` is None. Nothing changes in the
        lexicon until ``approve``."""
        term = nfc(term).strip()
        reading = None if reading is None else nfc(reading).strip()
        with self.sessions.begin() as session:
            if entry_id is not None:
                entry = session.get(LexiconEntry, entry_id)
                if entry is None:
                    raise LexiconError(_NOT_FOUND, not_found=True)
                if reading is None:
                    term = entry.term
            if reading is not None:
                clash = session.scalar(select(LexiconEntry).where(LexiconEntry.term == term))
                if clash is not None and entry_id is not None and clash.id != entry_id:
                    raise LexiconError(f"«{term}» đã có trong từ điển.", "term")
            change = LexiconChange(term=term, reading=reading, entry_id=entry_id, proposed_by=by)
            session.add(change)
            session.flush()
            proposal = self._proposal(session, change)
        _LOGGER.info("lexicon: %r -> %r proposed by %s", term, reading, by)
        return proposal

    def proposals(self, *, state: str = Approval.PENDING.value) -> list[LexiconProposal]:
        """Proposals in ``state`` (default: waiting), oldest first."""
        with self.sessions() as session:
            rows = session.scalars(
                select(LexiconChange).where(LexiconChange.state == state).order_by(LexiconChange.id)
            )
            return [self._proposal(session, row) for row in rows]

    def pending_count(self) -> int:
        return len(self.proposals())

    def approve(self, change_id: int, *, by: str | None) -> LexiconProposal:
        """Apply a waiting proposal to the lexicon and mark it approved."""
        with self.sessions.begin() as session:
            change = self._pending(session, change_id)
            if change.reading is None:
                entry = session.get(LexiconEntry, change.entry_id) if change.entry_id is not None else None
                if entry is not None:
                    session.delete(entry)
            else:
                entry = None
                if change.entry_id is not None:
                    entry = session.get(LexiconEntry, change.entry_id)
                existing = session.scalar(select(LexiconEntry).where(LexiconEntry.term == change.term))
                if entry is not None and existing is not None and existing.id != entry.id:
                    raise LexiconError(f"«{change.term}» đã có trong từ điển.", "term")
                entry = entry or existing
                if entry is None:
                    session.add(
                        LexiconEntry(term=change.term, reading=change.reading, updated_by=change.proposed_by)
                    )
                else:
                    entry.term, entry.reading, entry.updated_by = (
                        change.term,
                        change.reading,
                        change.proposed_by,
                    )
            self._decide(change, Approval.APPROVED.value, by)
            session.flush()
            proposal = self._proposal(session, change)
        _LOGGER.info("lexicon: change %s (%r) approved by %s", change_id, proposal.term, by)
        return proposal

    def reject(self, change_id: int, *, by: str | None, reason: str = "") -> LexiconProposal:
        """Refuse a waiting proposal; the lexicon is left as it is."""
        with self.sessions.begin() as session:
            change = self._pending(session, change_id)
            self._decide(change, Approval.REJECTED.value, by)
            change.reason = nfc(reason).strip()[:500] or None
            proposal = self._proposal(session, change)
        _LOGGER.info("lexicon: change %s (%r) rejected by %s", change_id, proposal.term, by)
        return proposal

    @staticmethod
    def _pending(session: Session, change_id: int) -> LexiconChange:
        change = session.get(LexiconChange, change_id) if 0 < change_id < 2**63 else None
        if change is None or change.state != Approval.PENDING.value:
            raise LexiconError(_CHANGE_NOT_FOUND, not_found=True)
        return change

    @staticmethod
    def _decide(change: LexiconChange, state: str, by: str | None) -> None:
        change.state, change.decided_by, change.decided_at = state, by, datetime.now(UTC)

    @staticmethod
    def _proposal(session: Session, change: LexiconChange) -> LexiconProposal:
        current = None
        if change.entry_id is not None:
            entry = session.get(LexiconEntry, change.entry_id)
            current = entry.reading if entry is not None else None
        else:
            current = session.scalar(select(LexiconEntry.reading).where(LexiconEntry.term == change.term))
        return LexiconProposal(
            change.id,
            change.term,
            change.reading,
            change.entry_id,
            current,
            change.proposed_by,
            change.created,
            change.state,
        )


__all__ = ["Lexicon", "LexiconError", "LexiconItem", "LexiconProposal", "overrides_in"]

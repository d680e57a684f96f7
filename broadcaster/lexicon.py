"""The officers' lexicon: readings of abbreviations and words, kept in the database.

Officers teach the system "UBND" -> "ủy ban nhân dân" on the lexicon page; every preview and render
passes these ``{term: reading}`` overrides to the normalizer (they win over the vocabularies shipped
as data files, see ``broadcaster/textnorm/lexicon.py``). The term is unique: saving a term that
exists updates its reading.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.domain import nfc
from broadcaster.models import LexiconEntry

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


def _item(entry: LexiconEntry) -> LexiconItem:
    return LexiconItem(entry.id, entry.term, entry.reading, entry.updated_by, entry.updated)


def overrides_in(session: Session) -> dict[str, str]:
    """``{term: reading}`` read in an open session (for callers already inside a transaction)."""
    return dict(session.execute(select(LexiconEntry.term, LexiconEntry.reading)).all())


_NOT_FOUND = "Không tìm thấy mục từ điển này."


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


__all__ = ["Lexicon", "LexiconError", "LexiconItem", "overrides_in"]

"""The officers' lexicon: readings of abbreviations and words, kept in the database.

Officers teach the system "UBND" -> "ủy ban nhân dân" on the lexicon page; every preview and render
passes these overrides to the normalizer (they win over the vocabularies shipped as data files,
see ``broadcaster/textnorm/lexicon.py``). An entry applies to every engine, to one engine or to one
voice of it, and may carry a phonetic hint (``broadcaster.pronunciation``: the most specific entry
wins for the engine that reads). The term is unique per scope (term, engine, voice): saving a term
that exists in that scope updates its reading.

A reading changes how every later render sounds, approved recurring bulletins included, so while
approval is required an editor's change is only *proposed* (``lexicon_changes``): it reaches the
lexicon when an approver accepts it, like an announcement (``propose``, ``approve``, ``reject``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.domain import nfc
from broadcaster.models import Approval, LexiconChange, LexiconEntry
from broadcaster.pronunciation import Reading, Readings, clean_hint

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
    engine: str = ""  # "" = every engine
    voice: str = ""  # "" = every voice of ``engine``
    hint: str = ""  # phonetic hint, "" = none


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
    engine: str = ""
    voice: str = ""
    hint: str = ""

    @property
    def deletes(self) -> bool:
        return self.reading is None


def _item(entry: LexiconEntry) -> LexiconItem:
    return LexiconItem(
        entry.id,
        entry.term,
        entry.reading,
        entry.updated_by,
        entry.updated,
        entry.engine or "",
        entry.voice or "",
        entry.hint or "",
    )


def overrides_in(session: Session) -> Readings:
    """Every entry as :class:`Readings` (a ``{term: reading}`` mapping of the entries for every
    engine, resolved per engine by the speech service), read in an open session."""
    rows = session.execute(
        select(
            LexiconEntry.term,
            LexiconEntry.reading,
            LexiconEntry.engine,
            LexiconEntry.voice,
            LexiconEntry.hint,
        )
    ).all()
    return Readings(Reading(t, r, e or "", v or "", h or "") for t, r, e, v, h in rows)


def _scope(engine: str | None, voice: str | None) -> tuple[str, str]:
    engine = nfc(engine or "").strip()
    return engine, nfc(voice or "").strip() if engine else ""


def _same_scope(term: str, engine: str, voice: str) -> Select[tuple[LexiconEntry]]:
    return select(LexiconEntry).where(
        LexiconEntry.term == term, LexiconEntry.engine == engine, LexiconEntry.voice == voice
    )


def _clash_message(term: str, engine: str, voice: str) -> str:
    if not engine:
        return f"«{term}» đã có trong từ điển (cho mọi giọng đọc)."
    return f"«{term}» đã có trong từ điển cho giọng đọc này."


_NOT_FOUND = "Không tìm thấy mục từ điển này."
_CHANGE_NOT_FOUND = "Không tìm thấy đề xuất này, hoặc đề xuất đã được xử lý."


class Lexicon:
    """Session-per-call access to the officers' lexicon."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def overrides(self) -> Readings:
        """Every entry (a ``{term: reading}`` mapping for every engine), passed to every preview
        and render."""
        with self.sessions() as session:
            return overrides_in(session)

    def entries(self) -> list[LexiconItem]:
        """Every entry, in term order."""
        with self.sessions() as session:
            rows = session.scalars(
                select(LexiconEntry).order_by(LexiconEntry.term, LexiconEntry.engine, LexiconEntry.voice)
            )
            return [_item(e) for e in rows]

    def save(
        self,
        term: str,
        reading: str,
        *,
        by: str | None,
        entry_id: int | None = None,
        engine: str | None = None,
        voice: str | None = None,
        hint: str | None = None,
    ) -> LexiconItem:
        """Add ``term`` (for every engine, or ``engine``/``voice``) or change its reading and hint;
        with ``entry_id``, edit that entry (its term and scope too). The caller validated the
        values (``web.ui.forms.lexicon_errors``).

        Raises ``LexiconError`` when ``entry_id`` does not exist or the term in that scope belongs
        to another entry."""
        term, reading, hint = nfc(term).strip(), nfc(reading).strip(), clean_hint(hint)
        engine, voice = _scope(engine, voice)
        with self.sessions.begin() as session:
            existing = session.scalar(_same_scope(term, engine, voice))
            if entry_id is not None:
                entry = session.get(LexiconEntry, entry_id)
                if entry is None:
                    raise LexiconError(_NOT_FOUND, not_found=True)
                if existing is not None and existing.id != entry.id:
                    raise LexiconError(_clash_message(term, engine, voice), "term")
                entry.term, entry.engine, entry.voice = term, engine, voice
            elif existing is not None:
                entry = existing
            else:
                entry = LexiconEntry(term=term, engine=engine, voice=voice)
                session.add(entry)
            entry.reading, entry.hint, entry.updated_by = reading, hint or None, by
            session.flush()
            item = _item(entry)
        _LOGGER.info("lexicon: %r reads %r on %r/%r, hint %r (by %s)", term, reading, engine, voice, hint, by)
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
        self,
        term: str,
        reading: str | None,
        *,
        by: str | None,
        entry_id: int | None = None,
        engine: str | None = None,
        voice: str | None = None,
        hint: str | None = None,
    ) -> LexiconProposal:
        """Record a change for an approver: a new or changed reading (scope and hint) of ``term``
        (or of the entry ``entry_id``), or deleting ``entry_id`` when ``reading`` is None.
        Nothing changes in the lexicon until ``approve``."""
        term = nfc(term).strip()
        reading = None if reading is None else nfc(reading).strip()
        engine, voice = _scope(engine, voice)
        hint = clean_hint(hint)
        with self.sessions.begin() as session:
            if entry_id is not None:
                entry = session.get(LexiconEntry, entry_id)
                if entry is None:
                    raise LexiconError(_NOT_FOUND, not_found=True)
                if reading is None:
                    term, engine, voice, hint = entry.term, entry.engine, entry.voice, entry.hint or ""
            if reading is not None:
                clash = session.scalar(_same_scope(term, engine, voice))
                if clash is not None and entry_id is not None and clash.id != entry_id:
                    raise LexiconError(_clash_message(term, engine, voice), "term")
            change = LexiconChange(
                term=term,
                reading=reading,
                entry_id=entry_id,
                proposed_by=by,
                engine=engine,
                voice=voice,
                hint=hint or None,
            )
            session.add(change)
            session.flush()
            proposal = self._proposal(session, change)
        _LOGGER.info("lexicon: %r -> %r on %r/%r proposed by %s", term, reading, engine, voice, by)
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
                engine, voice = change.engine or "", change.voice or ""
                existing = session.scalar(_same_scope(change.term, engine, voice))
                if entry is not None and existing is not None and existing.id != entry.id:
                    raise LexiconError(_clash_message(change.term, engine, voice), "term")
                entry = entry or existing
                if entry is None:
                    entry = LexiconEntry(term=change.term, engine=engine, voice=voice)
                    session.add(entry)
                entry.term, entry.engine, entry.voice = change.term, engine, voice
                entry.reading, entry.hint, entry.updated_by = change.reading, change.hint, change.proposed_by
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
            current = session.scalar(
                _same_scope(change.term, change.engine or "", change.voice or "").with_only_columns(
                    LexiconEntry.reading
                )
            )
        return LexiconProposal(
            change.id,
            change.term,
            change.reading,
            change.entry_id,
            current,
            change.proposed_by,
            change.created,
            change.state,
            change.engine or "",
            change.voice or "",
            change.hint or "",
        )


__all__ = ["Lexicon", "LexiconError", "LexiconItem", "LexiconProposal", "overrides_in"]

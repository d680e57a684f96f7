"""The officers' lexicon (readings of abbreviations and words), stored in the database.

The shipped vocabularies are data files of ``textnorm``; these rows override them per deployment.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.models import LexiconEntry


class LexiconStore:
    """Reads of the ``lexicon`` table for the normalizer (session per call, thread-safe)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def overrides(self) -> dict[str, str]:
        """``{term: reading}`` of every entry."""
        with self.sessions() as session:
            return dict(session.execute(select(LexiconEntry.term, LexiconEntry.reading)).all())


__all__ = ["LexiconStore"]

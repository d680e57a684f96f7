"""Server-side login sessions: a signed cookie alone cannot be taken back, so each login gets a row.

The session cookie (signed by Flask) carries a random token; ``user_sessions`` keeps its SHA-256,
the account, and when it expires. Every request checks that the row is still there, so

- logging out deletes the row: a copy of the cookie taken before is refused;
- a password change ends every other session of that account (the one that changed it stays);
- disabling an account, and "log out everywhere", end them all.

Expired rows are deleted when anyone logs in. ``last_seen`` is written at most once a minute per
session, so an officer's page polling every two seconds does not write on every poll.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.models import UserSession

_LOGGER = logging.getLogger(__name__)

# Writing last_seen on every request would turn each dashboard poll into a database write.
TOUCH_EVERY = timedelta(seconds=60)


def _digest(token: str) -> str:
    return hashlib.sha256(f"loa-session:{token}".encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def start_session(
    sessions: sessionmaker[Session], user_id: int, lifetime: timedelta, address: str | None = None
) -> str:
    """A new session for ``user_id``; returns the token to put in the cookie (never stored)."""
    token = secrets.token_urlsafe(32)
    now = _now()
    with sessions.begin() as session:
        session.execute(delete(UserSession).where(UserSession.expires < now))
        session.add(
            UserSession(
                id=_digest(token),
                user_id=user_id,
                created=now,
                last_seen=now,
                expires=now + lifetime,
                address=(address or "")[:64] or None,
            )
        )
    return token


def session_valid(sessions: sessionmaker[Session], token: str | None, user_id: int) -> bool:
    """Whether ``token`` is a live session of ``user_id`` (not ended, not expired)."""
    if not token or not isinstance(token, str):
        return False
    now = _now()
    with sessions() as session:
        row = session.get(UserSession, _digest(token))
        if row is None or row.user_id != user_id or row.expires <= now:
            return False
        if now - row.last_seen >= TOUCH_EVERY:
            row.last_seen = now
            session.commit()
    return True


def end_session(sessions: sessionmaker[Session], token: str | None) -> None:
    """Logout: this session's row goes; a copy of its cookie is refused from now on."""
    if not token or not isinstance(token, str):
        return
    with sessions.begin() as session:
        session.execute(delete(UserSession).where(UserSession.id == _digest(token)))


def end_user_sessions(sessions: sessionmaker[Session], user_id: int, *, keep: str | None = None) -> int:
    """End every session of ``user_id`` except ``keep`` (a token); returns how many ended."""
    query = delete(UserSession).where(UserSession.user_id == user_id)
    if keep:
        query = query.where(UserSession.id != _digest(keep))
    with sessions.begin() as session:
        count = int(session.execute(query).rowcount or 0)  # type: ignore[attr-defined]
    if count:
        _LOGGER.info("%s session(s) of user %s ended", count, user_id)
    return count


def count_sessions(sessions: sessionmaker[Session], user_id: int) -> int:
    """Live sessions of ``user_id`` (the users page shows it)."""
    now = _now()
    with sessions() as session:
        rows = session.scalars(
            select(UserSession.id).where(UserSession.user_id == user_id, UserSession.expires > now)
        )
        return len(list(rows))


__all__ = ["count_sessions", "end_session", "end_user_sessions", "session_valid", "start_session"]

"""API bearer tokens. Only the sha256 of a token is stored; the token itself is shown once.

``broadcaster token create NAME`` prints a new token alone on stdout.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.models import ApiToken

_LOGGER = logging.getLogger(__name__)

TOKEN_PREFIX = "loa_"
# 32 random bytes: 256 bits, far beyond guessing; URL-safe so it pastes into a header or a shell.
_TOKEN_BYTES = 32
_NAME_RE = re.compile(r"^[\w.@-]{1,100}$")
# last_used is a hint for the admin, not an audit trail: write it at most once a minute per token
# so a script polling the API does not turn every GET into a database write.
_LAST_USED_EVERY = timedelta(seconds=60)


class TokenError(ValueError):
    """A token request that cannot be honoured (bad or duplicate name, unknown token)."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(sessions: sessionmaker[Session], name: str) -> str:
    """Create a token called ``name`` and return it (the only time it is visible)."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise TokenError(f"token name must be 1-100 letters, digits, '_', '.', '@' or '-' (got {name!r})")
    token = TOKEN_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)
    try:
        with sessions.begin() as session:
            if session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
                raise TokenError(f"a token named {name!r} already exists; revoke it or choose another name")
            session.add(ApiToken(name=name, token_sha256=token_hash(token)))
    except IntegrityError as exc:
        raise TokenError(f"a token named {name!r} already exists") from exc
    _LOGGER.info("API token %s created", name)
    return token


def verify_token(sessions: sessionmaker[Session], token: str | None) -> str | None:
    """The name of the (unrevoked) token, or None."""
    if not token or not isinstance(token, str) or len(token) > 200:
        return None
    digest = token_hash(token)
    with sessions() as session:
        row = session.scalar(select(ApiToken).where(ApiToken.token_sha256 == digest))
        # The lookup is by hash, so timing reveals nothing about the token; compare anyway.
        if row is None or row.revoked or not secrets.compare_digest(row.token_sha256, digest):
            return None
        name, last_used = row.name, row.last_used
    now = datetime.now(UTC)
    if last_used is None or now - last_used > _LAST_USED_EVERY:
        try:
            with sessions.begin() as session:
                fresh = session.get(ApiToken, row.id)
                if fresh is not None:
                    fresh.last_used = now
        except Exception:  # a busy database must not refuse a valid token
            _LOGGER.debug("could not record token use", exc_info=True)
    return name


def revoke_token(sessions: sessionmaker[Session], name: str) -> None:
    with sessions.begin() as session:
        row = session.scalar(select(ApiToken).where(ApiToken.name == name))
        if row is None:
            raise TokenError(f"no token named {name!r}")
        row.revoked = True
    _LOGGER.info("API token %s revoked", name)


def list_tokens(sessions: sessionmaker[Session]) -> list[dict[str, Any]]:
    with sessions() as session:
        return [
            {
                "name": t.name,
                "created": t.created.isoformat() if t.created else None,
                "last_used": t.last_used.isoformat() if t.last_used else None,
                "revoked": t.revoked,
            }
            for t in session.scalars(select(ApiToken).order_by(ApiToken.name))
        ]

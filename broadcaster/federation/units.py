"""Downstream units on the upper level: add (a token printed once), list, revoke; and the
authentication of every message a unit sends (signature, time window, nonce)."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.federation import signing
from broadcaster.federation.models import FedNonce, FedUnit

_LOGGER = logging.getLogger(__name__)


class UnitError(ValueError):
    """A unit that cannot be added or revoked; the message is for the operator."""


def add_unit(sessions: sessionmaker[Session], name: str, display_name: str = "") -> str:
    """Register ``name`` and return its token (shown once; only a key derived from it is kept).
    A revoked unit may be added again: it gets a new token and starts a new link."""
    try:
        signing.check_unit_name(name)
    except signing.TokenError as exc:
        raise UnitError(str(exc)) from exc
    token = signing.new_token(name)
    key = signing.derive_key(token).hex()
    with sessions.begin() as session:
        row = session.get(FedUnit, name)
        if row is not None and not row.revoked:
            raise UnitError(f"unit {name} exists; revoke it first to issue a new token")
        if row is None:
            session.add(FedUnit(name=name, display_name=display_name or name, key_hex=key))
        else:
            row.key_hex, row.revoked, row.link_id, row.last_error = key, False, None, None
            row.last_report_seq = 0
            if display_name:
                row.display_name = display_name
    _LOGGER.info("downstream unit %s added", name)
    return token


def revoke_unit(sessions: sessionmaker[Session], name: str) -> None:
    with sessions.begin() as session:
        row = session.get(FedUnit, name)
        if row is None:
            raise UnitError(f"no downstream unit {name}")
        row.revoked = True
        row.last_error = "revoked"
    _LOGGER.warning("downstream unit %s revoked: its link is cut", name)


def list_units(sessions: sessionmaker[Session]) -> list[dict[str, Any]]:
    with sessions() as session:
        return [
            {
                "name": u.name,
                "display_name": u.display_name,
                "revoked": u.revoked,
                "created": u.created.isoformat(),
                "last_seen": u.last_seen.isoformat() if u.last_seen else None,
                "last_error": u.last_error,
                "acked": u.acked_seq,
                "queued": max(0, u.next_seq - 1 - u.acked_seq),
            }
            for u in session.scalars(select(FedUnit).order_by(FedUnit.name))
        ]


def active_units(session: Session) -> list[str]:
    return list(
        session.scalars(select(FedUnit.name).where(FedUnit.revoked.is_(False)).order_by(FedUnit.name))
    )


# ------------------------------------------------------------------ authentication


@dataclass(frozen=True)
class Authenticated:
    unit: str
    key: bytes
    nonce: str


class AuthFailure(Exception):
    """A refused message: the answer's status and code; ``key`` signs the answer when known."""

    def __init__(
        self, status: int, code: str, message: str, key: bytes | None = None, nonce: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.key = key
        self.nonce = nonce


def authenticate(
    sessions: sessionmaker[Session],
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    window_s: float,
    lock: threading.RLock | None = None,
) -> Authenticated:
    """Check version, unit, signature, time and nonce, in that order (the signature before the
    nonce is stored, so unsigned garbage cannot fill the nonce table). Raises AuthFailure."""
    version = headers.get(signing.HEADER_VERSION)
    if version != str(signing.VERSION):
        raise AuthFailure(400, "unsupported_version", f"unsupported version {version!r}; this side speaks 1")
    unit = headers.get(signing.HEADER_UNIT) or ""
    nonce = headers.get(signing.HEADER_NONCE) or ""
    ts_text = headers.get(signing.HEADER_TIME) or ""
    with sessions() as session:
        row = session.get(FedUnit, unit) if signing.UNIT_RE.match(unit) else None
        key = bytes.fromhex(row.key_hex) if row is not None else None
        revoked = row is not None and row.revoked
    if row is None or key is None:
        raise AuthFailure(401, "unknown_unit", f"unknown unit {unit[:64]!r}")
    message = signing.request_string(method, path, unit, ts_text, nonce, body)
    if not signing.verify(key, message, headers.get(signing.HEADER_SIGNATURE) or ""):
        _note_error(sessions, unit, "bad signature")
        raise AuthFailure(
            401, "bad_signature", "signature does not match (wrong token, or the message was altered)"
        )
    if revoked:
        raise AuthFailure(403, "revoked", "this unit's token was revoked on the upper level", key, nonce)
    problem = signing.time_problem(signing.parse_time(ts_text), now, window_s)
    if problem is not None:
        _note_error(sessions, unit, problem)
        raise AuthFailure(409, "stale", f"message refused: {problem}", key, nonce)
    if not signing.NONCE_RE.match(nonce):
        raise AuthFailure(400, "bad_request", "malformed nonce", key, nonce)
    try:
        with lock or contextlib.nullcontext(), sessions.begin() as session:
            session.add(FedNonce(unit=unit, nonce=nonce, ts=datetime.fromtimestamp(now, UTC)))
    except IntegrityError as exc:
        _note_error(sessions, unit, "replayed message")
        raise AuthFailure(
            409, "replay", "message refused: this nonce was already used (a replay)", key, nonce
        ) from exc
    return Authenticated(unit, key, nonce)


def _note_error(sessions: sessionmaker[Session], unit: str, what: str) -> None:
    _LOGGER.warning("federation: message from unit %s refused: %s", unit, what)
    try:
        with sessions.begin() as session:
            row = session.get(FedUnit, unit)
            if row is not None:
                row.last_error = what
    except Exception:  # the refusal stands even if the note cannot be written
        _LOGGER.debug("could not record the refusal of unit %s", unit, exc_info=True)


def purge_nonces(sessions: sessionmaker[Session], now: float, window_s: float) -> int:
    """Forget nonces older than twice the window: a message that old is refused by its time."""
    cutoff = datetime.fromtimestamp(now, UTC) - timedelta(seconds=2 * window_s)
    with sessions.begin() as session:
        result = session.execute(delete(FedNonce).where(FedNonce.ts < cutoff))
        return int(getattr(result, "rowcount", 0) or 0)


__all__ = [
    "AuthFailure",
    "Authenticated",
    "UnitError",
    "active_units",
    "add_unit",
    "authenticate",
    "list_units",
    "purge_nonces",
    "revoke_unit",
]

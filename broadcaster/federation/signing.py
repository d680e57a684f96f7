"""Tokens, keys, signatures and the replay window of the link (pure: no I/O, no clock of its own).

- A unit token is ``loa1.<unit>.<secret>``: the unit's name and 32 random bytes (base64url). It
  is printed once by ``broadcaster downstream add NAME`` on the upper level and given to
  ``broadcaster upstream set URL --token TOKEN`` on the lower level.
- Both sides sign with the key ``sha256("loa-federation-v1\\n" + token)``. The upper level keeps
  only that digest: it can check signatures, but the token cannot be read back from it.
- A request is signed over its method, path, unit, time, nonce and the sha256 of its body; a
  response over its status, the nonce of the request it answers, its own time and nonce, and the
  sha256 of its body (``docs/federation.md``, "Authentication and signing").
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

PROTOCOL = "loa-federation-v1"
VERSION = 1
TOKEN_PREFIX = "loa1"
UNIT_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
# 32 random bytes: as strong as the HMAC key they become.
_SECRET_BYTES = 32

HEADER_VERSION = "X-Loa-Version"
HEADER_UNIT = "X-Loa-Unit"
HEADER_TIME = "X-Loa-Time"
HEADER_NONCE = "X-Loa-Nonce"
HEADER_SIGNATURE = "X-Loa-Signature"
HEADER_REPLY_TO = "X-Loa-Reply-To"


class TokenError(ValueError):
    """A token that is not of the form ``loa1.<unit>.<secret>``."""


def canonical_json(obj: Any) -> bytes:
    """The one serialisation of a message: sorted keys, no spaces, UTF-8 (Vietnamese as is)."""
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False).encode(
        "utf-8"
    )


def check_unit_name(name: str) -> str:
    """Lower-case letters, digits and hyphens, 1..63 characters (``xa-phuc-hoa``)."""
    if not isinstance(name, str) or not UNIT_RE.match(name):
        raise TokenError(
            f"unit name {name!r}: use lower-case letters without accents, digits and '-', e.g. xa-phuc-hoa"
        )
    return name


def new_token(unit: str) -> str:
    check_unit_name(unit)
    return f"{TOKEN_PREFIX}.{unit}.{secrets.token_urlsafe(_SECRET_BYTES)}"


def parse_token(token: str) -> str:
    """The unit name a token is for; TokenError when it is malformed."""
    parts = token.strip().split(".") if isinstance(token, str) else []
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or len(parts[2]) < 40:
        raise TokenError("not a Loa xã unit token (loa1.<unit>.<secret>, as printed by 'downstream add')")
    return check_unit_name(parts[1])


def derive_key(token: str) -> bytes:
    return hashlib.sha256(f"{PROTOCOL}\n{token.strip()}".encode()).digest()


def new_nonce() -> str:
    return secrets.token_urlsafe(18)


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def request_string(method: str, path: str, unit: str, ts: str, nonce: str, body: bytes) -> bytes:
    return "\n".join([PROTOCOL, "request", method.upper(), path, unit, ts, nonce, body_digest(body)]).encode()


def response_string(status: int, reply_to: str, ts: str, nonce: str, body: bytes) -> bytes:
    return "\n".join([PROTOCOL, "response", str(status), reply_to, ts, nonce, body_digest(body)]).encode()


def sign(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def verify(key: bytes, message: bytes, signature: str) -> bool:
    if not isinstance(signature, str) or len(signature) != 64:
        return False
    return hmac.compare_digest(sign(key, message), signature.lower())


def format_time(epoch: float) -> str:
    """The time header: Unix seconds with milliseconds ("1733900000.123")."""
    return f"{epoch:.3f}"


def parse_time(value: str | None) -> float | None:
    if not value or len(value) > 20:
        return None
    try:
        ts = float(value)
    except ValueError:
        return None
    return ts if ts == ts and 0 < ts < 1e11 else None  # not NaN, a plausible Unix time


@dataclass(frozen=True)
class SignedHeaders:
    """What a signed request or response carries besides its body."""

    ts: str
    nonce: str
    signature: str


def sign_request(key: bytes, method: str, path: str, unit: str, body: bytes, now: float) -> dict[str, str]:
    ts, nonce = format_time(now), new_nonce()
    return {
        HEADER_VERSION: str(VERSION),
        HEADER_UNIT: unit,
        HEADER_TIME: ts,
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: sign(key, request_string(method, path, unit, ts, nonce, body)),
    }


def sign_response(key: bytes, status: int, reply_to: str, body: bytes, now: float) -> dict[str, str]:
    ts, nonce = format_time(now), new_nonce()
    return {
        HEADER_VERSION: str(VERSION),
        HEADER_TIME: ts,
        HEADER_NONCE: nonce,
        HEADER_REPLY_TO: reply_to,
        HEADER_SIGNATURE: sign(key, response_string(status, reply_to, ts, nonce, body)),
    }


def verify_response(
    key: bytes, status: int, reply_to: str, headers: Any, body: bytes
) -> tuple[bool, float | None]:
    """Whether a response is signed with our key and answers our request (``reply_to``); and the
    upper level's clock (its time header), for the lower level to measure its clock offset."""
    ts = headers.get(HEADER_TIME) or ""
    nonce = headers.get(HEADER_NONCE) or ""
    signature = headers.get(HEADER_SIGNATURE) or ""
    if headers.get(HEADER_REPLY_TO) != reply_to:
        return False, None
    ok = verify(key, response_string(status, reply_to, ts, nonce, body), signature)
    return ok, parse_time(ts) if ok else None


def time_problem(ts: float | None, now: float, window_s: float) -> str | None:
    """``None`` when ``ts`` is within ``window_s`` of ``now``; else why not (for the log)."""
    if ts is None:
        return "missing or malformed time"
    skew = ts - now
    if abs(skew) > window_s:
        return f"time off by {skew:+.0f} s (window {window_s:.0f} s)"
    return None


__all__ = [
    "HEADER_NONCE",
    "HEADER_REPLY_TO",
    "HEADER_SIGNATURE",
    "HEADER_TIME",
    "HEADER_UNIT",
    "HEADER_VERSION",
    "NONCE_RE",
    "PROTOCOL",
    "VERSION",
    "SignedHeaders",
    "TokenError",
    "canonical_json",
    "check_unit_name",
    "derive_key",
    "new_token",
    "parse_token",
    "request_string",
    "response_string",
    "sign",
    "sign_request",
    "sign_response",
    "time_problem",
    "verify",
    "verify_response",
]

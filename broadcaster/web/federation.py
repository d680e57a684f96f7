"""The upper level's federation endpoints (``docs/federation.md``), authenticated with the unit
tokens (never the API tokens or a session):

- ``POST /federation/v1/sync``: a unit's reports up, its bulletins down (long poll);
- ``GET /federation/v1/audio/<sha256>``: the audio of a bulletin sent as audio;
- ``POST /federation/v1/cap/<source>``: a CAP 1.2 document pushed by a warning system
  (``Authorization: Bearer <webhook token>`` of that source in ``federation.cap.sources``).
"""

from __future__ import annotations

import hmac
import logging
import re

from flask import Blueprint, Response, current_app, jsonify, request

from broadcaster.federation.cap.parse import CapError
from broadcaster.federation.downstream import Answer, error_body
from broadcaster.web import services_of

_LOGGER = logging.getLogger(__name__)

bp = Blueprint("federation", __name__)
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


def _federation():  # type: ignore[no-untyped-def]
    return services_of(current_app).federation


def _answer(answer: Answer) -> Response:
    return Response(answer.body, status=answer.status, headers=answer.headers)


def _unavailable() -> Response:
    body = error_body("unavailable", "federation is not running on this controller")
    return Response(body, status=503, content_type="application/json")


@bp.post("/sync")
def sync() -> Response:
    federation = _federation()
    if federation is None:
        return _unavailable()
    limit = federation.config.max_message_bytes
    if request.content_length is not None and request.content_length > limit:
        return Response(
            error_body("too_large", f"message over {limit} bytes"),
            status=413,
            content_type="application/json",
        )
    body = request.get_data(cache=False)
    return _answer(federation.hub.handle_sync(request.headers, body, request.path))


@bp.get("/audio/<sha256>")
def audio(sha256: str) -> Response:
    federation = _federation()
    if federation is None:
        return _unavailable()
    if not _SHA_RE.match(sha256):
        return Response(error_body("not_found", "no such audio"), status=404, content_type="application/json")
    return _answer(federation.hub.handle_audio(request.headers, sha256, request.path))


@bp.post("/cap/<name>")
def cap_webhook(name: str) -> tuple[Response, int]:
    federation = _federation()
    feed = None
    if federation is not None:
        feed = next((a for a in federation.adapters if getattr(a, "name", "") == f"cap:{name}"), None)
    token = feed.source.resolve_token() if feed is not None else None
    if feed is None or token is None:
        return jsonify(error={"code": "not_found", "message": f"no CAP webhook named {name!r}"}), 404
    sent = request.headers.get("Authorization", "")
    if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
        _LOGGER.warning("CAP webhook %s: bad token from %s", name, request.remote_addr)
        return jsonify(error={"code": "unauthorized", "message": "bad or missing bearer token"}), 401
    data = request.get_data(cache=False)
    if len(data) > federation.config.cap.max_bytes:
        return jsonify(error={"code": "too_large", "message": "document too large"}), 413
    try:
        outcomes = feed.handle_document(data)
    except CapError as exc:
        _LOGGER.warning("CAP webhook %s: refused: %s", name, exc)
        return jsonify(error={"code": "invalid", "message": str(exc)}), 422
    return jsonify(accepted=len(outcomes), outcomes=outcomes), 202


__all__ = ["bp"]

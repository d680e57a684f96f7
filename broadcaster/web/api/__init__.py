"""The REST API, mounted at /api: JSON in and out, bearer tokens, documented in /api/openapi.json.

Every endpoint except ``/api/openapi.json`` and ``/api/health`` needs ``Authorization: Bearer
<token>`` (``broadcaster token create NAME``). Token holders are trusted operators, so their
broadcasts and schedules are approved. Errors are always JSON::

    {"error": {"code": "invalid", "message": "...", "field": "targets"}}

with 400 (malformed request or query), 401 (no or bad token), 404, 405, 409 (conflict with the
current state), 413 (body too large), 415 (body not JSON), 422 (a field that is not acceptable) or
503 (the MQTT broker did not take a command).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, NoReturn
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, current_app, g, jsonify, request
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from broadcaster.domain import nfc
from broadcaster.fleet.registry import Registry, RegistryError
from broadcaster.reports import ReportError
from broadcaster.scheduling.spec import ScheduleError
from broadcaster.web import services_of
from broadcaster.web.tokens import verify_token

_LOGGER = logging.getLogger(__name__)

bp = Blueprint("api", __name__)

# A JSON request body is a few kilobytes; an announcement text is at most textnorm.max_chars.
MAX_BODY_BYTES = 1024 * 1024
PUBLIC_ENDPOINTS = {"api.openapi", "api.health", "api.unknown", "api.unknown_root"}
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
    503: "unavailable",
}
_HTTP_MESSAGES = {
    400: "Yêu cầu không hợp lệ (bad request).",
    404: "Không có tài nguyên này trong API (not found).",
    405: "Phương thức không được phép cho địa chỉ này (method not allowed).",
    413: "Nội dung gửi lên quá lớn (payload too large).",
    415: "Nội dung phải là JSON, Content-Type: application/json (unsupported media type).",
}


class ApiError(Exception):
    def __init__(
        self, status: int, message: str, *, code: str | None = None, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _HTTP_CODES.get(status, "error")
        self.field = field


def error_response(
    status: int,
    message: str,
    code: str | None = None,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"code": code or _HTTP_CODES.get(status, "error"), "message": message}
    if field:
        body["field"] = field
    response = jsonify(error=body)
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def fail(status: int, message: str, field: str | None = None, code: str | None = None) -> NoReturn:
    raise ApiError(status, message, field=field, code=code)


# ------------------------------------------------------------------ plumbing


def services() -> Any:
    return services_of(current_app)


def registry() -> Registry:
    """The services' registry (its on_change hooks update the managed broker)."""
    return services().registry


def zone() -> ZoneInfo:
    return ZoneInfo(services().settings.timezone)


def actor() -> str:
    return f"api:{g.get('api_token', '?')}"


@bp.before_request
def _authenticate() -> Response | None:
    request.max_content_length = MAX_BODY_BYTES
    if request.endpoint in PUBLIC_ENDPOINTS or request.method == "OPTIONS":
        return None
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="loa-xa"'}
    if scheme.lower() != "bearer" or not token.strip():
        return error_response(
            401,
            "Cần mã truy cập API: Authorization: Bearer <token> (missing bearer token).",
            headers=challenge,
        )
    name = verify_token(services().sessions, token.strip())
    if name is None:
        return error_response(
            401,
            "Mã truy cập API không đúng hoặc đã bị thu hồi (invalid or revoked token).",
            code="invalid_token",
            headers={"WWW-Authenticate": 'Bearer realm="loa-xa", error="invalid_token"'},
        )
    g.api_token = name
    return None


@bp.after_request
def _no_store(response: Response) -> Response:
    response.headers.setdefault("Cache-Control", "no-store")
    return response


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> Response:
    return error_response(exc.status, exc.message, exc.code, exc.field)


@bp.errorhandler(RegistryError)
def _registry_error(exc: RegistryError) -> Response:
    status = {"not_found": 404, "conflict": 409}.get(exc.code, 422)
    return error_response(status, exc.message, code=exc.code, field=exc.field)


@bp.errorhandler(ScheduleError)
def _schedule_error(exc: ScheduleError) -> Response:
    status = {"not_found": 404, "conflict": 409}.get(exc.code, 422)
    return error_response(status, exc.message, code=exc.code, field=exc.field)


@bp.errorhandler(ReportError)
def _report_error(exc: ReportError) -> Response:
    return error_response(400, exc.message, code="bad_query", field=exc.field)


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    message = _HTTP_MESSAGES.get(status) or exc.description or exc.name
    valid = getattr(exc, "valid_methods", None)
    headers = {"Allow": ", ".join(valid)} if status == 405 and valid else None
    return error_response(status, message, headers=headers)


# Flask looks for handlers registered by status code (the app's HTML pages included) before
# handlers registered by exception class, so ours are registered per code to win under /api.
bp.register_error_handler(HTTPException, _http_error)
for _code in (400, 401, 403, 404, 405, 409, 413, 415, 422, 429):
    bp.register_error_handler(_code, _http_error)


@bp.errorhandler(OperationalError)
@bp.errorhandler(TimeoutError)
def _busy(exc: Exception) -> Response:
    # The database was locked or unreachable, or the dispatcher did not answer in time: the
    # request may succeed when retried, so say so instead of a bare 500.
    _LOGGER.warning("API %s %s: service busy: %s", request.method, request.path, exc)
    return error_response(
        503,
        "Hệ thống đang bận, xin thử lại sau ít phút (service busy, retry shortly).",
        code="unavailable",
        headers={"Retry-After": "5"},
    )


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    _LOGGER.exception("API error on %s %s", request.method, request.path)
    return error_response(
        500, "Lỗi hệ thống; xem nhật ký của bộ điều khiển (internal error).", code="internal"
    )


def json_body(required: bool = True) -> dict[str, Any]:
    if not request.content_length and not request.data:
        if required:
            fail(400, "Thiếu nội dung JSON (empty body).")
        return {}
    if not request.is_json:
        fail(415, _HTTP_MESSAGES[415])
    data = request.get_json(silent=True)
    if data is None:
        fail(400, "Nội dung không phải JSON hợp lệ (malformed JSON).")
    if not isinstance(data, dict):
        fail(400, "Nội dung JSON phải là một đối tượng {...} (body must be a JSON object).")
    return data


def check_keys(data: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        fail(422, f"Trường không được hỗ trợ: {', '.join(unknown)} (unknown field).", field=unknown[0])


def check_query(allowed: set[str]) -> None:
    """A query parameter the operation does not know is a malformed request (400), like a bad value."""
    unknown = sorted(set(request.args) - allowed)
    if unknown:
        fail(
            400,
            f"Tham số không được hỗ trợ: {', '.join(unknown)} (unknown query parameter).",
            field=unknown[0],
            code="bad_query",
        )


def str_field(data: dict[str, Any], name: str, limit: int, *, required: bool = False) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            fail(422, f"Thiếu trường '{name}' (required).", field=name)
        return None
    if not isinstance(value, str):
        fail(422, f"Trường '{name}' phải là chuỗi (must be a string).", field=name)
    value = nfc(value.strip())
    if required and not value:
        fail(422, f"Trường '{name}' không được để trống (must not be empty).", field=name)
    if len(value) > limit:
        fail(422, f"Trường '{name}' dài {len(value)} ký tự, tối đa {limit} (too long).", field=name)
    return value


# ------------------------------------------------------------------ unknown URLs and methods


def _allowed_methods() -> list[str]:
    adapter = current_app.url_map.bind_to_environ(request.environ)
    allowed = []
    for method in ALL_METHODS:
        try:
            rule, _ = adapter.match(method=method, return_rule=True)
        except HTTPException:
            continue
        if rule.endpoint not in ("api.unknown", "api.unknown_root"):
            allowed.append(method)
    return allowed


@bp.route("/", methods=ALL_METHODS, endpoint="unknown_root")
@bp.route("/<path:rest>", methods=ALL_METHODS, endpoint="unknown")
def _unknown(rest: str = "") -> Response:
    """Under /api every miss is JSON: 405 when the path exists with other methods, else 404."""
    allowed = _allowed_methods()
    if allowed:
        return error_response(405, _HTTP_MESSAGES[405], headers={"Allow": ", ".join(allowed)})
    return error_response(404, _HTTP_MESSAGES[404])


# ------------------------------------------------------------------ public


@bp.get("/health")
def health() -> Response:
    return jsonify(status="ok", time=datetime.now(UTC).isoformat())


@bp.get("/openapi.json")
def openapi() -> Response:
    from broadcaster.web.openapi import build_spec

    found = services()
    return jsonify(
        build_spec(max_repeat=found.validator.limits.max_repeat, relay_max_s=found.settings.live.relay_max_s)
    )


def int_query(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        fail(400, f"'{name}' phải là số nguyên (must be an integer).", field=name)
    if not lo <= value <= hi:
        fail(400, f"'{name}' phải trong khoảng {lo}..{hi}.", field=name)
    return value


# The endpoints, one module per area; importing one registers its routes on ``bp``.
from broadcaster.web.api import broadcasts, channels, clusters, reports, schedules  # noqa: E402, F401
from broadcaster.web.api.broadcasts import BROADCAST_FIELDS  # noqa: E402, F401

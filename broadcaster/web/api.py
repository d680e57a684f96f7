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
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, current_app, g, jsonify, request
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from broadcaster.broadcasts import AnnouncementInvalid, BroadcastError, Draft
from broadcaster.domain import Source, Tier, nfc
from broadcaster.fleet.registry import Registry, RegistryError
from broadcaster.reports import (
    LogFilters,
    ReportError,
    broadcast_log,
    log_csv,
    minutes_csv,
    minutes_per_day,
    parse_day,
    parse_when,
)
from broadcaster.scheduling.spec import ScheduleError
from broadcaster.transport import TransportError
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


def _fail(status: int, message: str, field: str | None = None, code: str | None = None) -> NoReturn:
    raise ApiError(status, message, field=field, code=code)


# ------------------------------------------------------------------ plumbing


def _services() -> Any:
    return services_of(current_app)


def _registry() -> Registry:
    """The services' registry (its on_change hooks update the managed broker)."""
    return _services().registry


def _zone() -> ZoneInfo:
    return ZoneInfo(_services().settings.timezone)


def _actor() -> str:
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
    name = verify_token(_services().sessions, token.strip())
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


def _json_body(required: bool = True) -> dict[str, Any]:
    if not request.content_length and not request.data:
        if required:
            _fail(400, "Thiếu nội dung JSON (empty body).")
        return {}
    if not request.is_json:
        _fail(415, _HTTP_MESSAGES[415])
    data = request.get_json(silent=True)
    if data is None:
        _fail(400, "Nội dung không phải JSON hợp lệ (malformed JSON).")
    if not isinstance(data, dict):
        _fail(400, "Nội dung JSON phải là một đối tượng {...} (body must be a JSON object).")
    return data


def _check_keys(data: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        _fail(422, f"Trường không được hỗ trợ: {', '.join(unknown)} (unknown field).", field=unknown[0])


def _str_field(data: dict[str, Any], name: str, limit: int, *, required: bool = False) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            _fail(422, f"Thiếu trường '{name}' (required).", field=name)
        return None
    if not isinstance(value, str):
        _fail(422, f"Trường '{name}' phải là chuỗi (must be a string).", field=name)
    value = nfc(value.strip())
    if required and not value:
        _fail(422, f"Trường '{name}' không được để trống (must not be empty).", field=name)
    if len(value) > limit:
        _fail(422, f"Trường '{name}' dài {len(value)} ký tự, tối đa {limit} (too long).", field=name)
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

    return jsonify(build_spec(max_repeat=_services().validator.limits.max_repeat))


# ------------------------------------------------------------------ broadcasts

BROADCAST_FIELDS = {"text", "targets", "tier", "at", "repeat", "title", "engine", "voice"}


def _invalid(exc: AnnouncementInvalid) -> NoReturn:
    _fail(422, exc.message, field=exc.field)


@bp.post("/broadcasts")
def create_broadcast() -> tuple[Response, int, dict[str, str]]:
    data = _json_body()
    _check_keys(data, BROADCAST_FIELDS)
    draft = Draft(
        text=data.get("text"),
        title=data.get("title"),
        tier=data.get("tier", Tier.NORMAL.value),
        targets=data.get("targets"),
        repeat=data.get("repeat", 1),
        engine=data.get("engine"),
        voice=data.get("voice"),
        at=data.get("at"),
    )
    services = _services()
    try:
        checked = services.validator.check(draft)
        ann = checked.announcement(author=_actor(), source=Source.API)
        broadcast_id = services.broadcasts.submit(ann, approved=True)
    except AnnouncementInvalid as exc:
        _invalid(exc)
    except BroadcastError as exc:
        _fail(422, exc.message, field=exc.field)
    _LOGGER.info("API %s: broadcast %s (%s) to %s", _actor(), broadcast_id, ann.tier, ",".join(ann.targets))
    location = f"/api/broadcasts/{broadcast_id}"
    return jsonify(id=broadcast_id, url=location), 201, {"Location": location}


@bp.get("/broadcasts")
def list_broadcasts() -> Response:
    _check_keys(dict(request.args), {"limit", "offset", "state"})
    limit = _int_query("limit", 50, 1, 1000)
    offset = _int_query("offset", 0, 0, 10**9)
    state = request.args.get("state") or None
    return jsonify(broadcasts=_services().broadcasts.list(limit=limit, offset=offset, state=state))


def _int_query(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        _fail(400, f"'{name}' phải là số nguyên (must be an integer).", field=name)
    if not lo <= value <= hi:
        _fail(400, f"'{name}' phải trong khoảng {lo}..{hi}.", field=name)
    return value


@bp.get("/broadcasts/<int:broadcast_id>")
def get_broadcast(broadcast_id: int) -> Response:
    found = _services().broadcasts.get(broadcast_id)
    if found is None:
        _fail(404, f"Không có lượt phát #{broadcast_id} (not found).")
    return jsonify(found)


@bp.delete("/broadcasts/<int:broadcast_id>")
def cancel_broadcast(broadcast_id: int) -> Response:
    manager = _services().broadcasts
    if manager.get(broadcast_id) is None:
        _fail(404, f"Không có lượt phát #{broadcast_id} (not found).")
    if not manager.cancel(broadcast_id, by=_actor()):
        _fail(
            409, f"Lượt phát #{broadcast_id} đã kết thúc, không huỷ được (already finished).", code="finished"
        )
    _LOGGER.info("API %s: broadcast %s cancelled", _actor(), broadcast_id)
    return jsonify(manager.get(broadcast_id))


@bp.post("/stop")
def stop_all() -> Response:
    data = _json_body(required=False)
    _check_keys(data, {"reason"})
    reason = _str_field(data, "reason", 300) or "Dừng tất cả qua API"
    _services().broadcasts.stop_all(by=_actor(), reason=reason)
    _LOGGER.warning("API %s: stop all (%s)", _actor(), reason)
    return jsonify(stopped=True, reason=reason)


@bp.post("/volume")
def set_volume() -> Response:
    """Set the volume (0..100 %) of clusters: ``{"targets": ["all" | zone | cluster, ...], "volume": 60}``."""
    data = _json_body()
    _check_keys(data, {"targets", "volume"})
    try:
        targets = _services().validator.check_targets(data.get("targets"))
    except AnnouncementInvalid as exc:
        _invalid(exc)
    volume = data.get("volume")
    if isinstance(volume, bool) or not isinstance(volume, int) or not 0 <= volume <= 100:
        _fail(422, f"'volume' phải là số nguyên từ 0 đến 100 (got {volume!r}).", field="volume")
    try:
        speakers = _services().broadcasts.set_volume(list(targets), volume, by=_actor())
    except BroadcastError as exc:
        if isinstance(exc.__cause__, TransportError):  # the broker did not take the command
            _fail(503, str(exc), code="unavailable")
        _fail(422, str(exc), field="targets")  # e.g. no enabled cluster there
    _LOGGER.info("API %s: volume %s%% on %s", _actor(), volume, ",".join(targets))
    return jsonify(volume=volume, targets=list(targets), speakers=speakers)


# ------------------------------------------------------------------ speakers and zones


@bp.get("/speakers")
def list_speakers() -> Response:
    _check_keys(dict(request.args), {"zone"})
    zone = request.args.get("zone") or None
    speakers = _services().fleet.snapshot()
    if zone is not None:
        speakers = [s for s in speakers if s.get("zone") == zone]
    return jsonify(speakers=speakers)


@bp.post("/speakers")
def create_speaker() -> tuple[Response, int, dict[str, str]]:
    data = _json_body()
    _check_keys(data, {"id", "name", "zone", "location"})
    speaker, password = _registry().create_speaker(
        data.get("id"), data.get("name"), data.get("zone"), data.get("location")
    )
    _LOGGER.info("API %s: speaker %s created", _actor(), speaker["id"])
    location = f"/api/speakers/{speaker['id']}"
    # The password is shown this once; only its hash is kept.
    body = jsonify(speaker=speaker, mqtt_username=speaker["id"], mqtt_password=password)
    return body, 201, {"Location": location}


def _speaker_view(speaker_id: str) -> dict[str, Any]:
    out = _registry().get_speaker(speaker_id)
    live = _services().fleet.speaker(speaker_id) or {}
    return {**live, **out, "online": live.get("online", False), "health": live.get("health")}


@bp.get("/speakers/<speaker_id>")
def get_speaker(speaker_id: str) -> Response:
    return jsonify(_speaker_view(speaker_id))


@bp.patch("/speakers/<speaker_id>")
def update_speaker(speaker_id: str) -> Response:
    data = _json_body()
    _check_keys(data, {"name", "zone", "location", "enabled"})
    _registry().update_speaker(speaker_id, **data)
    return jsonify(_speaker_view(speaker_id))


@bp.delete("/speakers/<speaker_id>")
def delete_speaker(speaker_id: str) -> tuple[str, int]:
    _registry().delete_speaker(speaker_id)
    _LOGGER.info("API %s: speaker %s deleted", _actor(), speaker_id)
    return "", 204


@bp.post("/speakers/<speaker_id>/password")
def reset_speaker_password(speaker_id: str) -> Response:
    password = _registry().reset_speaker_password(speaker_id)
    return jsonify(mqtt_username=speaker_id, mqtt_password=password)


@bp.get("/zones")
def list_zones() -> Response:
    return jsonify(zones=_registry().list_zones())


@bp.post("/zones")
def create_zone() -> tuple[Response, int, dict[str, str]]:
    data = _json_body()
    _check_keys(data, {"id", "name", "quiet_start", "quiet_end"})
    zone = _registry().create_zone(
        data.get("id"), data.get("name"), data.get("quiet_start"), data.get("quiet_end")
    )
    return jsonify(zone), 201, {"Location": f"/api/zones/{zone['id']}"}


@bp.get("/zones/<zone_id>")
def get_zone(zone_id: str) -> Response:
    zone = _registry().get_zone(zone_id)
    zone["speakers"] = [s["id"] for s in _registry().list_speakers(zone=zone_id)]
    return jsonify(zone)


@bp.patch("/zones/<zone_id>")
def update_zone(zone_id: str) -> Response:
    data = _json_body()
    _check_keys(data, {"name", "quiet_start", "quiet_end"})
    return jsonify(_registry().update_zone(zone_id, **data))


@bp.delete("/zones/<zone_id>")
def delete_zone(zone_id: str) -> tuple[str, int]:
    _registry().delete_zone(zone_id)
    return "", 204


@bp.get("/alerts")
def list_alerts() -> Response:
    _check_keys(dict(request.args), {"active"})
    active = request.args.get("active", "1") not in ("0", "false", "no")
    return jsonify(alerts=_services().fleet.alerts(active_only=active))


# ------------------------------------------------------------------ schedules


@bp.get("/schedules")
def list_schedules() -> Response:
    return jsonify(schedules=_services().scheduler.list_schedules())


@bp.post("/schedules")
def create_schedule() -> tuple[Response, int, dict[str, str]]:
    data = _json_body()
    scheduler = _services().scheduler
    schedule_id = scheduler.create_schedule(data, author=_actor())
    location = f"/api/schedules/{schedule_id}"
    return jsonify(scheduler.get_schedule(schedule_id)), 201, {"Location": location}


@bp.get("/schedules/<int:schedule_id>")
def get_schedule(schedule_id: int) -> Response:
    return jsonify(_services().scheduler.get_schedule(schedule_id))


@bp.patch("/schedules/<int:schedule_id>")
def update_schedule(schedule_id: int) -> Response:
    return jsonify(_services().scheduler.update_schedule(schedule_id, _json_body()))


@bp.delete("/schedules/<int:schedule_id>")
def delete_schedule(schedule_id: int) -> tuple[str, int]:
    _services().scheduler.delete_schedule(schedule_id)
    return "", 204


@bp.post("/schedules/reload")
def reload_schedules() -> Response:
    return jsonify(_services().scheduler.reload_yaml())


@bp.get("/schedules/upcoming")
def upcoming() -> Response:
    _check_keys(dict(request.args), {"from", "to"})
    zone = _zone()
    start = parse_when(request.args.get("from"), zone, "from") or datetime.now(UTC)
    end = parse_when(request.args.get("to"), zone, "to", end_of_day=True) or start + timedelta(days=7)
    if end < start:
        _fail(400, "'to' trước 'from' ('to' is before 'from').", field="to")
    if end - start > timedelta(days=62):
        _fail(400, "Khoảng thời gian tối đa 62 ngày (at most 62 days).", field="to")
    return jsonify(
        start=start.astimezone(zone).isoformat(),
        end=end.astimezone(zone).isoformat(),
        airings=_services().scheduler.upcoming(start, end),
    )


# ------------------------------------------------------------------ log and reports


def _log() -> list[dict[str, Any]]:
    settings = _services().settings
    filters = LogFilters.from_args(dict(request.args), settings.timezone)
    with _services().sessions() as session:
        return broadcast_log(session, filters, tz=settings.timezone)


def _csv_response(text: str, filename: str) -> Response:
    return Response(
        text.encode("utf-8"),
        mimetype="text/csv",
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{filename}"',
        },
    )


@bp.get("/log")
def log() -> Response:
    return jsonify(broadcasts=_log())


@bp.get("/log.csv")
def log_as_csv() -> Response:
    return _csv_response(log_csv(_log()), "nhat-ky-phat-thanh.csv")


def _minutes() -> tuple[str, str, list[dict[str, Any]]]:
    _check_keys(dict(request.args), {"from", "to", "zone", "speaker"})
    settings = _services().settings
    today = datetime.now(ZoneInfo(settings.timezone)).date()
    start = parse_day(request.args.get("from") or (today - timedelta(days=6)).isoformat(), "from")
    end = parse_day(request.args.get("to") or today.isoformat(), "to")
    with _services().sessions() as session:
        rows = minutes_per_day(
            session,
            start,
            end,
            tz=settings.timezone,
            zone=request.args.get("zone") or None,
            speaker=request.args.get("speaker") or None,
        )
    return start.isoformat(), end.isoformat(), rows


@bp.get("/reports/minutes")
def minutes() -> Response:
    start, end, rows = _minutes()
    return jsonify({"from": start, "to": end, "rows": rows})


@bp.get("/reports/minutes.csv")
def minutes_as_csv() -> Response:
    start, end, rows = _minutes()
    return _csv_response(minutes_csv(rows), f"so-phut-phat-{start}-{end}.csv")

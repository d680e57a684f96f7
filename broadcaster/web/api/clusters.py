"""Clusters, zones and alerts: ``/api/speakers``, ``/api/zones``, ``/api/alerts``."""

from __future__ import annotations

import logging
from typing import Any

from flask import Response, jsonify, request

from broadcaster.web.api import (
    actor,
    bp,
    check_keys,
    check_query,
    fail,
    json_body,
    registry,
    services,
)

_LOGGER = logging.getLogger(__name__)


# ------------------------------------------------------------------ speakers and zones


@bp.get("/speakers")
def list_speakers() -> Response:
    check_query({"zone"})
    zone = request.args.get("zone") or None
    speakers = services().fleet.snapshot()
    if zone is not None:
        speakers = [s for s in speakers if s.get("zone") == zone]
    return jsonify(speakers=speakers)


@bp.post("/speakers")
def create_speaker() -> tuple[Response, int, dict[str, str]]:
    data = json_body()
    check_keys(data, {"id", "name", "zone", "location"})
    speaker, password = registry().create_speaker(
        data.get("id"), data.get("name"), data.get("zone"), data.get("location")
    )
    _LOGGER.info("API %s: speaker %s created", actor(), speaker["id"])
    location = f"/api/speakers/{speaker['id']}"
    # The password is shown this once; only its hash is kept.
    body = jsonify(speaker=speaker, mqtt_username=speaker["id"], mqtt_password=password)
    return body, 201, {"Location": location}


def _speaker_view(speaker_id: str) -> dict[str, Any]:
    out = registry().get_speaker(speaker_id)
    live = services().fleet.speaker(speaker_id) or {}
    return {**live, **out, "online": live.get("online", False), "health": live.get("health")}


@bp.get("/speakers/<speaker_id>")
def get_speaker(speaker_id: str) -> Response:
    return jsonify(_speaker_view(speaker_id))


@bp.patch("/speakers/<speaker_id>")
def update_speaker(speaker_id: str) -> Response:
    data = json_body()
    check_keys(data, {"name", "zone", "location", "enabled"})
    registry().update_speaker(speaker_id, **data)
    return jsonify(_speaker_view(speaker_id))


@bp.delete("/speakers/<speaker_id>")
def delete_speaker(speaker_id: str) -> tuple[str, int]:
    registry().delete_speaker(speaker_id)
    _LOGGER.info("API %s: speaker %s deleted", actor(), speaker_id)
    return "", 204


@bp.post("/speakers/<speaker_id>/password")
def reset_speaker_password(speaker_id: str) -> Response:
    password = registry().reset_speaker_password(speaker_id)
    return jsonify(mqtt_username=speaker_id, mqtt_password=password)


@bp.post("/speakers/<speaker_id>/enroll")
def enroll_speaker(speaker_id: str) -> tuple[Response, int]:
    """Create the cluster if needed (body ``{"zone", "name"}``, both optional), give it a new
    password and return its agent configuration: JSON, or agent.yaml with ``?format=yaml`` or
    ``Accept: application/yaml``."""
    from broadcaster.fleet.enroll import EnrollError, enroll

    check_keys(dict(request.args), {"format"})
    wanted = request.args.get("format") or request.accept_mimetypes.best_match(
        ["application/json", "application/yaml"], "application/json"
    )
    if wanted not in ("json", "yaml", "application/json", "application/yaml"):
        fail(400, "'format' phải là json hoặc yaml.", field="format")
    data = json_body(required=False)
    check_keys(data, {"zone", "name"})
    try:
        result = enroll(
            registry(), services().settings, speaker_id, zone=data.get("zone"), name=data.get("name")
        )
    except EnrollError as exc:
        fail(503, f"Chưa cấp được cấu hình: {exc.message}", code="unavailable")
    _LOGGER.info("API %s: speaker %s enrolled", actor(), speaker_id)
    status = 201 if result.created else 200
    if wanted in ("yaml", "application/yaml"):
        body = Response(result.bundle.to_yaml(), mimetype="application/yaml")
        body.headers["Content-Disposition"] = 'attachment; filename="agent.yaml"'
        return body, status
    return jsonify({**result.bundle.to_dict(), "enabled": result.enabled}), status


@bp.get("/zones")
def list_zones() -> Response:
    return jsonify(zones=registry().list_zones())


@bp.post("/zones")
def create_zone() -> tuple[Response, int, dict[str, str]]:
    data = json_body()
    check_keys(data, {"id", "name", "quiet_start", "quiet_end"})
    zone = registry().create_zone(
        data.get("id"), data.get("name"), data.get("quiet_start"), data.get("quiet_end")
    )
    return jsonify(zone), 201, {"Location": f"/api/zones/{zone['id']}"}


@bp.get("/zones/<zone_id>")
def get_zone(zone_id: str) -> Response:
    zone = registry().get_zone(zone_id)
    zone["speakers"] = [s["id"] for s in registry().list_speakers(zone=zone_id)]
    return jsonify(zone)


@bp.patch("/zones/<zone_id>")
def update_zone(zone_id: str) -> Response:
    data = json_body()
    check_keys(data, {"name", "quiet_start", "quiet_end"})
    return jsonify(registry().update_zone(zone_id, **data))


@bp.delete("/zones/<zone_id>")
def delete_zone(zone_id: str) -> tuple[str, int]:
    registry().delete_zone(zone_id)
    return "", 204


@bp.get("/alerts")
def list_alerts() -> Response:
    check_query({"active"})
    active = request.args.get("active", "1") not in ("0", "false", "no")
    return jsonify(alerts=services().fleet.alerts(active_only=active))

"""Broadcasts, stop and volume: ``/api/broadcasts``, ``/api/stop``, ``/api/volume``."""

from __future__ import annotations

import logging
from typing import NoReturn

from flask import Response, jsonify, request

from broadcaster.broadcasts import AnnouncementInvalid, BroadcastError, Draft
from broadcaster.domain import Source, Tier
from broadcaster.fleet.targets import UNIT_PREFIX
from broadcaster.transport import TransportError
from broadcaster.web.api import (
    actor,
    bp,
    check_keys,
    check_query,
    fail,
    int_query,
    json_body,
    services,
    str_field,
)

_LOGGER = logging.getLogger(__name__)


# ------------------------------------------------------------------ broadcasts

BROADCAST_FIELDS = {"text", "targets", "tier", "at", "repeat", "title", "engine", "voice"}
# A relay: ``channel`` + ``duration_s`` or ``until`` instead of ``text``.
RELAY_FIELDS = {"channel", "duration_s", "until", "targets", "tier", "at", "title"}


def _invalid(exc: AnnouncementInvalid) -> NoReturn:
    fail(422, exc.message, field=exc.field)


@bp.post("/broadcasts")
def create_broadcast() -> tuple[Response, int, dict[str, str]]:
    data = json_body()
    if "channel" in data:
        return _create_relay(data)
    check_keys(data, BROADCAST_FIELDS)
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
    found = services()
    try:
        checked = found.validator.check(draft)
        ann = checked.announcement(author=actor(), source=Source.API)
        broadcast_id = found.broadcasts.submit(ann, approved=True)
    except AnnouncementInvalid as exc:
        _invalid(exc)
    except BroadcastError as exc:
        fail(422, exc.message, field=exc.field)
    if found.federation is not None and any(t.startswith(UNIT_PREFIX) for t in ann.targets):
        found.federation.poke()  # "unit:..." targets: the bulletin goes down at once
    _LOGGER.info("API %s: broadcast %s (%s) to %s", actor(), broadcast_id, ann.tier, ",".join(ann.targets))
    location = f"/api/broadcasts/{broadcast_id}"
    return jsonify(id=broadcast_id, url=location), 201, {"Location": location}


def _create_relay(data: dict) -> tuple[Response, int, dict[str, str]]:  # type: ignore[type-arg]
    check_keys(data, RELAY_FIELDS)
    found = services()
    manager = found.broadcasts
    try:
        checked = found.validator.check_stream(
            channel=data.get("channel"),
            duration_s=data.get("duration_s"),
            until=data.get("until"),
            tier=data.get("tier", Tier.NORMAL.value),
            targets=data.get("targets"),
            title=data.get("title"),
            at=data.get("at"),
            max_s=found.settings.live.relay_max_s,
            channel_lookup=manager.channels.usable,
        )
        broadcast_id = manager.submit_stream(checked, author=actor(), source=Source.API)
    except AnnouncementInvalid as exc:
        _invalid(exc)
    except BroadcastError as exc:
        fail(422, exc.message, field=exc.field)
    _LOGGER.info("API %s: relay %s of channel %s", actor(), broadcast_id, checked.channel_id)
    location = f"/api/broadcasts/{broadcast_id}"
    return jsonify(id=broadcast_id, url=location), 201, {"Location": location}


@bp.get("/broadcasts")
def list_broadcasts() -> Response:
    check_query({"limit", "offset", "state"})
    limit = int_query("limit", 50, 1, 1000)
    offset = int_query("offset", 0, 0, 10**9)
    state = request.args.get("state") or None
    return jsonify(broadcasts=services().broadcasts.list(limit=limit, offset=offset, state=state))


@bp.get("/broadcasts/<id:broadcast_id>")
def get_broadcast(broadcast_id: int) -> Response:
    found = services().broadcasts.get(broadcast_id)
    if found is None:
        fail(404, f"Không có lượt phát #{broadcast_id} (not found).")
    return jsonify(found)


@bp.delete("/broadcasts/<id:broadcast_id>")
def cancel_broadcast(broadcast_id: int) -> Response:
    manager = services().broadcasts
    if manager.get(broadcast_id) is None:
        fail(404, f"Không có lượt phát #{broadcast_id} (not found).")
    federation = services().federation
    # A bulletin sent to downstream units is withdrawn from them too (issue 11).
    withdrawn = federation is not None and federation.withdraw(broadcast_id)
    if not manager.cancel(broadcast_id, by=actor()) and not withdrawn:
        fail(
            409, f"Lượt phát #{broadcast_id} đã kết thúc, không hủy được (already finished).", code="finished"
        )
    _LOGGER.info("API %s: broadcast %s cancelled", actor(), broadcast_id)
    return jsonify(manager.get(broadcast_id))


@bp.post("/stop")
def stop_all() -> Response:
    data = json_body(required=False)
    check_keys(data, {"reason"})
    reason = str_field(data, "reason", 300) or "Dừng tất cả qua API"
    services().broadcasts.stop_all(by=actor(), reason=reason)
    _LOGGER.warning("API %s: stop all (%s)", actor(), reason)
    return jsonify(stopped=True, reason=reason)


@bp.post("/volume")
def set_volume() -> Response:
    """Set the volume (0..100 %) of clusters: ``{"targets": ["all" | zone | cluster, ...], "volume": 60}``."""
    data = json_body()
    check_keys(data, {"targets", "volume"})
    try:
        targets = services().validator.check_targets(data.get("targets"))
    except AnnouncementInvalid as exc:
        _invalid(exc)
    volume = data.get("volume")
    if isinstance(volume, bool) or not isinstance(volume, int) or not 0 <= volume <= 100:
        fail(422, f"'volume' phải là số nguyên từ 0 đến 100 (got {volume!r}).", field="volume")
    try:
        speakers = services().broadcasts.set_volume(list(targets), volume, by=actor())
    except BroadcastError as exc:
        if isinstance(exc.__cause__, TransportError):  # the broker did not take the command
            fail(503, str(exc), code="unavailable")
        fail(422, str(exc), field="targets")  # e.g. no enabled cluster there
    _LOGGER.info("API %s: volume %s%% on %s", actor(), volume, ",".join(targets))
    return jsonify(volume=volume, targets=list(targets), speakers=speakers)

"""Relay channels: ``/api/channels`` (named audio streams: Icecast/Shoutcast MP3 or AAC, HLS)."""

from __future__ import annotations

import logging
from typing import NoReturn

from flask import Response, jsonify

from broadcaster.live.channels import ChannelError
from broadcaster.web.api import actor, bp, check_keys, fail, json_body, services

_LOGGER = logging.getLogger(__name__)


def _fail(exc: ChannelError) -> NoReturn:
    fail(exc.status, exc.message, field=exc.field)


@bp.post("/channels")
def create_channel() -> tuple[Response, int, dict[str, str]]:
    """``{"name": "VOV1", "url": "https://.../vov1.mp3"}`` -> 201 ``{"id"}``."""
    data = json_body()
    check_keys(data, {"name", "url", "enabled"})
    try:
        channel_id = services().broadcasts.channels.create(
            data.get("name"), data.get("url"), by=actor(), enabled=data.get("enabled", True)
        )
    except ChannelError as exc:
        _fail(exc)
    _LOGGER.info("API %s: channel %s created", actor(), channel_id)
    location = f"/api/channels/{channel_id}"
    return jsonify(id=channel_id, url=location), 201, {"Location": location}


@bp.get("/channels")
def list_channels() -> Response:
    return jsonify(channels=services().broadcasts.channels.list())


@bp.get("/channels/<int:channel_id>")
def get_channel(channel_id: int) -> Response:
    found = services().broadcasts.channels.get(channel_id)
    if found is None:
        fail(404, f"Không có kênh #{channel_id} (not found).")
    return jsonify(found)


@bp.patch("/channels/<int:channel_id>")
def update_channel(channel_id: int) -> Response:
    data = json_body()
    check_keys(data, {"name", "url", "enabled"})
    try:
        return jsonify(services().broadcasts.channels.update(channel_id, data))
    except ChannelError as exc:
        _fail(exc)


@bp.delete("/channels/<int:channel_id>")
def delete_channel(channel_id: int) -> Response:
    try:
        services().broadcasts.channels.delete(channel_id)
    except ChannelError as exc:
        _fail(exc)
    _LOGGER.info("API %s: channel %s deleted", actor(), channel_id)
    return jsonify(deleted=channel_id)

"""The live-audio part of the OpenAPI document (``openapi.py`` builds the rest and calls
:func:`add_live`): relay channels (``/api/channels``), relays in ``POST /api/broadcasts`` and the
relay fields of broadcasts, schedules, airings and the log. Kept apart so each half stays readable."""

from __future__ import annotations

from typing import Any

from broadcaster.broadcasts.validation import MAX_TITLE

_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_TIME = {"type": ["string", "null"], "format": "date-time"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): {"$ref": f"#/components/responses/E{c}"} for c in codes}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "tags": ["channels"], "responses": responses, **extra}


def _schemas(targets: dict[str, Any], tier: dict[str, Any]) -> dict[str, Any]:
    return {
        "RelayRequest": {
            "type": "object",
            "additionalProperties": False,
            "description": "A relay (tiếp sóng) of a channel instead of a text: its stream is pulled once by "
            "the controller and played in step on the target clusters for `duration_s` seconds or until "
            "`until`. An emergency interrupts it; afterwards it resumes at the live point.",
            "required": ["channel", "targets"],
            "oneOf": [{"required": ["duration_s"]}, {"required": ["until"]}],
            "properties": {
                "channel": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "Channel id (`GET /api/channels`).",
                },
                "duration_s": {
                    "type": "number",
                    "minimum": 10,
                    "description": "Seconds to relay (10 s to live.relay_max_s, default 6 h).",
                },
                "until": {
                    "type": "string",
                    "format": "date-time",
                    "description": "End time instead of duration_s (ISO 8601; without offset: the controller's "
                    "time zone).",
                },
                "targets": targets,
                "tier": {**tier, "default": "normal"},
                "at": {
                    "type": "string",
                    "format": "date-time",
                    "description": "Start at this time; omit for now.",
                },
                "title": {
                    "type": "string",
                    "maxLength": MAX_TITLE,
                    "description": "Default: the channel's name.",
                },
            },
            "examples": [{"channel": 1, "duration_s": 1800, "targets": ["all"]}],
        },
        "Channel": {
            "type": "object",
            "required": ["id", "name", "url", "enabled"],
            "properties": {
                "id": {"type": "integer"},
                "name": _STR,
                "url": {
                    "type": "string",
                    "description": "http(s) audio stream: Icecast/Shoutcast MP3 or AAC, HLS.",
                },
                "enabled": {"type": "boolean", "description": "A disabled channel cannot be relayed."},
                "created_by": _NSTR,
                "created": _TIME,
            },
        },
        "ChannelCreate": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "url"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 100, "examples": ["VOV1"]},
                "url": {
                    "type": "string",
                    "maxLength": 1000,
                    "pattern": "^https?://",
                    "description": "The stream's address, http:// or https://.",
                },
                "enabled": {"type": "boolean", "default": True},
            },
            "examples": [{"name": "VOV1", "url": "https://stream.example.vn/vov1.mp3"}],
        },
        "ChannelUpdate": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 100},
                "url": {"type": "string", "maxLength": 1000, "pattern": "^https?://"},
                "enabled": {"type": "boolean"},
            },
        },
    }


def _paths() -> dict[str, Any]:
    chid = {
        "name": "channel_id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer"},
        "description": "Channel id.",
    }
    return {
        "/api/channels": {
            "get": _op(
                "Every relay channel.",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["channels"],
                            "properties": {"channels": {"type": "array", "items": _ref("Channel")}},
                        }
                    ),
                    **_errors(401),
                },
            ),
            "post": _op(
                "Define a relay channel: a named http(s) audio stream (Icecast/Shoutcast MP3 or AAC, HLS).",
                {
                    "201": {
                        **_json(_ref("Created"), "Created."),
                        "headers": {"Location": {"schema": _STR}},
                    },
                    **_errors(400, 401, 409, 413, 415, 422),
                },
                requestBody=_body(_ref("ChannelCreate")),
                description="The address is checked (http or https, a host) but not fetched: "
                "a source that cannot be relayed says why when a relay of it starts.",
            ),
        },
        "/api/channels/{channel_id}": {
            "parameters": [chid],
            "get": _op(
                "One relay channel.", {"200": _json(_ref("Channel")), **_errors(401, 404)}, tag="channels"
            ),
            "patch": _op(
                "Rename a channel, change its address, turn it off or on.",
                {"200": _json(_ref("Channel")), **_errors(400, 401, 404, 409, 413, 415, 422)},
                requestBody=_body(_ref("ChannelUpdate")),
            ),
            "delete": _op(
                "Delete a channel (refused while a relay of it waits or plays, or a schedule uses it).",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["deleted"],
                            "properties": {"deleted": {"type": "integer"}},
                        }
                    ),
                    **_errors(401, 404, 409),
                },
            ),
        },
    }


# Fields a broadcast has for live audio (``broadcasts.views.broadcast_view``).
_BROADCAST_FIELDS: dict[str, Any] = {
    "kind": {
        "type": "string",
        "enum": ["announcement", "relay", "live"],
        "description": "What it airs: a bulletin, a relay of a channel, or live speech.",
    },
    "channel_id": {"type": ["integer", "null"], "description": "A relay's channel (null otherwise)."},
    "source_name": {
        "type": ["string", "null"],
        "description": "A relay's channel name (kept after the channel is deleted), or «Phát trực tiếp» "
        "for live speech.",
    },
    "end_at": {
        **_TIME,
        "description": "A relay's planned end; a live item's end once it ended. Each delivery reaches "
        "`done` when that cluster played the relay to its end.",
    },
}


def _properties(schema: dict[str, Any]) -> dict[str, Any]:
    """The properties of an object schema, or of the last part of an ``allOf``."""
    return (schema if "properties" in schema else schema["allOf"][-1])["properties"]


def add_live(doc: dict[str, Any], *, relay_max_s: float) -> None:
    """Add the live-audio operations and fields to the OpenAPI document ``doc`` (in place)."""
    schemas = doc["components"]["schemas"]
    request = schemas["BroadcastRequest"]["properties"]
    schemas.update(_schemas(request["targets"], {k: request["tier"][k] for k in ("type", "enum")}))
    schemas["RelayRequest"]["properties"]["duration_s"]["maximum"] = relay_max_s
    _properties(schemas["Broadcast"]).update(_BROADCAST_FIELDS)
    _properties(schemas["ScheduleInput"]).update(
        channel={
            "type": ["integer", "string", "null"],
            "description": "A relay schedule: the channel (id, or name) to relay instead of a text.",
        },
        duration_s={
            "type": ["number", "null"],
            "minimum": 10,
            "description": "A relay schedule: seconds to relay from each fire time.",
        },
    )
    schemas["ScheduleInput"].setdefault("examples", []).append(
        {"title": "Thời sự VOV1", "channel": 1, "duration_s": 1800, "kind": "daily", "time": "06:00"}
    )
    _properties(schemas["Schedule"]).update(
        channel={"type": ["integer", "null"], "description": "A relay schedule's channel id."},
        channel_name={"type": ["string", "null"], "description": "A relay schedule's channel name."},
        duration_s={"type": ["number", "null"], "description": "A relay schedule's seconds per airing."},
    )
    _properties(schemas["Airing"]).update(
        relay={"type": ["string", "null"], "description": "The channel name of a relay airing."},
        duration_s={"type": ["number", "null"], "description": "A relay schedule's duration."},
    )
    _properties(schemas["LogBroadcast"]).update(
        kind_label={"type": "string", "description": "Bản tin, Tiếp sóng or Phát trực tiếp."},
    )
    post = doc["paths"]["/api/broadcasts"]["post"]
    post["requestBody"] = _body({"oneOf": [_ref("BroadcastRequest"), _ref("RelayRequest")]})
    post["description"] = (
        "Either an announcement (`text`) or a relay of a channel (`channel` with `duration_s` or "
        "`until`). `GET /api/broadcasts/{id}` then reports it like any item."
    )
    paths = _paths()
    doc["paths"] = {
        **{k: v for k, v in doc["paths"].items() if k < "/api/channels"},
        **paths,
        **{k: v for k, v in doc["paths"].items() if k > "/api/channels"},
    }
    doc["tags"].append({"name": "channels"})


__all__ = ["add_live"]

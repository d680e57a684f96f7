"""The OpenAPI 3.1 document of the REST API, served at /api/openapi.json.

Hand-written on purpose: the API is small, and a reader (or an integrator at the district) should
find every field, unit and error spelled out. ``tests/test_api_openapi.py`` checks that every
registered /api route is documented here.
"""

from __future__ import annotations

import copy
from typing import Any

from broadcaster import __version__ as _version
from broadcaster.broadcasts.validation import MAX_TITLE
from broadcaster.domain import Tier
from broadcaster.models import Approval, BroadcastState, DeliveryState
from broadcaster.scheduling.spec import KINDS
from broadcaster.web.openapi_live import add_live


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    texts = {
        400: "Malformed request or query parameter.",
        401: "Missing, invalid or revoked bearer token.",
        404: "No such resource.",
        409: "Conflicts with the current state (duplicate id, already finished, file-based schedule).",
        413: "Body larger than 1 MiB.",
        415: "Body is not application/json.",
        422: "A field is not acceptable; `error.field` names it.",
        503: "The MQTT broker did not take the command.",
    }
    return {str(c): {"$ref": f"#/components/responses/E{c}"} for c in codes if c in texts}


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _path_param(name: str, kind: str = "string", description: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": kind},
        "description": description,
    }


def _query(name: str, description: str, kind: str = "string", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": kind, **extra},
        "description": description,
    }


def _op(summary: str, responses: dict[str, Any], *, tag: str, **extra: Any) -> dict[str, Any]:
    op = {"summary": summary, "tags": [tag], "responses": responses}
    op.update(extra)
    return op


_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_TIER = {"type": "string", "enum": [t.value for t in Tier]}
_TARGETS = {
    "type": "array",
    "minItems": 1,
    "items": {"type": "string"},
    "description": '"all", zone ids or speaker ids; on an upper level also downstream units: "unit:*" (every '
    'unit below), "unit:xa-phuc-hoa", "unit:huyen-a/xa-b" (docs/federation.md).',
    "examples": [["all"], ["thon-dong", "loa-07"], ["unit:*"], ["all", "unit:xa-phuc-hoa"]],
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "examples": ["invalid", "not_found", "unauthorized"]},
                    "message": {"type": "string", "description": "Vietnamese, with English in brackets."},
                    "field": {"type": "string", "description": "The field or parameter at fault."},
                },
            }
        },
    },
    "BroadcastRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["text", "targets"],
        "properties": {
            "text": {
                "type": "string",
                "minLength": 1,
                "description": "Vietnamese text, read aloud after normalization.",
            },
            "targets": _TARGETS,
            "tier": {**_TIER, "default": "normal", "description": "emergency preempts what plays."},
            "at": {
                "type": "string",
                "format": "date-time",
                "description": "Air at this time (ISO 8601; without offset: the controller's time zone). "
                "Omit for now. At most 60 s in the past.",
            },
            "repeat": {"type": "integer", "minimum": 1, "maximum": 5, "default": 1},
            "title": {"type": "string", "maxLength": MAX_TITLE},
            "engine": {"type": "string", "description": "TTS engine: gtts, piper or espeak-ng."},
            "voice": {"type": "string"},
        },
        "examples": [
            {"text": "Kính thưa bà con, 14 giờ chiều nay cắt điện khu vực thôn Đông.", "targets": ["all"]},
            {"text": "Bão số 3 đổ bộ, bà con không ra biển.", "targets": ["all"], "tier": "emergency"},
        ],
    },
    "VolumeRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["targets", "volume"],
        "properties": {
            "targets": _TARGETS,
            "volume": {"type": "integer", "minimum": 0, "maximum": 100, "description": "Percent."},
        },
        "examples": [{"targets": ["all"], "volume": 70}, {"targets": ["thon-dong"], "volume": 40}],
    },
    "VolumeResult": {
        "type": "object",
        "required": ["volume", "targets", "speakers"],
        "properties": {
            "volume": {"type": "integer"},
            "targets": {"type": "array", "items": _STR},
            "speakers": {"type": "array", "items": _STR, "description": "Ids of the clusters addressed."},
        },
    },
    "Created": {
        "type": "object",
        "required": ["id"],
        "properties": {"id": {"type": "integer"}, "url": {"type": "string"}},
    },
    "Delivery": {
        "type": "object",
        "required": ["speaker", "state"],
        "properties": {
            "speaker": {"type": "string", "description": "Speaker (cluster) id."},
            "state": {
                "type": "string",
                "enum": [s.value for s in DeliveryState],
                "description": "done = played to the end, as reported by the node.",
            },
            "started_at": _TIME,
            "finished_at": _TIME,
            "seconds_played": {"type": ["number", "null"]},
            "rms_dbfs": {"type": ["number", "null"]},
            "reason": _NSTR,
        },
    },
    "Broadcast": {
        "type": "object",
        "required": ["id", "state"],
        "properties": {
            "id": {"type": "integer"},
            "state": {"type": "string", "enum": [s.value for s in BroadcastState]},
            "tier": _TIER,
            "targets": {"type": "array", "items": _STR},
            "title": _STR,
            "text": _STR,
            "normalized_text": _STR,
            "scheduled_at": _TIME,
            "start_at": _TIME,
            "finished_at": _TIME,
            "engine": _NSTR,
            "duration_s": {"type": ["number", "null"]},
            "reason": _NSTR,
            "deliveries": {"type": "array", "items": _ref("Delivery")},
            "unit_deliveries": {
                "type": "array",
                "items": _ref("UnitDelivery"),
                "description": "Only for a bulletin sent to downstream units: what every cluster below "
                "did with it, as the units reported it (docs/federation.md).",
            },
        },
    },
    "UnitDelivery": {
        "type": "object",
        "required": ["unit", "speaker", "state"],
        "properties": {
            "unit": {
                "type": "string",
                "description": "Unit path below this level: 'xa-b' or 'huyen-a/xa-b'.",
            },
            "speaker": {"type": "string", "description": "Cluster id in that unit."},
            "state": {
                "type": "string",
                "enum": [s.value for s in DeliveryState],
                "description": "The same states as local deliveries; done = played to the end.",
            },
            "started_at": _TIME,
            "finished_at": _TIME,
            "seconds_played": {"type": ["number", "null"]},
            "rms_dbfs": {"type": ["number", "null"]},
            "reason": _NSTR,
        },
    },
    "SpeakerState": {
        "type": "object",
        "required": ["id", "zone", "online"],
        "properties": {
            "id": _STR,
            "name": _STR,
            "zone": _NSTR,
            "online": {"type": "boolean"},
            "last_seen": _TIME,
            "health": {
                "type": ["object", "null"],
                "description": "The latest health report: volume, amplifier_on, uptime_s, cache_bytes, "
                "clock_offset_ms, last_error, ...",
            },
            "playing": {"description": "What plays now, or null."},
            "volume": {"type": ["integer", "null"]},
            "amplifier_on": {"type": ["boolean", "null"]},
            "alerts": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Speaker": {
        "type": "object",
        "properties": {
            "id": _STR,
            "name": _STR,
            "zone": _NSTR,
            "location": _NSTR,
            "enabled": {"type": "boolean"},
            "has_credentials": {"type": "boolean"},
            "created": _TIME,
        },
    },
    "SpeakerCreate": {
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "name"],
        "properties": {
            "id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"},
            "name": {"type": "string", "maxLength": 200},
            "zone": _NSTR,
            "location": _NSTR,
        },
    },
    "SpeakerUpdate": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"name": _STR, "zone": _NSTR, "location": _NSTR, "enabled": {"type": "boolean"}},
    },
    "Enrollment": {
        "type": "object",
        "required": ["id", "zone", "mqtt_url", "password", "enabled"],
        "properties": {
            "id": _STR,
            "zone": _NSTR,
            "mqtt_url": {"type": "string", "description": "mqtts://<broker.public_host>:<broker.tls_port>"},
            "password": {"type": "string", "description": "Shown once; only its hash is stored."},
            "ca_pem": {
                "type": "string",
                "description": "The broker's CA (PEM) the node pins; absent with an operator's certificate.",
            },
            "enabled": {"type": "boolean", "description": "A disabled cluster is refused until enabled."},
        },
    },
    "Credentials": {
        "type": "object",
        "required": ["mqtt_username", "mqtt_password"],
        "properties": {
            "speaker": _ref("Speaker"),
            "mqtt_username": _STR,
            "mqtt_password": {"type": "string", "description": "Shown once; only its hash is stored."},
        },
    },
    "Zone": {
        "type": "object",
        "properties": {
            "id": _STR,
            "name": _STR,
            "quiet_start": {"type": ["string", "null"], "pattern": "^\\d\\d:\\d\\d$"},
            "quiet_end": {"type": ["string", "null"], "pattern": "^\\d\\d:\\d\\d$"},
            "speaker_count": {"type": "integer"},
            "speakers": {"type": "array", "items": _STR},
            "created": _TIME,
        },
    },
    "ZoneCreate": {
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "name"],
        "properties": {
            "id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"},
            "name": _STR,
            "quiet_start": {
                "type": ["string", "null"],
                "description": "HH:MM; normal items wait until quiet_end.",
            },
            "quiet_end": {"type": ["string", "null"]},
        },
    },
    "ZoneUpdate": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"name": _STR, "quiet_start": _NSTR, "quiet_end": _NSTR},
    },
    "ScheduleInput": {
        "type": "object",
        "additionalProperties": False,
        "description": "once: at; daily/weekdays: time; weekly: time + days; cron: a crontab line "
        "(5 fields, 0/7 = Sunday; or 6 with seconds first). Times in the controller's time zone.",
        "properties": {
            "name": _STR,
            "title": _STR,
            "text": _STR,
            "tier": _TIER,
            "targets": _TARGETS,
            "repeat": {"type": "integer", "minimum": 1, "maximum": 5},
            "engine": _NSTR,
            "voice": _NSTR,
            "kind": {"type": "string", "enum": list(KINDS)},
            "time": {"type": "string", "pattern": "^\\d\\d:\\d\\d$"},
            "days": {
                "type": "array",
                "items": {
                    "type": "string",
                    "enum": [
                        "mon",
                        "tue",
                        "wed",
                        "thu",
                        "fri",
                        "sat",
                        "sun",
                        "t2",
                        "t3",
                        "t4",
                        "t5",
                        "t6",
                        "t7",
                        "cn",
                    ],
                },
            },
            "at": {"type": "string", "format": "date-time"},
            "cron": _STR,
            "valid_from": {"type": "string", "description": "Date (whole day) or date-time."},
            "valid_to": {"type": "string", "description": "Date (through that day) or date-time."},
            "enabled": {"type": "boolean"},
            "approval": {"type": "string", "enum": [a.value for a in Approval]},
        },
        "examples": [
            {"title": "Bản tin sáng", "text": "Kính thưa bà con ...", "kind": "weekdays", "time": "06:00"}
        ],
    },
    "Schedule": {
        "type": "object",
        "description": "A schedule as stored: every field of ScheduleInput (null where unset), its id, "
        "author and next airing. Times carry the controller's offset.",
        "required": ["id", "name", "text", "tier", "targets", "kind", "enabled"],
        "properties": {
            "id": {"type": "integer"},
            "name": _STR,
            "title": _NSTR,
            "text": _STR,
            "tier": _TIER,
            "targets": {"type": "array", "items": _STR},
            "repeat": {"type": "integer", "minimum": 1},
            "engine": _NSTR,
            "voice": _NSTR,
            "kind": {"type": "string", "enum": list(KINDS)},
            "time": {"type": ["string", "null"], "pattern": "^\\d\\d:\\d\\d$"},
            "days": {"type": ["array", "null"], "items": _STR},
            "at": _TIME,
            "cron": _NSTR,
            "valid_from": _TIME,
            "valid_to": _TIME,
            "enabled": {"type": "boolean"},
            "approval": {"type": ["string", "null"], "enum": [*(a.value for a in Approval), None]},
            "author": _NSTR,
            "source_file": {"type": ["string", "null"], "description": "Set for schedules/*.yaml."},
            "audio_key": {"type": ["string", "null"], "description": "Audio rendered ahead."},
            "next_run": _TIME,
            "created": _TIME,
        },
    },
    "Airing": {
        "type": "object",
        "properties": {
            "schedule_id": {"type": ["integer", "null"]},
            "broadcast_id": {"type": ["integer", "null"]},
            "title": _STR,
            "name": _NSTR,
            "tier": _TIER,
            "targets": {"type": "array", "items": _STR},
            "at": {"type": "string", "format": "date-time"},
            "state": _NSTR,
            "approval": _NSTR,
            "kind": _NSTR,
        },
    },
    "LogBroadcast": {
        "allOf": [
            _ref("Broadcast"),
            {
                "type": "object",
                "properties": {
                    "time": _TIME,
                    "tier_label": _STR,
                    "state_label": _STR,
                    "source": _NSTR,
                    "author": _NSTR,
                    "seconds_played": {"type": "number"},
                    "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
                },
            },
        ]
    },
    "MinutesRow": {
        "type": "object",
        "properties": {
            "date": {"type": "string", "format": "date"},
            "speaker": _STR,
            "speaker_name": _STR,
            "zone": _NSTR,
            "zone_name": _NSTR,
            "broadcasts": {"type": "integer"},
            "seconds": {"type": "number"},
            "minutes": {"type": "number"},
        },
    },
}

_LOG_PARAMS = [
    _query("from", "Start: a date YYYY-MM-DD (whole local day) or an ISO 8601 time."),
    _query("to", "End: a date (through that day) or an ISO 8601 time."),
    _query("tier", "normal, priority or emergency."),
    _query("state", "Broadcast state, e.g. done, partial, missed."),
    _query("speaker", "Only broadcasts delivered to this cluster."),
    _query("zone", "Only broadcasts delivered to clusters of this zone."),
    _query("q", "Search title and text, ignoring case and accents."),
    _query("limit", "At most this many broadcasts (1-1000, default 100).", "integer"),
    _query("offset", "Skip this many.", "integer"),
]
_MINUTES_PARAMS = [
    _query("from", "First local day YYYY-MM-DD (default: 6 days ago).", format="date"),
    _query("to", "Last local day YYYY-MM-DD (default: today).", format="date"),
    _query("zone", "Only clusters of this zone."),
    _query("speaker", "Only this cluster."),
]
_FORMAT = _query(
    "format",
    "csv (default): comma-separated, decimal points; excel: Excel's Vietnamese regional format "
    "(semicolons, decimal commas). Both UTF-8 with a BOM.",
    enum=["csv", "excel"],
)
_CSV = {
    "description": "CSV, UTF-8 with BOM, Vietnamese column headers, one line per row.",
    "content": {"text/csv": {"schema": {"type": "string"}}},
}


def _paths() -> dict[str, Any]:
    bid = _path_param("broadcast_id", "integer", "Broadcast id.")
    sid = _path_param("speaker_id", description="Speaker (cluster) id.")
    zid = _path_param("zone_id", description="Zone id.")
    schid = _path_param("schedule_id", "integer", "Schedule id.")
    return {
        "/api/health": {
            "get": _op(
                "Liveness probe (no token).",
                {"200": _json({"type": "object", "properties": {"status": _STR, "time": _TIME}})},
                tag="system",
                security=[],
            )
        },
        "/api/openapi.json": {
            "get": _op(
                "This document (no token).", {"200": _json({"type": "object"})}, tag="system", security=[]
            )
        },
        "/api/broadcasts": {
            "post": _op(
                "Broadcast an announcement now or at a time.",
                {
                    "201": {
                        **_json(_ref("Created"), "Accepted; rendering and sending run in the background."),
                        "headers": {"Location": {"schema": _STR}},
                    },
                    **_errors(400, 401, 413, 415, 422),
                },
                tag="broadcasts",
                requestBody=_body(_ref("BroadcastRequest")),
            ),
            "get": _op(
                "Recent broadcasts, newest first.",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"broadcasts": {"type": "array", "items": _ref("Broadcast")}},
                        }
                    ),
                    **_errors(400, 401),
                },
                tag="broadcasts",
                parameters=[
                    _query("state", "Only this state."),
                    _query("limit", "1-1000, default 50.", "integer"),
                    _query("offset", "Skip this many.", "integer"),
                ],
            ),
        },
        "/api/broadcasts/{broadcast_id}": {
            "parameters": [bid],
            "get": _op(
                "A broadcast with its per-cluster deliveries.",
                {"200": _json(_ref("Broadcast")), **_errors(401, 404)},
                tag="broadcasts",
            ),
            "delete": _op(
                "Cancel: stop where it plays, drop what is queued or scheduled.",
                {"200": _json(_ref("Broadcast")), **_errors(401, 404, 409)},
                tag="broadcasts",
            ),
        },
        "/api/stop": {
            "post": _op(
                "Stop everything now, on every cluster.",
                {
                    "200": _json(
                        {"type": "object", "properties": {"stopped": {"type": "boolean"}, "reason": _STR}}
                    ),
                    **_errors(400, 401, 415, 422),
                },
                tag="broadcasts",
                requestBody=_body(
                    {"type": "object", "additionalProperties": False, "properties": {"reason": _STR}},
                    required=False,
                ),
            )
        },
        "/api/volume": {
            "post": _op(
                "Set the volume of clusters: every cluster, whole zones or single clusters.",
                {
                    "200": _json(_ref("VolumeResult"), "Volume commands handed to the broker (QoS 1)."),
                    **_errors(400, 401, 413, 415, 422, 503),
                },
                tag="speakers",
                requestBody=_body(_ref("VolumeRequest")),
                description="One command per whole zone (on the zone topic), one per cluster otherwise; "
                "disabled clusters are left out. The change is written to the log with the token name. "
                "Clusters report the volume they apply in their health messages (`GET /api/speakers`).",
            )
        },
        "/api/speakers": {
            "get": _op(
                "Every cluster with its zone, online state and latest health.",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"speakers": {"type": "array", "items": _ref("SpeakerState")}},
                        }
                    ),
                    **_errors(400, 401),
                },
                tag="speakers",
                parameters=[_query("zone", "Only clusters of this zone.")],
            ),
            "post": _op(
                "Register a cluster; the answer holds its MQTT password, shown once.",
                {"201": _json(_ref("Credentials")), **_errors(400, 401, 409, 415, 422)},
                tag="speakers",
                requestBody=_body(_ref("SpeakerCreate")),
            ),
        },
        "/api/speakers/{speaker_id}": {
            "parameters": [sid],
            "get": _op(
                "One cluster: registry data and live state.",
                {"200": _json(_ref("SpeakerState")), **_errors(401, 404)},
                tag="speakers",
            ),
            "patch": _op(
                "Change name, zone, location or enabled.",
                {"200": _json(_ref("SpeakerState")), **_errors(400, 401, 404, 415, 422)},
                tag="speakers",
                requestBody=_body(_ref("SpeakerUpdate")),
            ),
            "delete": _op(
                "Remove a cluster (and its broker account).",
                {"204": {"description": "Deleted."}, **_errors(401, 404)},
                tag="speakers",
            ),
        },
        "/api/speakers/{speaker_id}/password": {
            "parameters": [sid],
            "post": _op(
                "Generate a new MQTT password for a cluster (the old one stops working).",
                {"200": _json(_ref("Credentials")), **_errors(401, 404)},
                tag="speakers",
            ),
        },
        "/api/speakers/{speaker_id}/enroll": {
            "parameters": [sid],
            "post": _op(
                "Enroll a cluster in one step: create it if it does not exist (in `zone`), give it a new "
                "password (the old one stops working and its connection is cut) and return its complete "
                "agent configuration (docs/agent.md): `speaker-agent run --config agent.yaml` needs "
                "nothing else.",
                {
                    "200": {
                        "description": "An existing cluster, new password.",
                        "content": {
                            "application/json": {"schema": _ref("Enrollment")},
                            "application/yaml": {"schema": {"type": "string"}},
                        },
                    },
                    "201": _json(_ref("Enrollment"), "A new cluster."),
                    **_errors(400, 401, 404, 415, 422, 503),
                },
                tag="speakers",
                parameters=[
                    {
                        "name": "format",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": ["json", "yaml"]},
                        "description": "yaml: the agent.yaml file itself (also with Accept: application/yaml).",
                    }
                ],
                requestBody=_body(
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "zone": {
                                "type": "string",
                                "description": "Zone of a new cluster, or to move it to.",
                            },
                            "name": {"type": "string", "description": "Display name (new cluster: the id)."},
                        },
                    },
                    required=False,
                ),
            ),
        },
        "/api/zones": {
            "get": _op(
                "Every zone with its number of clusters.",
                {
                    "200": _json(
                        {"type": "object", "properties": {"zones": {"type": "array", "items": _ref("Zone")}}}
                    ),
                    **_errors(401),
                },
                tag="zones",
            ),
            "post": _op(
                "Create a zone.",
                {"201": _json(_ref("Zone")), **_errors(400, 401, 409, 415, 422)},
                tag="zones",
                requestBody=_body(_ref("ZoneCreate")),
            ),
        },
        "/api/zones/{zone_id}": {
            "parameters": [zid],
            "get": _op(
                "A zone and its clusters.", {"200": _json(_ref("Zone")), **_errors(401, 404)}, tag="zones"
            ),
            "patch": _op(
                "Rename a zone or change its quiet hours.",
                {"200": _json(_ref("Zone")), **_errors(400, 401, 404, 415, 422)},
                tag="zones",
                requestBody=_body(_ref("ZoneUpdate")),
            ),
            "delete": _op(
                "Delete an empty zone.",
                {"204": {"description": "Deleted."}, **_errors(401, 404, 409)},
                tag="zones",
            ),
        },
        "/api/alerts": {
            "get": _op(
                "Fleet alerts: offline clusters, amplifier faults, errors.",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"alerts": {"type": "array", "items": {"type": "object"}}},
                        }
                    ),
                    **_errors(400, 401),
                },
                tag="speakers",
                parameters=[_query("active", "1 (default): only active alerts; 0: all.")],
            )
        },
        "/api/schedules": {
            "get": _op(
                "Every schedule (recurring and one-off).",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"schedules": {"type": "array", "items": _ref("Schedule")}},
                        }
                    ),
                    **_errors(401),
                },
                tag="schedules",
            ),
            "post": _op(
                "Create a schedule; its audio is rendered ahead at once.",
                {"201": _json(_ref("Schedule")), **_errors(400, 401, 415, 422)},
                tag="schedules",
                requestBody=_body(_ref("ScheduleInput")),
            ),
        },
        "/api/schedules/{schedule_id}": {
            "parameters": [schid],
            "get": _op(
                "One schedule with its next airing.",
                {"200": _json(_ref("Schedule")), **_errors(401, 404)},
                tag="schedules",
            ),
            "patch": _op(
                "Change some fields (changing kind drops the old timing fields).",
                {"200": _json(_ref("Schedule")), **_errors(400, 401, 404, 409, 415, 422)},
                tag="schedules",
                requestBody=_body(_ref("ScheduleInput")),
            ),
            "delete": _op(
                "Delete a schedule (not one from schedules/*.yaml: remove its file).",
                {"204": {"description": "Deleted."}, **_errors(401, 404, 409)},
                tag="schedules",
            ),
        },
        "/api/schedules/reload": {
            "post": _op(
                "Reload schedules/*.yaml (idempotent; per file: created, updated, unchanged, removed, errors).",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                k: {"type": "array", "items": _STR}
                                for k in ("created", "updated", "unchanged", "removed")
                            }
                            | {"errors": {"type": "object", "additionalProperties": _STR}},
                        }
                    ),
                    **_errors(401),
                },
                tag="schedules",
            )
        },
        "/api/schedules/upcoming": {
            "get": _op(
                "Airings in a window (default: the next 7 days), for a week view.",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "start": _TIME,
                                "end": _TIME,
                                "airings": {"type": "array", "items": _ref("Airing")},
                            },
                        }
                    ),
                    **_errors(400, 401),
                },
                tag="schedules",
                parameters=[
                    _query("from", "Date or ISO time (default now)."),
                    _query("to", "Date or ISO time."),
                ],
            )
        },
        "/api/log": {
            "get": _op(
                "The broadcast log with per-cluster results.",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"broadcasts": {"type": "array", "items": _ref("LogBroadcast")}},
                        }
                    ),
                    **_errors(400, 401),
                },
                tag="reports",
                parameters=_LOG_PARAMS,
            )
        },
        "/api/log.csv": {
            "get": _op(
                "The broadcast log as CSV, one line per broadcast and cluster.",
                {"200": _CSV, **_errors(400, 401)},
                tag="reports",
                parameters=[*_LOG_PARAMS, _FORMAT],
            )
        },
        "/api/reports/minutes": {
            "get": _op(
                "Minutes aired per cluster per local day.",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "from": _STR,
                                "to": _STR,
                                "rows": {"type": "array", "items": _ref("MinutesRow")},
                            },
                        }
                    ),
                    **_errors(400, 401),
                },
                tag="reports",
                parameters=_MINUTES_PARAMS,
            )
        },
        "/api/reports/minutes.csv": {
            "get": _op(
                "Minutes aired per cluster per day, as CSV.",
                {"200": _CSV, **_errors(400, 401)},
                tag="reports",
                parameters=[*_MINUTES_PARAMS, _FORMAT],
            )
        },
    }


def build_spec(max_repeat: int = 5, relay_max_s: float = 6 * 3600.0) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document; ``max_repeat`` is the configured limit of ``repeat``,
    ``relay_max_s`` the longest relay (``live.relay_max_s``; the live-audio part: ``openapi_live``)."""
    doc = _document(max_repeat)
    add_live(doc, relay_max_s=relay_max_s)
    return doc


def _document(max_repeat: int) -> dict[str, Any]:
    schemas = copy.deepcopy(SCHEMAS)
    for name in ("BroadcastRequest", "ScheduleInput"):
        schemas[name]["properties"]["repeat"]["maximum"] = max_repeat
    error = {"content": {"application/json": {"schema": _ref("Error")}}}
    responses = {
        f"E{code}": {"description": text, **error}
        for code, text in {
            400: "Malformed request or query parameter.",
            401: "Missing, invalid or revoked bearer token.",
            404: "No such resource.",
            409: "Conflicts with the current state.",
            413: "Body larger than 1 MiB.",
            415: "Body is not application/json.",
            422: "A field is not acceptable; error.field names it.",
            503: "The MQTT broker did not take the command.",
        }.items()
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Loa xã API",
            "version": _version,
            "description": "Broadcast Vietnamese announcements to commune loudspeaker clusters, manage the "
            "fleet, schedules and reports. Authenticate with `Authorization: Bearer <token>` "
            "(`broadcaster token create NAME`). Times are ISO 8601; the controller's time zone applies "
            'when no offset is given. Errors: `{"error": {"code", "message", "field"}}`.',
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "tags": [{"name": n} for n in ("broadcasts", "speakers", "zones", "schedules", "reports", "system")],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "An API token."}
            },
            "schemas": schemas,
            "responses": responses,
        },
    }

"""/api/openapi.json documents every /api route and method, with the bearer scheme."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from broadcaster.web.api import BROADCAST_FIELDS
from broadcaster.web.api.broadcasts import RELAY_FIELDS
from tests.test_api import Api

IGNORED_METHODS = {"HEAD", "OPTIONS"}
CATCH_ALL = {"api.unknown", "api.unknown_root"}


@pytest.fixture
def api(tmp_path: Path):
    a = Api(tmp_path)
    yield a
    a.engine.dispose()


def to_openapi(rule: str) -> str:
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule)


def test_every_api_route_is_documented(api: Api) -> None:
    doc = api.client.get("/api/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    registered: dict[str, set[str]] = {}
    for rule in api.app.url_map.iter_rules():
        if rule.endpoint.startswith("api.") and rule.endpoint not in CATCH_ALL:
            registered.setdefault(to_openapi(rule.rule), set()).update(set(rule.methods) - IGNORED_METHODS)
    documented = {path: {m.upper() for m in item if m != "parameters"} for path, item in doc["paths"].items()}
    assert registered == documented
    assert len(registered) >= 15


def test_document_is_self_consistent(api: Api) -> None:
    doc = api.client.get("/api/openapi.json").get_json()
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        **doc["components"]["securitySchemes"]["bearerAuth"],
        "type": "http",
        "scheme": "bearer",
    }
    assert doc["security"] == [{"bearerAuth": []}]
    assert doc["paths"]["/api/openapi.json"]["get"]["security"] == []

    refs: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                refs.add(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    for ref in refs:
        target = doc
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]  # KeyError: a dangling $ref
    for path, item in doc["paths"].items():
        params = {p["name"] for p in item.get("parameters", [])}
        assert params == set(re.findall(r"{([a-z_]+)}", path)), path
        for method, op in item.items():
            if method != "parameters":
                assert op["summary"] and op["responses"], (path, method)
    post = doc["paths"]["/api/broadcasts"]["post"]
    request = doc["components"]["schemas"]["BroadcastRequest"]
    relay = doc["components"]["schemas"]["RelayRequest"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {
        "oneOf": [
            {"$ref": "#/components/schemas/BroadcastRequest"},
            {"$ref": "#/components/schemas/RelayRequest"},
        ]
    }
    assert set(request["properties"]) == BROADCAST_FIELDS
    assert set(relay["properties"]) == RELAY_FIELDS


def test_enums_and_limits_come_from_the_code(api: Api) -> None:
    from broadcaster.broadcasts.validation import MAX_TITLE
    from broadcaster.domain import Tier
    from broadcaster.models import Approval, BroadcastState, DeliveryState
    from broadcaster.web.openapi import build_spec

    schemas = api.client.get("/api/openapi.json").get_json()["components"]["schemas"]
    assert schemas["Broadcast"]["properties"]["state"]["enum"] == [s.value for s in BroadcastState]
    assert schemas["Delivery"]["properties"]["state"]["enum"] == [s.value for s in DeliveryState]
    assert schemas["BroadcastRequest"]["properties"]["tier"]["enum"] == [t.value for t in Tier]
    assert schemas["ScheduleInput"]["properties"]["approval"]["enum"] == [a.value for a in Approval]
    assert schemas["BroadcastRequest"]["properties"]["title"]["maxLength"] == MAX_TITLE
    assert schemas["BroadcastRequest"]["properties"]["repeat"]["maximum"] == 5  # the default setting
    custom = build_spec(max_repeat=3)["components"]["schemas"]
    assert custom["BroadcastRequest"]["properties"]["repeat"]["maximum"] == 3
    assert custom["ScheduleInput"]["properties"]["repeat"]["maximum"] == 3
    assert build_spec()["components"]["schemas"]["ScheduleInput"]["properties"]["repeat"]["maximum"] == 5


def test_volume_is_documented(api: Api) -> None:
    doc = api.client.get("/api/openapi.json").get_json()
    op = doc["paths"]["/api/volume"]["post"]
    assert set(op["responses"]) >= {"200", "401", "422", "503"}
    request = doc["components"]["schemas"]["VolumeRequest"]
    assert request["required"] == ["targets", "volume"]
    assert (
        request["properties"]["volume"]["minimum"] == 0 and request["properties"]["volume"]["maximum"] == 100
    )

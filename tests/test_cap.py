"""CAP 1.2 alerts: safe parsing and rule mapping (pure), then a feed served by a local HTTP server
to a real controller (alert, duplicate, update, cancel, a non-actual alert), and the webhook."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from broadcaster.domain import Tier
from broadcaster.federation.cap.parse import CapError, parse_document
from broadcaster.federation.cap.rules import choose_info, match_rule, spoken_text, to_incoming
from broadcaster.federation.config import CapRule
from tests.fixtures_controller import wait_until
from tests.fixtures_federation import Level

DATA = Path(__file__).parent / "data" / "cap"


def sample(name: str) -> bytes:
    return (DATA / name).read_bytes()


# ------------------------------------------------------------------ parsing and rules (pure)


def test_an_alert_is_parsed_with_its_identity_and_every_info_block() -> None:
    alerts, links = parse_document(sample("alert.xml"))
    assert links == []
    (alert,) = alerts
    assert alert.key == "canhbao@kttv.gov.vn,VN-KTTV-2026-0915-001,2026-09-15T06:00:00+07:00"
    assert (alert.status, alert.msg_type) == ("Actual", "Alert")
    assert [i.language for i in alert.infos] == ["en-US", "vi-VN"]
    info = choose_info(alert, "vi")
    assert info is not None and info.event == "Bão" and info.geocodes == ("VN-27",)
    assert choose_info(alert, "en").headline == "Typhoon No. 3 makes landfall"  # type: ignore[union-attr]


def test_the_text_read_is_headline_description_instruction() -> None:
    info = choose_info(parse_document(sample("alert.xml"))[0][0], "vi")
    assert info is not None
    assert spoken_text(info) == (
        "Bão số 3 đổ bộ vào Quảng Nam. Chiều nay bão số 3 đổ bộ vào đất liền, gió mạnh cấp 12, giật cấp 15. "
        "Bà con tuyệt đối không ra biển, gia cố nhà cửa và di dời khỏi vùng trũng thấp."
    )


def test_update_and_cancel_carry_their_references() -> None:
    update = parse_document(sample("flood_update.xml"))[0][0]
    cancel = parse_document(sample("flood_cancel.xml"))[0][0]
    assert update.msg_type == "Update"
    assert update.references == ("canhbao@kttv.gov.vn,VN-KTTV-2026-0916-007,2026-09-16T08:00:00+07:00",)
    assert cancel.msg_type == "Cancel" and cancel.infos == ()


@pytest.mark.parametrize("name", ["bomb.xml", "external.xml"])
def test_entity_expansion_and_external_entities_are_refused(name: str) -> None:
    with pytest.raises(CapError, match="unsafe XML"):
        parse_document(sample(name))


@pytest.mark.parametrize(
    "data",
    [b"<alert", b"<html/>", b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.1"/>', b"x" * 2_000_001],
)
def test_malformed_or_foreign_documents_are_refused(data: bytes) -> None:
    with pytest.raises(CapError):
        parse_document(data)


def test_rules_match_on_severity_urgency_event_and_area_first_match_wins() -> None:
    info = choose_info(parse_document(sample("alert.xml"))[0][0], "vi")
    assert info is not None
    rules = [
        CapRule(event=["lũ"], tier=Tier.PRIORITY),
        CapRule(severity=["Extreme"], area=["quang nam"], tier=Tier.EMERGENCY, targets=["thon-1"]),
        CapRule(tier=Tier.NORMAL),
    ]
    assert match_rule(rules, "kttv", info) is rules[1]  # accents and case ignored in words
    assert match_rule([CapRule(source="other")], "kttv", info) is None
    assert match_rule([CapRule(urgency=["Future"])], "kttv", info) is None
    assert match_rule([CapRule(area=["VN-27"])], "kttv", info) is not None  # a geocode value
    with pytest.raises(ValueError):
        CapRule(severity=["Apocalyptic"])


def test_an_alert_becomes_an_item_by_its_rule() -> None:
    alert = parse_document(sample("flood_update.xml"))[0][0]
    info = choose_info(alert, "vi")
    assert info is not None
    rule = CapRule(event=["lũ"], tier=Tier.PRIORITY, targets=["thon-1"], approval=True, repeat=2)
    item = to_incoming(alert, "kttv", rule, info)
    assert item.origin == "cap:kttv" and item.bulletin.id == alert.key
    assert item.bulletin.tier is Tier.PRIORITY and item.bulletin.repeat == 2
    assert item.targets == ("thon-1",) and item.approval is True and item.inbox is False
    assert item.replaces == alert.references
    assert item.bulletin.title == "Cập nhật: lũ trên sông Thu Bồn lên nhanh"


# ------------------------------------------------------------------ a feed on a local HTTP server


class _Feed(BaseHTTPRequestHandler):
    documents: dict[str, bytes] = {}

    def do_GET(self) -> None:
        body = self.documents.get(self.path)
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/cap+xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _atom(*links: str) -> bytes:
    entries = "".join(f'<entry><id>{u}</id><title>t</title><link href="{u}"/></entry>' for u in links)
    return f'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>KTTV</title>{entries}</feed>'.encode()


@pytest.fixture(scope="module")
def cap_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Level, Any, str]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Feed)
    base = f"http://127.0.0.1:{server.server_port}"
    _Feed.documents = {"/feed.xml": _atom()}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    cap = {
        "sources": [
            {"name": "kttv", "url": base + "/feed.xml", "interval_s": 3600, "webhook_token": "bi-mat-123"}
        ],
        "rules": [
            {"severity": ["Extreme", "Severe"], "area": ["Quảng Nam"], "tier": "emergency"},
            {"event": ["lũ"], "tier": "priority", "targets": ["thon-1"], "approval": True},
        ],
    }
    level = Level(tmp_path_factory.mktemp("cap"), "xa", cap=cap)
    feed = level.federation.adapters[0]
    wait_until(lambda: feed.stats["polls"] >= 1, what="the first poll")
    yield level, feed, base
    level.close()
    server.shutdown()
    server.server_close()


def _cap_items(level: Level) -> list[dict[str, Any]]:
    return [i for i in level.inbox() if i["origin"] == "cap:kttv"]


def test_an_alert_from_the_feed_airs_by_its_rule_and_a_duplicate_is_ignored(cap_stack) -> None:
    from broadcaster.federation.base import Upstream

    level, feed, base = cap_stack
    assert isinstance(feed, Upstream) and feed.status()["state"] == "ok"  # one of the pluggable upstreams
    _Feed.documents.update({"/feed.xml": _atom(base + "/a/1.xml"), "/a/1.xml": sample("alert.xml")})
    assert feed.poll() == ["submitted"]
    (item,) = _cap_items(level)
    bc = level.broadcast(item["broadcast_id"])
    assert bc["tier"] == "emergency" and bc["source"] == "upstream" and bc["targets"] == ["all"]
    assert bc["text"].startswith("Bão số 3 đổ bộ vào Quảng Nam.") and "không ra biển" in bc["text"]
    wait_until(lambda: level.broadcast(item["broadcast_id"])["state"] == "done", timeout=20, what="aired")
    # The same alert again (another entry URL, or pushed): nothing new airs.
    _Feed.documents.update(
        {"/feed.xml": _atom(base + "/a/1.xml", base + "/a/1-copy.xml"), "/a/1-copy.xml": sample("alert.xml")}
    )
    feed.poll()
    assert len(_cap_items(level)) == 1


def test_update_replaces_an_item_not_yet_aired_and_cancel_cancels_by_reference(cap_stack) -> None:
    level, feed, _ = cap_stack
    headers = {"Authorization": "Bearer bi-mat-123", "Content-Type": "application/cap+xml"}
    answer = level.client.post("/federation/v1/cap/kttv", data=sample("flood.xml"), headers=headers)
    assert answer.status_code == 202 and answer.get_json()["outcomes"] == ["submitted"]
    first = next(i for i in _cap_items(level) if "VN-KTTV-2026-0916-007" in i["ref"])
    assert level.broadcast(first["broadcast_id"])["state"] == "pending_approval"  # the rule asks for approval
    answer = level.client.post("/federation/v1/cap/kttv", data=sample("flood_update.xml"), headers=headers)
    assert answer.status_code == 202
    assert level.broadcast(first["broadcast_id"])["state"] == "cancelled"
    update = next(i for i in _cap_items(level) if "VN-KTTV-2026-0916-008" in i["ref"])
    updated = level.broadcast(update["broadcast_id"])
    assert updated["state"] == "pending_approval" and updated["targets"] == ["thon-1"]
    assert updated["title"] == "Cập nhật: lũ trên sông Thu Bồn lên nhanh"
    answer = level.client.post("/federation/v1/cap/kttv", data=sample("flood_cancel.xml"), headers=headers)
    assert answer.get_json()["outcomes"] == ["cancelled"]
    assert level.broadcast(update["broadcast_id"])["state"] == "cancelled"


def test_the_webhook_refuses_a_bad_token_unsafe_xml_and_ignores_an_exercise(cap_stack) -> None:
    level, feed, _ = cap_stack
    before = len(_cap_items(level))
    bad = level.client.post(
        "/federation/v1/cap/kttv", data=sample("alert.xml"), headers={"Authorization": "Bearer x"}
    )
    assert bad.status_code == 401
    assert level.client.post("/federation/v1/cap/nope", data=b"<x/>").status_code == 404
    headers = {"Authorization": "Bearer bi-mat-123"}
    bomb = level.client.post("/federation/v1/cap/kttv", data=sample("bomb.xml"), headers=headers)
    assert bomb.status_code == 422 and "unsafe" in bomb.get_json()["error"]["message"]
    drill = level.client.post("/federation/v1/cap/kttv", data=sample("exercise.xml"), headers=headers)
    assert drill.get_json()["outcomes"] == ["ignored"]
    assert len(_cap_items(level)) == before
    assert feed.stats["malformed"] >= 1

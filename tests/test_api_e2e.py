"""The REST API on the real controller (real mosquitto, nine simulated clusters, espeak-ng): the
token is required; a broadcast posted with one plays on every cluster; the log and CSV show it."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from broadcaster.web import create_app
from broadcaster.web.tokens import create_token
from tests.fixtures_controller import E2E_NODES, E2EController, wait_until

pytestmark = pytest.mark.integration


def test_api_token_required_and_broadcast_plays_everywhere(controller: E2EController) -> None:
    app = create_app(controller.services.settings, controller.services, {"TESTING": True})
    client = app.test_client()
    body = {"text": "UBND xã thông báo: 14h chiều nay họp dân.", "targets": ["all"], "title": "Họp dân"}

    refused = client.post("/api/broadcasts", json=body)
    assert refused.status_code == 401 and refused.get_json()["error"]["code"] == "unauthorized"
    assert controller.broadcasts.list() == []  # nothing was submitted

    auth = {"Authorization": f"Bearer {create_token(controller.services.sessions, 'kich-ban')}"}
    speakers = client.get("/api/speakers", headers=auth).get_json()["speakers"]
    assert sorted(s["id"] for s in speakers) == sorted(E2E_NODES)
    assert all(s["online"] for s in speakers)
    assert {s["zone"] for s in speakers} == {"thon-1", "thon-2", "thon-3"}
    wait_until(
        lambda: all(s["health"] for s in client.get("/api/speakers", headers=auth).get_json()["speakers"]),
        timeout=15,
        what="a health report from every cluster",
    )

    created = client.post("/api/broadcasts", json=body, headers=auth)
    assert created.status_code == 201
    bid = created.get_json()["id"]

    def finished() -> dict | None:
        got = client.get(f"/api/broadcasts/{bid}", headers=auth).get_json()
        return got if got["state"] == "done" else None

    done = wait_until(finished, timeout=60, interval=0.1, what="broadcast done via the API")
    assert {d["speaker"]: d["state"] for d in done["deliveries"]} == dict.fromkeys(E2E_NODES, "done")

    today = datetime.now(ZoneInfo(controller.services.settings.timezone)).date().isoformat()
    log = client.get(f"/api/log.csv?from={today}&to={today}", headers=auth)
    rows = list(csv.DictReader(io.StringIO(log.data.decode("utf-8-sig"))))
    mine = [r for r in rows if r["Mã lượt phát"] == str(bid)]
    assert len(mine) == 9 and {r["Kết quả tại cụm loa"] for r in mine} == {"Đã phát xong"}
    assert all(r["Tiêu đề"] == "Họp dân" and float(r["Số giây đã phát"]) > 1 for r in mine)

    minutes = client.get("/api/reports/minutes", headers=auth).get_json()["rows"]
    assert sum(r["seconds"] for r in minutes) == pytest.approx(
        sum(d["seconds_played"] for d in done["deliveries"]), abs=0.5
    )


def test_api_deferred_broadcast_is_scheduled_and_cancellable(controller: E2EController) -> None:
    app = create_app(controller.services.settings, controller.services, {"TESTING": True})
    client = app.test_client()
    auth = {"Authorization": f"Bearer {create_token(controller.services.sessions, 'hen-gio')}"}
    at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    created = client.post(
        "/api/broadcasts", json={"text": "Nhắc lịch họp.", "targets": ["thon-2"], "at": at}, headers=auth
    )
    assert created.status_code == 201
    bid = created.get_json()["id"]
    assert client.get(f"/api/broadcasts/{bid}", headers=auth).get_json()["state"] == "scheduled"
    week = client.get("/api/schedules/upcoming", headers=auth).get_json()["airings"]
    assert [a["broadcast_id"] for a in week] == [bid]
    cancelled = client.delete(f"/api/broadcasts/{bid}", headers=auth)
    assert cancelled.status_code == 200 and cancelled.get_json()["state"] == "cancelled"
    assert client.delete(f"/api/broadcasts/{bid}", headers=auth).status_code == 409

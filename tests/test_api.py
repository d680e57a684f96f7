"""REST API unit tests: tokens, validation at the edge, CRUD, log and CSV (real SQLite, Flask app and
broadcast lifecycle; fake speech and fleet)."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from broadcaster.db import make_engine, make_session_factory
from broadcaster.fleet.registry import verify_mosquitto_hash
from broadcaster.models import Announcement as AnnouncementRow
from broadcaster.models import ApiToken, Broadcast, Delivery, LogEntry, Speaker, Zone
from broadcaster.web import create_app
from broadcaster.web.tokens import TokenError, create_token, revoke_token, verify_token
from tests.fixtures_controller import unit_services

# On SQLite and on PostgreSQL (tests/fixtures_postgres.py).
pytestmark = pytest.mark.usefixtures("database")

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
ROOT = Path(__file__).resolve().parent.parent


class Api:
    def __init__(self, tmp_path: Path) -> None:
        self.services = unit_services(tmp_path, commune=False, fake_fleet=True, scheduler=True)
        self.settings = self.services.settings
        self.engine = self.services.db_engine
        self.sessions = self.services.sessions
        self.manager = self.services.broadcasts
        self.speech = self.services.speech
        self.fleet = self.services.fleet
        self.scheduler = self.services.scheduler
        self.app = create_app(self.settings, self.services, {"TESTING": True})
        self.client = self.app.test_client()
        self.token = create_token(self.sessions, "tram-xa")
        self.auth = {"Authorization": f"Bearer {self.token}"}
        with self.sessions.begin() as s:
            s.add_all([Zone(id="thon-dong", name="Thôn Đông"), Zone(id="thon-tay", name="Thôn Tây")])
            s.add_all(
                [
                    Speaker(id="loa-1", name="Loa chợ", zone_id="thon-dong"),
                    Speaker(id="loa-2", name="Loa đình", zone_id="thon-tay"),
                ]
            )
        self.manager.start()

    def broadcasts(self) -> list[dict]:
        return self.manager.list()

    def stops(self) -> list[str]:
        with self.sessions() as s:
            return list(
                s.scalars(select(LogEntry.message).where(LogEntry.kind == "stop_all").order_by(LogEntry.id))
            )

    def get(self, url: str, **kw):
        return self.client.get(url, headers=self.auth, **kw)

    def post(self, url: str, json=None, **kw):
        return self.client.post(url, headers=self.auth, json=json, **kw)

    def patch(self, url: str, json=None):
        return self.client.patch(url, headers=self.auth, json=json)

    def delete(self, url: str):
        return self.client.delete(url, headers=self.auth)


@pytest.fixture
def api(tmp_path: Path):
    a = Api(tmp_path)
    yield a
    a.manager.stop()
    a.engine.dispose()


def error_of(response) -> dict:
    assert response.is_json, response.data[:200]
    return response.get_json()["error"]


# ------------------------------------------------------------------ tokens


def test_every_endpoint_needs_a_token_except_the_document(api: Api) -> None:
    assert api.client.get("/api/openapi.json").status_code == 200
    assert api.client.get("/api/health").status_code == 200
    for method, url in [
        ("get", "/api/speakers"),
        ("post", "/api/broadcasts"),
        ("get", "/api/log.csv"),
        ("delete", "/api/broadcasts/1"),
        ("post", "/api/stop"),
    ]:
        response = getattr(api.client, method)(url, json={"text": "x", "targets": ["all"]})
        assert response.status_code == 401, url
        assert error_of(response)["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    bad = api.client.get("/api/speakers", headers={"Authorization": "Bearer loa_not-a-token"})
    assert bad.status_code == 401 and error_of(bad)["code"] == "invalid_token"
    basic = api.client.get("/api/speakers", headers={"Authorization": f"Basic {api.token}"})
    assert basic.status_code == 401
    assert api.broadcasts() == [] and api.stops() == []
    assert api.get("/api/speakers").status_code == 200


def test_tokens_are_stored_as_hashes_and_can_be_revoked(api: Api) -> None:
    with api.sessions() as s:
        rows = s.scalars(select(ApiToken)).all()
    assert [r.name for r in rows] == ["tram-xa"]
    assert api.token not in rows[0].token_sha256 and len(rows[0].token_sha256) == 64
    assert verify_token(api.sessions, api.token) == "tram-xa"
    with pytest.raises(TokenError, match="already exists"):
        create_token(api.sessions, "tram-xa")
    with pytest.raises(TokenError):
        create_token(api.sessions, "có dấu cách")
    revoke_token(api.sessions, "tram-xa")
    assert api.get("/api/speakers").status_code == 401


def test_cli_token_create_prints_the_token_alone(tmp_path: Path) -> None:
    instance = tmp_path / "inst"
    result = subprocess.run(
        [sys.executable, "-m", "broadcaster", "--instance", str(instance), "token", "create", "ci"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("loa_") and len(lines[0]) > 40
    engine = make_engine(f"sqlite:///{(instance / 'broadcaster.db').resolve()}")
    try:
        assert verify_token(make_session_factory(engine), lines[0]) == "ci"
    finally:
        engine.dispose()


# ------------------------------------------------------------------ broadcasts


def test_post_broadcast_submits_an_approved_api_announcement(api: Api) -> None:
    response = api.post(
        "/api/broadcasts",
        {
            "text": "Kính thưa bà con, chiều nay cắt điện.",
            "targets": ["thon-dong"],
            "tier": "priority",
            "repeat": 2,
            "title": "Cắt điện",
        },
    )
    assert response.status_code == 201
    body = response.get_json()
    assert response.headers["Location"] == f"/api/broadcasts/{body['id']}"
    made = api.manager.get(body["id"])
    assert made["approval"] == "approved"
    assert (made["text"], made["targets"], made["tier"], made["title"]) == (
        "Kính thưa bà con, chiều nay cắt điện.",
        ["thon-dong"],
        "priority",
        "Cắt điện",
    )
    assert made["source"] == "api" and made["author"] == "api:tram-xa" and made["scheduled_at"] is None
    with api.sessions() as s:
        assert s.get(Broadcast, body["id"]).announcement.repeat == 2

    got = api.get(f"/api/broadcasts/{body['id']}")
    assert got.status_code == 200 and got.get_json()["id"] == body["id"]
    assert "deliveries" in got.get_json()


def test_at_without_offset_is_local_time(api: Api) -> None:
    local = (datetime.now(HCM) + timedelta(hours=2)).replace(second=0, microsecond=0, tzinfo=None)
    response = api.post("/api/broadcasts", {"text": "Họp dân", "targets": ["all"], "at": local.isoformat()})
    assert response.status_code == 201
    made = api.manager.get(response.get_json()["id"])
    assert datetime.fromisoformat(made["scheduled_at"]) == local.replace(tzinfo=HCM).astimezone(UTC)
    assert (
        api.post(
            "/api/broadcasts", {"text": "Họp dân", "targets": ["all"], "at": "2030-01-01T07:00:00Z"}
        ).status_code
        == 422
    )  # > 1 year ahead


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"text": "", "targets": ["all"]}, 422, "text"),
        ({"text": "   ", "targets": ["all"]}, 422, "text"),
        ({"text": 5, "targets": ["all"]}, 422, "text"),
        ({"targets": ["all"]}, 422, "text"),
        ({"text": "x" * 20_001, "targets": ["all"]}, 422, "text"),
        ({"text": "Xin chào"}, 422, "targets"),
        ({"text": "Xin chào", "targets": []}, 422, "targets"),
        ({"text": "Xin chào", "targets": ["thon-bac"]}, 422, "targets"),
        ({"text": "Xin chào", "targets": ["all"], "tier": "urgent"}, 422, "tier"),
        ({"text": "Xin chào", "targets": ["all"], "repeat": 6}, 422, "repeat"),
        ({"text": "Xin chào", "targets": ["all"], "repeat": True}, 422, "repeat"),
        ({"text": "Xin chào", "targets": ["all"], "at": "yesterday"}, 422, "at"),
        ({"text": "Xin chào", "targets": ["all"], "at": "2020-01-01T06:00:00+07:00"}, 422, "at"),
        ({"text": "Xin chào", "targets": ["all"], "engine": "siri"}, 422, "engine"),
        ({"text": "Xin chào", "targets": ["all"], "colour": "red"}, 422, "colour"),
    ],
)
def test_bad_broadcasts_get_a_clear_error_and_nothing_airs(
    api: Api, body: dict, status: int, field: str
) -> None:
    response = api.post("/api/broadcasts", body)
    assert response.status_code == status
    error = error_of(response)
    assert error["field"] == field and error["message"]
    assert api.broadcasts() == []


def test_malformed_requests(api: Api) -> None:
    not_json = api.client.post("/api/broadcasts", headers=api.auth, data="text=hi", content_type="text/plain")
    assert not_json.status_code == 415 and error_of(not_json)["code"] == "unsupported_media_type"
    broken = api.client.post(
        "/api/broadcasts", headers=api.auth, data="{not json", content_type="application/json"
    )
    assert broken.status_code == 400 and "JSON" in error_of(broken)["message"]
    array = api.post("/api/broadcasts", ["text"])
    assert array.status_code == 400
    huge = api.post("/api/broadcasts", {"text": "a" * (2 * 1024 * 1024), "targets": ["all"]})
    assert huge.status_code == 413 and error_of(huge)["code"] == "payload_too_large"
    assert api.broadcasts() == []


def test_unknown_urls_and_methods_are_json(api: Api) -> None:
    missing = api.get("/api/nothing/here")
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"
    assert api.client.get("/api/nothing").status_code == 404  # even without a token: no HTML
    wrong = api.client.put("/api/speakers", headers=api.auth, json={})
    assert wrong.status_code == 405 and error_of(wrong)["code"] == "method_not_allowed"
    assert set(wrong.headers["Allow"].split(", ")) == {"GET", "POST"}
    assert api.get("/api/broadcasts/999").status_code == 404
    assert api.get("/api/broadcasts/abc").status_code == 404


def test_cancel_and_stop(api: Api) -> None:
    created = api.post("/api/broadcasts", {"text": "Thử", "targets": ["all"]}).get_json()["id"]
    cancelled = api.delete(f"/api/broadcasts/{created}")
    assert cancelled.status_code == 200 and cancelled.get_json()["state"] == "cancelled"
    assert api.delete(f"/api/broadcasts/{created}").status_code == 409  # already finished
    assert api.delete("/api/broadcasts/4242").status_code == 404
    response = api.post("/api/stop")
    assert response.status_code == 200 and response.get_json()["stopped"] is True
    assert api.stops() == ["Dừng tất cả bởi api:tram-xa: Dừng tất cả qua API"]
    api.post("/api/stop", {"reason": "Diễn tập"})
    assert api.stops()[-1] == "Dừng tất cả bởi api:tram-xa: Diễn tập"


@pytest.mark.parametrize(
    "failure",
    [OperationalError("INSERT ...", {}, Exception("database is locked")), TimeoutError("dispatcher busy")],
)
def test_a_busy_database_or_dispatcher_is_503_not_500(
    api: Api, failure: Exception, monkeypatch: pytest.MonkeyPatch
) -> None:
    def busy(*_: object, **__: object) -> int:
        raise failure

    monkeypatch.setattr(api.manager, "submit", busy)
    response = api.post("/api/broadcasts", {"text": "Thử", "targets": ["all"]})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert error_of(response)["code"] == "unavailable"


# ------------------------------------------------------------------ speakers and zones


def test_speakers_list_has_zone_online_and_health(api: Api) -> None:
    api.fleet.live["loa-1"] = {"online": True, "health": {"volume": 80, "amplifier_on": True}}
    speakers = {s["id"]: s for s in api.get("/api/speakers").get_json()["speakers"]}
    assert speakers["loa-1"]["zone"] == "thon-dong" and speakers["loa-1"]["online"] is True
    assert speakers["loa-1"]["health"] == {"volume": 80, "amplifier_on": True}
    assert speakers["loa-2"]["online"] is False and speakers["loa-2"]["health"] is None
    only = api.get("/api/speakers?zone=thon-tay").get_json()["speakers"]
    assert [s["id"] for s in only] == ["loa-2"]


def test_speaker_crud_returns_the_password_once(api: Api) -> None:
    response = api.post("/api/speakers", {"id": "loa-3", "name": "Loa trường học", "zone": "thon-tay"})
    assert response.status_code == 201
    body = response.get_json()
    assert body["mqtt_username"] == "loa-3" and len(body["mqtt_password"]) >= 20
    with api.sessions() as s:
        stored = s.get(Speaker, "loa-3").mqtt_password_hash
    assert verify_mosquitto_hash(body["mqtt_password"], stored)
    view = api.get("/api/speakers/loa-3").get_json()
    assert "mqtt_password" not in view and view["zone"] == "thon-tay" and view["online"] is False

    assert api.post("/api/speakers", {"id": "loa-3", "name": "Trùng"}).status_code == 409
    bad_zone = api.post("/api/speakers", {"id": "loa-4", "name": "Loa", "zone": "thon-bac"})
    assert bad_zone.status_code == 422 and error_of(bad_zone)["field"] == "zone"
    assert api.post("/api/speakers", {"id": "loa/4", "name": "Loa"}).status_code == 422

    assert api.patch("/api/speakers/loa-3", {"zone": "thon-dong"}).get_json()["zone"] == "thon-dong"
    assert api.patch("/api/speakers/loa-3", {"volume": 3}).status_code == 422
    new = api.post("/api/speakers/loa-3/password").get_json()["mqtt_password"]
    assert new != body["mqtt_password"]
    assert api.delete("/api/speakers/loa-3").status_code == 204
    assert api.get("/api/speakers/loa-3").status_code == 404


def test_zone_crud(api: Api) -> None:
    created = api.post(
        "/api/zones", {"id": "thon-bac", "name": "Thôn Bắc", "quiet_start": "21:00", "quiet_end": "05:00"}
    )
    assert created.status_code == 201 and created.get_json()["name"] == "Thôn Bắc"
    assert api.post("/api/zones", {"id": "thon-bac", "name": "x"}).status_code == 409
    bad = api.patch("/api/zones/thon-bac", {"quiet_start": "9pm"})
    assert bad.status_code == 422 and error_of(bad)["field"] == "quiet_start"
    assert api.get("/api/zones/thon-dong").get_json()["speakers"] == ["loa-1"]
    busy = api.delete("/api/zones/thon-dong")
    assert busy.status_code == 409 and "cụm loa" in error_of(busy)["message"]
    assert api.delete("/api/zones/thon-bac").status_code == 204
    assert {z["id"] for z in api.get("/api/zones").get_json()["zones"]} == {"thon-dong", "thon-tay"}


# ------------------------------------------------------------------ schedules


def test_schedule_crud_and_week_view(api: Api) -> None:
    created = api.post(
        "/api/schedules",
        {
            "title": "Bản tin sáng",
            "text": "Kính thưa bà con",
            "kind": "weekdays",
            "time": "06:00",
            "targets": ["thon-dong"],
        },
    )
    assert created.status_code == 201
    schedule = created.get_json()
    assert schedule["author"] == "api:tram-xa" and schedule["approval"] == "approved"
    assert schedule["next_run"].endswith("+07:00") and "T06:00:00" in schedule["next_run"]
    sid = schedule["id"]
    assert api.patch(f"/api/schedules/{sid}", {"time": "06:30"}).get_json()["time"] == "06:30"
    bad = api.patch(f"/api/schedules/{sid}", {"time": "25:00"})
    assert bad.status_code == 422 and error_of(bad)["field"] == "time"
    week = api.get("/api/schedules/upcoming").get_json()["airings"]
    assert 4 <= len(week) <= 6 and all(a["schedule_id"] == sid for a in week)
    assert api.get("/api/schedules").get_json()["schedules"][0]["id"] == sid
    assert api.delete(f"/api/schedules/{sid}").status_code == 204
    assert api.get(f"/api/schedules/{sid}").status_code == 404
    missing = api.post("/api/schedules", {"text": "x", "kind": "daily"})
    assert missing.status_code == 422 and error_of(missing)["field"] == "time"


# ------------------------------------------------------------------ log and reports


def test_log_and_csv_exports_in_vietnamese(api: Api) -> None:
    start = datetime(2026, 11, 30, 0, 15, tzinfo=UTC)  # 07:15 local
    with api.sessions.begin() as s:
        s.add(
            Broadcast(
                announcement=AnnouncementRow(
                    title="Tiêm phòng dại", text="Sáng mai, tiêm phòng dại cho chó, mèo.", source="api"
                ),
                tier="normal",
                targets=["all"],
                state="partial",
                start_at=start,
                deliveries=[
                    Delivery(speaker_id="loa-1", state="done", started_at=start, seconds_played=95.0),
                    Delivery(speaker_id="loa-2", state="failed", reason="mất điện"),
                ],
            )
        )
    log = api.get("/api/log?from=2026-11-30&to=2026-11-30&q=phong dai").get_json()["broadcasts"]
    assert [b["title"] for b in log] == ["Tiêm phòng dại"]
    assert {d["speaker"]: d["state"] for d in log[0]["deliveries"]} == {"loa-1": "done", "loa-2": "failed"}
    assert api.get("/api/log?tier=loud").status_code == 400

    response = api.get("/api/log.csv?from=2026-11-30&to=2026-11-30")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    assert response.data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(response.data.decode("utf-8-sig"))))
    assert {r["Mã cụm loa"]: r["Kết quả tại cụm loa"] for r in rows} == {
        "loa-1": "Đã phát xong",
        "loa-2": "Không phát được",
    }
    assert rows[0]["Thời gian"] == "2026-11-30 07:15:00" and rows[0]["Tiêu đề"] == "Tiêm phòng dại"

    minutes = api.get("/api/reports/minutes?from=2026-11-30&to=2026-11-30").get_json()
    assert {r["speaker"]: r["seconds"] for r in minutes["rows"]} == {"loa-1": 95.0, "loa-2": 0.0}
    as_csv = api.get("/api/reports/minutes.csv?from=2026-11-30&to=2026-11-30")
    table = list(csv.DictReader(io.StringIO(as_csv.data.decode("utf-8-sig"))))
    assert [(r["Mã cụm loa"], r["Số phút đã phát"]) for r in table] == [("loa-1", "1.58"), ("loa-2", "0")]
    assert api.get("/api/reports/minutes?from=2026-12-01&to=2026-11-01").status_code == 400


def test_an_internal_error_is_json_and_logged(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    api.fleet.fail = "fleet exploded"
    response = api.get("/api/speakers")
    assert response.status_code == 500 and error_of(response)["code"] == "internal"
    assert "fleet exploded" not in response.get_data(as_text=True)  # no internals leak to clients
    assert any("API error on GET /api/speakers" in r.getMessage() for r in caplog.records)

"""The officer's pages of the federation (Flask test client over the real controller): the
"Tin cấp trên" inbox, the "Cấp dưới" dashboard with its CSV, unit targets in the compose form and
the API, and the OpenAPI description of unit deliveries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from broadcaster.domain import Tier
from broadcaster.federation.intake import Incoming
from broadcaster.federation.wire import Bulletin
from tests.fixtures_web import csrf, login


def _receive(web_services: Any, ref: str, tier: Tier = Tier.NORMAL, **fields: Any) -> int:
    federation = web_services.services.federation
    until = datetime.now(UTC) + timedelta(hours=2)
    bulletin = Bulletin(ref, tier, title=fields.pop("title", f"Tin {ref}"), text="Mời bà con dự họp thôn.",
                        valid_until=until, sender="UBND huyện A", **fields)  # fmt: skip
    return federation.intake.receive(Incoming("upstream", bulletin))


def _row(web_services: Any, item_id: int) -> Any:
    from broadcaster.federation.models import FedInbox

    with web_services.sessions() as session:
        return session.get(FedInbox, item_id)


def test_a_normal_bulletin_waits_in_the_inbox_and_is_declined_with_a_reason(client, web_services) -> None:
    item = _receive(web_services, "n-1", title="Họp thôn tháng Mười")
    login(client, "editor")
    page = client.get("/upstream").get_data(as_text=True)
    assert "Họp thôn tháng Mười" in page and "UBND huyện A" in page and "Phát ngay" in page
    # Rendered ahead with this commune's voice, so the officer listens before deciding.
    assert web_services.services.federation.desk.prepare_preview(web_services.speech)
    key = _row(web_services, item).data["preview_key"]
    assert f'src="/audio/{key}.mp3"' in client.get("/upstream").get_data(as_text=True)
    audio = client.get(f"/audio/{key}.mp3")
    assert audio.status_code == 200 and audio.mimetype == "audio/mpeg"
    audio.close()
    dashboard = client.get("/").get_data(as_text=True)
    assert "Tin cấp trên (1)" in dashboard  # the navigation entry with the count
    assert "1 tin cấp trên đang chờ xã quyết định" in dashboard  # the banner
    token = csrf(client, "/upstream")
    empty = client.post(
        f"/upstream/{item}/decline", data={"csrf_token": token, "reason": " "}, follow_redirects=True
    )
    assert "Vui lòng nêu lý do" in empty.get_data(as_text=True)
    assert _row(web_services, item).state == "inbox"
    client.post(f"/upstream/{item}/decline", data={"csrf_token": token, "reason": "Đã thông báo ở họp thôn"})
    row = _row(web_services, item)
    assert (row.state, row.reason, row.decided_by) == ("declined", "Đã thông báo ở họp thôn", "editor")
    again = client.post(f"/upstream/{item}/air", data={"csrf_token": token}, follow_redirects=True)
    assert "đã được xử lý" in again.get_data(as_text=True)


def test_airing_and_scheduling_from_the_inbox_go_through_the_lifecycle(client, web_services) -> None:
    now_item = _receive(web_services, "n-2", title="Tiêm phòng")
    later_item = _receive(web_services, "n-3", title="Thu gom rác")
    login(client, "approver")
    token = csrf(client, "/upstream")
    client.post(f"/upstream/{now_item}/air", data={"csrf_token": token})
    aired = _row(web_services, now_item)
    assert aired.state == "submitted" and aired.broadcast_id
    (sub,) = [s for s in web_services.submitted() if s.id == aired.broadcast_id]
    assert sub.source == "upstream" and sub.approved and sub.title == "Tiêm phòng" and sub.targets == ("all",)
    from zoneinfo import ZoneInfo

    local = (datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")) + timedelta(hours=1)).replace(second=0, microsecond=0)
    answer = client.post(
        f"/upstream/{later_item}/schedule",
        data={"csrf_token": token, "date": local.date().isoformat(), "time": local.strftime("%H:%M")},
        follow_redirects=True,
    )
    assert "Đã hẹn giờ phát" in answer.get_data(as_text=True)
    scheduled = _row(web_services, later_item)
    assert web_services.broadcasts.get(scheduled.broadcast_id)["state"] == "scheduled"


def test_an_editors_acceptance_waits_for_an_approver(client, web_services) -> None:
    item = _receive(web_services, "n-4")
    login(client, "editor")
    client.post(f"/upstream/{item}/air", data={"csrf_token": csrf(client, "/upstream")})
    row = _row(web_services, item)
    assert web_services.broadcasts.get(row.broadcast_id)["state"] == "pending_approval"


def test_only_an_approver_decides_a_priority_clash(client, web_services) -> None:
    from broadcaster.federation.models import FedInbox

    item = _receive(web_services, "p-1", Tier.PRIORITY)
    with web_services.sessions.begin() as session:  # as if it had met the commune's own item
        row = session.get(FedInbox, item)
        row.state, row.clash, row.hold_until = "held", [], datetime.now(UTC) + timedelta(minutes=2)
    login(client, "editor")
    page = client.get("/upstream").get_data(as_text=True)
    assert "trùng với tin ưu tiên của xã" in page
    assert (
        client.post(
            f"/upstream/{item}/clash", data={"csrf_token": csrf(client, "/upstream"), "choice": "local"}
        ).status_code
        == 403
    )
    client.post("/logout", data={"csrf_token": csrf(client, "/upstream")})
    login(client, "approver")
    client.post(f"/upstream/{item}/clash", data={"csrf_token": csrf(client, "/upstream"), "choice": "local"})
    row = _row(web_services, item)
    assert row.state == "submitted" and row.decided_by == "approver"


def _unit_with_reports(web_services: Any) -> None:
    from broadcaster.federation.aggregate import apply_report
    from broadcaster.federation.units import add_unit
    from broadcaster.federation.wire import Report

    add_unit(web_services.sessions, "xa-a", "Xã Phúc Hòa")
    web_services.services.federation.outbound.refresh_units()
    web_services.services.targets.invalidate()
    today = datetime.now().date().isoformat()
    with web_services.sessions.begin() as session:
        clusters = [{"id": "loa-01", "name": "Loa chợ", "online": True, "faults": []},
                    {"id": "loa-02", "name": "Loa đình", "online": False, "faults": ["offline"]}]  # fmt: skip
        apply_report(session, "xa-a", Report(1, "clusters", {"unit": "", "clusters": clusters}))
        days = [{"date": today, "speaker": "loa-01", "broadcasts": 2, "seconds": 150.0}]
        apply_report(session, "xa-a", Report(2, "minutes", {"unit": "", "days": days}))


def test_the_district_dashboard_shows_communes_clusters_and_minutes_with_csv(client, web_services) -> None:
    _unit_with_reports(web_services)
    login(client, "admin")
    page = client.get("/downstream").get_data(as_text=True)
    assert "Xã Phúc Hòa" in page and "1/2 cụm loa hoạt động" in page and "Loa đình" in page
    assert 'data-minutes="xa-a"' in page and "2,5" in page  # 150 s = 2,5 minutes
    assert "Cấp dưới" in client.get("/").get_data(as_text=True)
    csv = client.get("/downstream/minutes.csv")
    text = csv.data.decode("utf-8")
    assert csv.mimetype == "text/csv" and text.startswith(
        "\ufeffNgày,Đơn vị,Mã cụm loa,Số lượt phát,Số phút đã phát"
    )
    assert ",xa-a,loa-01,2,2.5" in text
    assert client.get("/downstream?from=2026-01-10&to=2026-01-01").status_code == 400


def test_unit_targets_from_the_compose_form_and_the_api(client, web_services) -> None:
    from broadcaster.web.tokens import create_token

    _unit_with_reports(web_services)
    login(client, "approver")
    form = client.get("/compose").get_data(as_text=True)
    assert 'value="unit:*"' in form and 'value="unit:xa-a"' in form
    token = csrf(client, "/compose")
    client.post("/compose", data={"csrf_token": token, "text": "Bão số 3 đổ bộ.", "tier": "emergency",
                                  "targets": ["all", "unit:*"], "repeat": "1", "action": "now"})  # fmt: skip
    last = web_services.submitted()[-1]
    assert last.targets == ("all", "unit:*") and last.tier is Tier.EMERGENCY
    api_token = create_token(web_services.sessions, "district-ops")
    headers = {"Authorization": f"Bearer {api_token}"}
    ok = client.post(
        "/api/broadcasts", json={"text": "Họp giao ban.", "targets": ["unit:xa-a"]}, headers=headers
    )
    assert ok.status_code == 201
    view = client.get(f"/api/broadcasts/{ok.get_json()['id']}", headers=headers).get_json()
    assert view["targets"] == ["unit:xa-a"] and view["deliveries"] == []
    bad = client.post("/api/broadcasts", json={"text": "Họp.", "targets": ["unit:xa-z"]}, headers=headers)
    assert (
        bad.status_code == 422 and "Không có đơn vị cấp dưới: unit:xa-z" in bad.get_json()["error"]["message"]
    )
    doc = client.get("/api/openapi.json").get_json()
    unit = doc["components"]["schemas"]["UnitDelivery"]
    assert {"unit", "speaker", "state"} <= set(unit["required"])
    assert doc["components"]["schemas"]["Broadcast"]["properties"]["unit_deliveries"]["items"] == {
        "$ref": "#/components/schemas/UnitDelivery"
    }


def test_an_emergency_from_above_airs_at_once_and_the_officer_is_told_until_acknowledged(
    client, web_services
) -> None:
    item = _receive(web_services, "e-1", Tier.EMERGENCY, title="Cháy rừng")
    row = _row(web_services, item)
    assert row.state == "submitted"
    aired = web_services.broadcasts.get(row.broadcast_id)
    assert aired["tier"] == "emergency" and aired["approval"] == "approved" and aired["targets"] == ["all"]
    login(client, "editor")
    assert "Tin KHẨN CẤP từ cấp trên" in client.get("/").get_data(as_text=True)
    client.post(f"/upstream/{item}/seen", data={"csrf_token": csrf(client, "/upstream")})
    assert "Tin KHẨN CẤP từ cấp trên" not in client.get("/").get_data(as_text=True)

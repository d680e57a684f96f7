"""The live-audio pages through Flask's test client: the channels admin page (admins only, the
hub's Vietnamese errors for a bad address), the «Tiếp sóng» form (now, once, every week, editing a
relay schedule), the navigation, and the dashboard's source alerts. The real controller of
tests/fixtures_web (SQLite, the broadcast lifecycle, the scheduler service, a fake fleet)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from broadcaster.models import Alert, Broadcast
from tests.fixtures_web import csrf, login

# Nothing listens there: a relay of it fails at once (these tests look at what the pages did).
URL = "http://127.0.0.1:9/vov1.mp3"


def post(client: Any, path: str, data: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    return client.post(path, data={"csrf_token": csrf(client, "/"), **(data or {})}, **kwargs)


def _channels(web: Any) -> list[dict[str, Any]]:
    return web.broadcasts.channels.list()


def test_only_admins_manage_channels_and_see_them_in_the_menu(client: Any, web_services: Any) -> None:
    for name in ("editor", "approver"):
        login(client, name)
        assert client.get("/channels").status_code == 403
        assert post(client, "/channels", {"name": "VOV1", "url": URL}).status_code == 403
        page = client.get("/").get_data(as_text=True)
        assert "Kênh tiếp sóng" not in page
        assert ("Phát trực tiếp" in page) == (name == "approver")  # live speech: approvers and admins
        client.post("/logout", data={"csrf_token": csrf(client, "/")})
    assert _channels(web_services) == []
    login(client, "admin")
    page = client.get("/").get_data(as_text=True)
    assert 'href="/channels"' in page and "Kênh tiếp sóng" in page and "Phát trực tiếp" in page


def test_an_admin_adds_edits_turns_off_and_deletes_a_channel(client: Any, web_services: Any) -> None:
    login(client, "admin")
    bad = post(client, "/channels", {"name": "VOV1", "url": "ftp://vov.vn/vov1"})
    assert bad.status_code == 400
    text = bad.get_data(as_text=True)
    assert "Địa chỉ nguồn phát phải bắt đầu bằng http:// hoặc https://" in text
    assert 'value="ftp://vov.vn/vov1"' in text  # what was typed is kept
    no_name = post(client, "/channels", {"name": " ", "url": URL})
    assert "Hãy đặt tên kênh" in no_name.get_data(as_text=True)
    assert post(client, "/channels", {"name": "VOV1", "url": URL}).status_code == 302
    twice = post(client, "/channels", {"name": "VOV1", "url": URL})
    assert twice.status_code == 400 and "Đã có kênh tên «VOV1»." in twice.get_data(as_text=True)
    (channel,) = _channels(web_services)
    assert (channel["name"], channel["url"], channel["enabled"], channel["created_by"]) == (
        "VOV1",
        URL,
        True,
        "admin",
    )
    cid = channel["id"]
    assert "VOV1" in client.get(f"/channels/{cid}").get_data(as_text=True)
    post(client, f"/channels/{cid}", {"name": "VOV1 – Thời sự", "url": URL + "?q=1"})
    assert _channels(web_services)[0]["name"] == "VOV1 – Thời sự"
    post(client, f"/channels/{cid}/enabled", {"enabled": "0"})
    assert _channels(web_services)[0]["enabled"] is False
    assert "Đang tắt" in client.get("/channels").get_data(as_text=True)
    post(client, f"/channels/{cid}/enabled", {"enabled": "1"})
    tried = post(client, f"/channels/{cid}/test", follow_redirects=True).get_data(as_text=True)
    assert "Không kết nối được tới nguồn phát" in tried
    # Used by a schedule: refused with the reason; once the schedule is gone, deleted.
    sid = web_services.scheduler.create_schedule(
        {"channel": cid, "duration_s": 600, "kind": "daily", "time": "06:00"}
    )
    refused = post(client, f"/channels/{cid}/delete", follow_redirects=True).get_data(as_text=True)
    assert "Không xóa được" in refused and "đang dùng trong lịch phát" in refused
    web_services.scheduler.delete_schedule(sid)
    post(client, f"/channels/{cid}/delete")
    assert _channels(web_services) == []


def test_relay_now_from_the_form_is_a_relay_item(client: Any, web_services: Any) -> None:
    cid = web_services.broadcasts.channels.create("Đài huyện", URL)
    login(client, "approver")
    page = client.get("/relay").get_data(as_text=True)
    assert "Đài huyện" in page and "Tiếp sóng trong (phút)" in page
    answer = post(client, "/relay", {"channel": str(cid), "duration": "20", "tier": "priority",
                                     "targets": ["thon-1"], "when": "now"})  # fmt: skip
    assert answer.status_code == 302, answer.get_data(as_text=True)
    with web_services.sessions() as session:
        (bc,) = session.scalars(select(Broadcast)).all()
        assert (bc.kind, bc.channel_id, bc.source_name, bc.tier, bc.targets) == (
            "relay", cid, "Đài huyện", "priority", ["thon-1"],
        )  # fmt: skip
        assert round((bc.end_at - bc.created).total_seconds()) in (1200, 1201)
        assert bc.announcement.approval == "approved"


def test_an_editors_weekly_relay_is_a_schedule_waiting_for_approval(client: Any, web_services: Any) -> None:
    cid = web_services.broadcasts.channels.create("VOV1", URL)
    login(client, "editor")
    assert 'href="/relay"' in client.get("/compose").get_data(as_text=True)
    missing = post(client, "/relay", {"duration": "abc", "when": "weekly", "targets": ["all"]})
    text = missing.get_data(as_text=True)
    assert missing.status_code == 400
    assert "Vui lòng chọn kênh tiếp sóng." in text and "Vui lòng nhập thời lượng tiếp sóng" in text
    assert "Vui lòng chọn ít nhất một ngày trong tuần" in text
    too_short = post(
        client, "/relay", {"channel": str(cid), "duration": "0.1", "when": "now", "targets": ["all"]}
    )
    assert too_short.status_code == 400 and "Thời lượng tiếp sóng từ 10 giây" in too_short.get_data(
        as_text=True
    )
    made = post(client, "/relay", {"channel": str(cid), "duration": "30", "when": "weekly", "targets": ["all"],
                                   "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "weekly_time": "06:00"})  # fmt: skip
    assert made.status_code == 302, made.get_data(as_text=True)
    (item,) = web_services.scheduler.list_schedules()
    assert (item["channel"], item["duration_s"], item["kind"], item["time"]) == (cid, 1800, "daily", "06:00")
    assert item["approval"] == "pending" and item["author"] == "editor"
    week = client.get("/schedule").get_data(as_text=True)
    assert "tiếp sóng «VOV1»" in week and f"/relay/schedule/{item['id']}" in week
    # The bulletin form sends a relay schedule to its own form.
    assert client.get(f"/schedule/{item['id']}").headers["Location"].endswith(f"/relay/schedule/{item['id']}")
    edit = client.get(f"/relay/schedule/{item['id']}").get_data(as_text=True)
    assert 'value="30"' in edit
    saved = post(client, f"/relay/schedule/{item['id']}", {"channel": str(cid), "duration": "45", "tier": "normal",
                                                           "targets": ["all"], "days": ["mon"], "weekly_time": "06:30",
                                                           "enabled": "on"})  # fmt: skip
    assert saved.status_code == 302, saved.get_data(as_text=True)
    item = web_services.scheduler.get_schedule(item["id"])
    assert (item["duration_s"], item["days"], item["time"], item["kind"]) == (
        2700,
        ["mon"],
        "06:30",
        "weekly",
    )
    # An editor may not relay at a higher tier.
    assert post(client, "/relay", {"channel": str(cid), "duration": "30", "tier": "emergency", "when": "now",
                                   "targets": ["all"]}).status_code == 403  # fmt: skip


def test_the_dashboard_shows_a_stalled_relay_source(client: Any, web_services: Any) -> None:
    alerts = web_services.services.source_alerts
    alerts.stalled("ch1", "VOV1", "không có âm thanh 5 giây")
    login(client, "editor")
    page = client.get("/").get_data(as_text=True)
    assert "Nguồn tiếp sóng «VOV1» mất tín hiệu (không có âm thanh 5 giây); đang kết nối lại" in page
    alerts.resumed("ch1", "VOV1")
    assert "mất tín hiệu" not in client.get("/").get_data(as_text=True)
    with web_services.sessions() as session:
        rows = session.scalars(select(Alert).where(Alert.speaker_id.is_(None))).all()
        assert [(a.kind, a.cleared_at is not None) for a in rows] == [("source_stalled", True)]


def test_a_daily_relay_from_the_form(client: Any, web_services: Any) -> None:
    cid = web_services.broadcasts.channels.create("Đài tỉnh", URL)
    login(client, "approver")
    made = post(client, "/relay", {"channel": str(cid), "duration": "15", "when": "daily", "weekly_time": "18:00",
                                   "targets": ["thon-2"], "tier": "priority"})  # fmt: skip
    assert made.status_code == 302, made.get_data(as_text=True)
    (item,) = web_services.scheduler.list_schedules()
    assert (item["kind"], item["time"], item["duration_s"], item["tier"]) == (
        "daily",
        "18:00",
        900,
        "priority",
    )
    assert item["approval"] == "approved" and item["targets"] == ["thon-2"]

"""The officer UI through Flask's test client: login, rate limit, CSRF, cookies, roles, approval,
compose validation and scheduling, preview (real espeak-ng render), lexicon, admin pages, log.

Services: a real SQLite file, the real speech service (espeak-ng) and scheduler service, and the
web fakes of tests/fakes.py for the broadcast manager, the fleet and the normalizer."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from broadcaster.domain import Tier
from broadcaster.models import Broadcast, Delivery, LexiconEntry, Setting, User
from broadcaster.web.auth import CSRF_MESSAGE, LIMITER_KEY
from tests.fixtures_controller import wait_until
from tests.fixtures_web import PASSWORD, csrf, login

TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def post(client: Any, path: str, data: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    """POST with the session's CSRF token, as the page's form would."""
    return client.post(path, data={"csrf_token": csrf(client, "/"), **(data or {})}, **kwargs)


def compose_form(**fields: Any) -> dict[str, Any]:
    form = {"title": "Họp thôn", "text": "UBND xã mời bà con họp.", "tier": "normal", "targets": ["all"],
            "repeat": "1", "engine": "", "voice": "", "action": "now", "when": "once"}  # fmt: skip
    form.update(fields)
    return form


def wait_job(client: Any, url: str, deadline_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        status = client.get(url, headers={"Accept": "application/json"}).get_json()
        if status["state"] != "running":
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {url} did not finish")


# --- login, logout, cookies, headers ---------------------------------------------------------


def test_pages_need_login(client: Any) -> None:
    page = client.get("/compose")
    assert page.status_code == 302 and "/login?next=/compose" in page.headers["Location"]
    api_like = client.get("/dashboard.json", headers={"Accept": "application/json"})
    assert api_like.status_code == 401 and api_like.get_json()["error"] == "Vui lòng đăng nhập."


def test_login_shows_name_and_logout_ends_session(client: Any) -> None:
    assert login(client, "editor").headers["Location"] == "/"
    page = client.get("/").get_data(as_text=True)
    assert "Nguyễn Văn Biên" in page and "(Biên tập)" in page
    out = post(client, "/logout")
    assert out.status_code == 302 and out.headers["Location"] == "/login"
    assert client.get("/").status_code == 302


def test_login_redirects_only_inside_the_site(client: Any) -> None:
    token = csrf(client)
    evil = client.post("/login?next=//evil.example/x", data={"username": "admin", "password": PASSWORD,
                                                             "csrf_token": token})  # fmt: skip
    assert evil.headers["Location"] == "/"
    post(client, "/logout")
    token = csrf(client)
    good = client.post(
        "/login?next=/log", data={"username": "admin", "password": PASSWORD, "csrf_token": token}
    )
    assert good.headers["Location"] == "/log"


def test_wrong_password_is_refused_in_vietnamese(client: Any) -> None:
    reply = login(client, "editor", "sai-mat-khau")
    assert reply.status_code == 401
    assert "Tên đăng nhập hoặc mật khẩu không đúng." in reply.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_passwords_are_stored_hashed(web_services: Any) -> None:
    with web_services.sessions() as session:
        hashes = list(session.scalars(select(User.password_hash)))
    assert len(hashes) == 3
    assert all(PASSWORD not in h and h.startswith(("scrypt:", "pbkdf2:")) for h in hashes)


def test_login_is_rate_limited_per_user_and_address(client: Any, web_app: Any) -> None:
    clock = [1000.0]
    web_app.extensions[LIMITER_KEY].clock = lambda: clock[0]
    for _ in range(4):
        assert login(client, "editor", "sai").status_code == 401
    fifth = login(client, "editor", "sai")
    assert fifth.status_code == 429
    assert "tạm khóa" in fifth.get_data(as_text=True) and "5 phút" in fifth.get_data(as_text=True)
    # Locked even with the right password, from this address...
    locked = login(client, "editor")
    assert locked.status_code == 429 and client.get("/").status_code == 302
    # ...but not from another one, and not for another user.
    other = web_app.test_client()
    token = csrf(other)
    elsewhere = other.post("/login", data={"username": "editor", "password": PASSWORD, "csrf_token": token},
                           environ_base={"REMOTE_ADDR": "10.9.9.9"})  # fmt: skip
    assert elsewhere.status_code == 302
    assert login(client, "approver").status_code == 302
    post(client, "/logout")
    clock[0] += 301  # the lock lasts login_lock_s = 300 s
    assert login(client, "editor").status_code == 302


def test_session_cookie_flags(web_app: Any, web_services: Any) -> None:
    plain = web_app.test_client()
    cookie = login(plain, "admin").headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    secure = web_app.test_client()
    token = csrf(secure)
    reply = secure.post("/login", data={"username": "admin", "password": PASSWORD, "csrf_token": token},
                        base_url="https://loa.example")  # fmt: skip
    assert "Secure" in reply.headers["Set-Cookie"]


def test_pages_carry_a_strict_content_security_policy(client: Any) -> None:
    login(client, "admin")
    for path in ("/", "/compose", "/schedule", "/log", "/lexicon", "/speakers", "/users", "/settings",
                 "/approvals", "/account"):  # fmt: skip
        reply = client.get(path)
        assert reply.status_code == 200, path
        assert "script-src 'self'" in reply.headers["Content-Security-Policy"]
        assert reply.headers["X-Frame-Options"] == "DENY"
        html = reply.get_data(as_text=True)
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), f"inline script on {path}"
        assert "https://" not in html and "http://" not in html, f"external asset on {path}"


def test_static_assets_are_served_locally(client: Any) -> None:
    for name, kind in (("app.css", "text/css"), ("app.js", "javascript"), ("compose.js", "javascript"),
                       ("dashboard.js", "javascript"), ("icon.svg", "image/svg+xml")):  # fmt: skip
        with client.get(f"/static/{name}") as reply:
            assert reply.status_code == 200 and kind in reply.headers["Content-Type"]


# --- CSRF --------------------------------------------------------------------------------------


def test_form_without_csrf_token_is_rejected_and_nothing_saved(client: Any, web_services: Any) -> None:
    login(client, "approver")  # an approver's lexicon change applies at once (an editor's waits)
    for data, headers in (({}, {}), ({"csrf_token": "forged"}, {}), ({}, {"X-CSRFToken": "forged"})):
        reply = client.post(
            "/lexicon", data={"term": "HTX", "reading": "hợp tác xã", **data}, headers=headers
        )
        assert reply.status_code == 400
        assert CSRF_MESSAGE in reply.get_data(as_text=True)
    with web_services.sessions() as session:
        assert session.scalar(select(func.count(LexiconEntry.id))) == 0
    ok = client.post("/lexicon", data={"term": "HTX", "reading": "hợp tác xã"},
                     headers={"X-CSRFToken": csrf(client, "/")})  # fmt: skip
    assert ok.status_code == 302
    with web_services.sessions() as session:
        assert session.scalar(select(LexiconEntry.reading)) == "hợp tác xã"


def test_form_sent_after_logout_goes_to_login(client: Any, web_services: Any) -> None:
    login(client, "editor")
    token = csrf(client, "/")
    post(client, "/logout")
    reply = client.post("/lexicon", data={"term": "A", "reading": "a", "csrf_token": token},
                        headers={"Referer": "http://localhost/lexicon"})  # fmt: skip
    assert reply.status_code == 302 and reply.headers["Location"] == "/login?next=/lexicon"
    assert "Phiên làm việc đã hết hạn" in client.get("/login").get_data(as_text=True)
    with web_services.sessions() as session:
        assert session.scalar(select(func.count(LexiconEntry.id))) == 0


def test_login_form_needs_csrf_too(client: Any) -> None:
    client.get("/login")
    reply = client.post("/login", data={"username": "admin", "password": PASSWORD})
    assert reply.status_code == 400 and client.get("/").status_code == 302


def test_stop_all_needs_csrf(client: Any, web_services: Any) -> None:
    login(client, "approver")
    assert client.post("/stop-all").status_code == 400
    assert web_services.log("stop_all") == []
    assert post(client, "/stop-all").status_code == 302
    assert web_services.log("stop_all")[0].startswith("Dừng tất cả bởi approver")


# --- roles -------------------------------------------------------------------------------------


def test_editor_cannot_broadcast_emergency(client: Any, web_services: Any) -> None:
    login(client, "editor")
    for tier in ("emergency", "priority"):
        reply = post(client, "/compose", compose_form(tier=tier))
        assert reply.status_code == 403
        assert "Biên tập viên chỉ được soạn tin thông thường" in reply.get_data(as_text=True)
    assert web_services.submitted() == []


def test_admin_pages_are_for_admins_only(client: Any, web_services: Any) -> None:
    login(client, "editor")
    for path in ("/users", "/speakers", "/settings"):
        reply = client.get(path)
        assert reply.status_code == 403 and "không có quyền" in reply.get_data(as_text=True)
    assert (
        post(client, "/users", {"username": "x2", "password": "12345678", "role": "admin"}).status_code == 403
    )
    html = client.get("/").get_data(as_text=True)
    assert "Người dùng" not in html and "Loa và khu vực" not in html


def test_editor_item_waits_for_approval_then_airs(client: Any, web_app: Any, web_services: Any) -> None:
    login(client, "editor")
    page = client.get("/compose").get_data(as_text=True)
    assert "Gửi duyệt để phát ngay" in page
    reply = post(client, "/compose", compose_form(title="Tiêm phòng"))
    assert reply.status_code == 302 and reply.headers["Location"] == "/approvals"
    item = web_services.submitted()[0]
    assert item.approved is False and item.author == "editor" and item.tier == Tier.NORMAL
    broadcast_id = item.id
    pending = client.get("/approvals").get_data(as_text=True)
    assert "Tiêm phòng" in pending and "Duyệt và phát" not in pending  # an editor cannot approve
    assert post(client, f"/approvals/{broadcast_id}/approve").status_code == 403

    approver = web_app.test_client()
    login(approver, "approver")
    assert "Chờ duyệt (1)" in approver.get("/").get_data(as_text=True)
    html = approver.get("/approvals").get_data(as_text=True)
    assert "Tiêm phòng" in html and "Duyệt và phát" in html
    assert post(approver, f"/approvals/{broadcast_id}/approve").status_code == 302
    assert web_services.broadcasts.get(broadcast_id)["approval"] == "approved"
    # Rendered, then queued for its clusters (none is online in this test).
    wait_until(lambda: web_services.broadcasts.get(broadcast_id)["state"] == "sending", what="queued")
    assert "Không có tin nào đang chờ duyệt." in approver.get("/approvals").get_data(as_text=True)


def test_rejection_keeps_item_off_air(client: Any, web_services: Any) -> None:
    login(client, "editor")
    post(client, "/compose", compose_form())
    broadcast_id = web_services.submitted()[0].id
    post(client, "/logout")
    login(client, "approver")
    post(client, f"/approvals/{broadcast_id}/reject", {"reason": "Sai ngày"})
    assert web_services.broadcasts.get(broadcast_id)["state"] == "cancelled"


def test_approval_can_be_turned_off_by_admin(client: Any, web_app: Any, web_services: Any) -> None:
    login(client, "admin")
    assert post(client, "/settings", {}).status_code == 302  # checkbox unticked
    with web_services.sessions() as session:
        assert session.get(Setting, "approval_required").value is False
    editor = web_app.test_client()
    login(editor, "editor")
    assert "Phát ngay" in editor.get("/compose").get_data(as_text=True)
    post(editor, "/compose", compose_form())
    assert web_services.submitted()[0].approved is True


def test_approver_broadcasts_emergency_at_once(client: Any, web_services: Any) -> None:
    login(client, "approver")
    reply = post(client, "/compose", compose_form(tier="emergency", targets=["thon-1", "loa-1a", "loa-2a"]))
    assert reply.status_code == 302 and reply.headers["Location"].startswith("/?b=")
    item = web_services.submitted()[0]
    assert item.approved is True and item.tier == Tier.EMERGENCY and item.at is None
    assert item.targets == ("thon-1", "loa-2a")  # loa-1a is in thôn 1 already
    page = client.get("/").get_data(as_text=True)
    # Who hears it, in words; and sent, not "started", while it only waits to be played.
    assert "Đã gửi «Họp thôn» tới 3 cụm loa ở Thôn 1 và Loa nhà văn hóa" in page
    assert "Đã bắt đầu phát" not in page


# --- compose validation and scheduling -----------------------------------------------------------


def test_errors_are_shown_next_to_fields_and_text_is_kept(client: Any, web_services: Any) -> None:
    login(client, "approver")
    text = "Thông báo: sáng mai <b>cắt điện</b> từ 7 giờ."
    reply = post(client, "/compose", compose_form(text=text, targets=[], repeat="9"))
    html = reply.get_data(as_text=True)
    assert reply.status_code == 400
    assert "Vui lòng chọn nơi phát" in html and 'id="err-targets"' in html
    assert "Số lần phát từ 1 đến 5." in html and 'aria-invalid="true"' in html
    assert "Thông báo: sáng mai &lt;b&gt;cắt điện&lt;/b&gt; từ 7 giờ." in html  # kept, escaped
    assert web_services.submitted() == []


def test_unknown_target_is_refused(client: Any, web_services: Any) -> None:
    login(client, "approver")
    reply = post(client, "/compose", compose_form(targets=["thon-99"]))
    assert reply.status_code == 400 and "thon-99" in reply.get_data(as_text=True)
    assert web_services.submitted() == []


def test_one_off_schedule_submits_with_local_time(client: Any, web_services: Any) -> None:
    login(client, "approver")
    day = (datetime.now(TZ) + timedelta(days=2)).date()
    reply = post(
        client, "/compose", compose_form(action="schedule", when="once", date=day.isoformat(), time="06:30")
    )
    assert reply.status_code == 302 and reply.headers["Location"].startswith("/schedule")
    item = web_services.submitted()[0]
    assert item.at == datetime(day.year, day.month, day.day, 6, 30, tzinfo=TZ).astimezone(UTC)


def test_past_time_is_refused(client: Any, web_services: Any) -> None:
    login(client, "approver")
    yesterday = (datetime.now(TZ) - timedelta(days=1)).date().isoformat()
    reply = post(
        client, "/compose", compose_form(action="schedule", when="once", date=yesterday, time="06:30")
    )
    assert reply.status_code == 400 and "Thời điểm phát phải ở tương lai." in reply.get_data(as_text=True)
    assert web_services.submitted() == []


def test_weekly_schedule_in_week_view_edit_and_delete(client: Any, web_services: Any) -> None:
    login(client, "approver")
    reply = post(client, "/compose", compose_form(
        title="Bản tin sáng", action="schedule", when="weekly", days=["mon", "wed", "fri"], weekly_time="06:00",
        valid_from=datetime.now(TZ).date().isoformat()))  # fmt: skip
    assert reply.status_code == 302, reply.get_data(as_text=True)
    (item,) = web_services.scheduler.list_schedules()
    assert item["days"] == ["mon", "wed", "fri"] and item["time"] == "06:00" and item["kind"] == "weekly"
    next_week = (datetime.now(TZ).date() + timedelta(days=7)).isoformat()
    week = client.get(f"/schedule?start={next_week}").get_data(as_text=True)
    assert week.count("Bản tin sáng") == 3 + 1  # three airings plus the list of schedules
    assert "06:00" in week and "Thứ Hai, Thứ Tư, Thứ Sáu lúc 06:00" in week

    edit = client.get(f"/schedule/{item['id']}").get_data(as_text=True)
    assert 'value="06:00"' in edit and "Bản tin sáng" in edit
    form = compose_form(title="Bản tin sáng", days=["tue"], weekly_time="07:15", enabled="on")
    assert post(client, f"/schedule/{item['id']}", form).status_code == 302
    changed = web_services.scheduler.get_schedule(item["id"])
    assert changed["days"] == ["tue"] and changed["time"] == "07:15"
    assert post(client, f"/schedule/{item['id']}/delete").status_code == 302
    assert web_services.scheduler.list_schedules() == []


def test_editor_weekly_schedule_needs_approval(client: Any, web_app: Any, web_services: Any) -> None:
    login(client, "editor")
    post(
        client, "/compose", compose_form(action="schedule", when="weekly", days=["sun"], weekly_time="08:00")
    )
    (item,) = web_services.scheduler.list_schedules()
    assert item["approval"] == "pending"
    approver = web_app.test_client()
    login(approver, "approver")
    assert "Duyệt lịch" in approver.get("/approvals").get_data(as_text=True)
    post(approver, f"/approvals/schedule/{item['id']}/approve")
    assert web_services.scheduler.get_schedule(item["id"])["approval"] == "approved"


# --- preview, audio, lexicon -------------------------------------------------------------------


def test_preview_highlights_changes_and_renders_audio(client: Any, web_services: Any) -> None:
    login(client, "editor")
    reply = post(client, "/compose/preview", {"text": "UBND xã thông báo.", "repeat": "1"})
    data = reply.get_json()
    assert reply.status_code == 200
    assert data["normalized_text"] == "ủy ban nhân dân xã thông báo."
    # The preview keeps the officer's capitals; the rewritten piece carries its original.
    assert {"text": "Ủy ban nhân dân", "original": "UBND", "note": None} in data["segments"]
    assert data["changed"] == 1
    done = wait_job(client, data["status_url"])
    assert done["state"] == "done", done
    assert done["engine"] == "espeak-ng" and done["duration_s"] > 0.5
    with client.get(done["audio_url"]) as audio:
        assert audio.status_code == 200 and audio.mimetype == "audio/mpeg" and len(audio.data) > 1000
    # Another officer cannot read this job.
    other = client.application.test_client()
    login(other, "approver")
    assert other.get(data["status_url"], headers={"Accept": "application/json"}).status_code == 404


def test_lexicon_entry_applies_at_next_preview(client: Any, web_services: Any) -> None:
    login(client, "approver")  # an approver's lexicon change applies at once (an editor's waits)
    before = post(client, "/compose/preview", {"text": "Chợ Đình họp", "repeat": "1"}).get_json()
    assert before["changed"] == 0 and before["normalized_text"] == "chợ đình họp"
    assert post(client, "/lexicon", {"term": "Chợ Đình", "reading": "chợ đình làng"}).status_code == 302
    after = post(client, "/compose/preview", {"text": "Chợ Đình họp", "repeat": "1"}).get_json()
    assert after["normalized_text"] == "chợ đình làng họp"
    assert any(s["original"] == "Chợ Đình" and s["text"] == "Chợ đình làng" for s in after["segments"])
    wait_job(client, after["status_url"])
    wait_job(client, before["status_url"])


def test_lexicon_edit_delete_and_errors(client: Any, web_services: Any) -> None:
    login(client, "approver")  # an approver's lexicon change applies at once (an editor's waits)
    bad = post(client, "/lexicon", {"term": "", "reading": "ủy ban"})
    assert bad.status_code == 400 and "Vui lòng nhập từ hoặc chữ viết tắt." in bad.get_data(as_text=True)
    assert 'value="ủy ban"' in bad.get_data(as_text=True)
    post(client, "/lexicon", {"term": "TDP", "reading": "tổ dân phố"})
    with web_services.sessions() as session:
        entry = session.scalar(select(LexiconEntry))
    post(client, "/lexicon", {"id": str(entry.id), "term": "TDP", "reading": "tổ dân phố số"})
    with web_services.sessions() as session:
        assert session.get(LexiconEntry, entry.id).reading == "tổ dân phố số"
    post(client, f"/lexicon/{entry.id}/delete")
    assert "Chưa có mục nào" in client.get("/lexicon").get_data(as_text=True)


def test_preview_of_empty_text_says_what_to_do(client: Any) -> None:
    login(client, "editor")
    reply = post(client, "/compose/preview", {"text": "  ", "repeat": "1"})
    assert reply.status_code == 400
    assert reply.get_json()["errors"]["text"] == "Vui lòng nhập nội dung để xem trước."


def test_audio_route_checks_the_key(client: Any) -> None:
    login(client, "editor")
    assert client.get("/audio/" + "0" * 64 + ".mp3").status_code == 404
    assert client.get("/audio/..%2Fsecret_key.mp3").status_code == 404


# --- escaping ------------------------------------------------------------------------------------


def test_user_text_is_escaped_everywhere(client: Any, web_services: Any) -> None:
    login(client, "editor")
    evil = '<script>alert("xss")</script><img src=x onerror=alert(1)>'
    post(client, "/compose", compose_form(title=evil, text=evil))
    post(client, "/lexicon", {"term": "<b>X</b>", "reading": evil})
    broadcast_id = web_services.submitted()[0].id
    for path in ("/approvals", f"/broadcasts/{broadcast_id}", "/log", "/lexicon", "/"):
        html = client.get(path).get_data(as_text=True)
        assert "<script>alert" not in html and "<img src=x" not in html, path
    assert "&lt;script&gt;alert(&#34;xss&#34;)&lt;/script&gt;" in client.get("/approvals").get_data(
        as_text=True
    )
    live = client.get("/dashboard.json").get_json()["html"]
    assert "<script>alert" not in live and "&lt;script&gt;" in live


# --- dashboard ------------------------------------------------------------------------------------


def test_dashboard_shows_live_cluster_state(client: Any, web_services: Any) -> None:
    now = datetime.now(UTC).isoformat()
    web_services.fleet.live.update({
        "loa-1a": {"online": True, "playing": {"broadcast_id": 7, "title": "Tin họp"}, "volume": 70,
                   "amplifier_on": True, "health_at": now},
        "loa-1b": {"online": True, "volume": 55, "amplifier_on": False,
                   "alerts": [{"kind": "amplifier", "message": "Bộ khuếch đại tắt"}]},
    })  # fmt: skip
    login(client, "editor")
    html = client.get("/").get_data(as_text=True)
    assert "Thôn 1" in html and "Thôn 2" in html
    data = client.get("/dashboard.json").get_json()
    assert data["online"] == 2 and data["total"] == 3 and data["playing"] == 1 and data["alerts"] == 1
    live = data["html"]
    card = live[live.index('data-speaker="loa-1a"') :]
    card = card[: card.index("</article>")]
    assert "Đang phát: Tin họp" in card and "70%" in card and "Bật" in card and "vừa xong" in card
    offline = live[live.index('data-speaker="loa-2a"') :]
    assert "Mất kết nối" in offline[: offline.index("</article>")]
    assert "Bộ khuếch đại tắt" in live
    # It changes without a page load: the next poll shows the new state.
    web_services.fleet.live["loa-1a"] = {"online": False}
    assert client.get("/dashboard.json").get_json()["online"] == 1


# --- log ----------------------------------------------------------------------------------------


def _finished_broadcast(web_services: Any, client: Any) -> int:
    """A broadcast that ended a few minutes ago, as the ledger leaves it (rows written here)."""
    from broadcaster.models import Announcement as AnnouncementRow

    start = datetime.now(UTC) - timedelta(minutes=5)
    with web_services.sessions.begin() as session:
        ann = AnnouncementRow(title="Tin đã phát", text="Thông báo đã phát.", author="approver", source="web")
        row = Broadcast(announcement=ann, tier="normal", targets=["all"], state="partial")
        session.add(row)
        row.start_at, row.finished_at = start, start + timedelta(seconds=90)
        row.deliveries = [
            Delivery(speaker_id="loa-1a", state="done", started_at=start, seconds_played=90.0),
            Delivery(speaker_id="loa-1b", state="preempted", started_at=start, seconds_played=30.0,
                     reason="Bị ngắt bởi tin khẩn cấp"),
            Delivery(speaker_id="loa-2a", state="missed", reason="Loa mất kết nối"),
        ]  # fmt: skip
        session.flush()
        broadcast_id = row.id
    return broadcast_id


def test_log_shows_each_cluster_result_and_minutes(client: Any, web_services: Any) -> None:
    login(client, "approver")
    _finished_broadcast(web_services, client)
    html = client.get("/log").get_data(as_text=True)
    for text in ("Tin đã phát", "Đã phát xong", "Bị ngắt bởi tin ưu tiên hơn", "Lỡ giờ phát",
                 "Bị ngắt bởi tin khẩn cấp", "Loa mất kết nối", "1:30", "30 giây", "Phát chưa đủ loa"):  # fmt: skip
        assert text in html, text
    minutes = html[html.index('class="table minutes"') :]
    row = minutes[minutes.index('data-speaker="loa-1a"') :]
    assert "<strong>1,5</strong>" in row[: row.index("</tr>")]
    assert "Tin đã phát" not in client.get("/log?q=khong-co").get_data(as_text=True)
    assert "Tin đã phát" in client.get("/log?q=tin da phat").get_data(as_text=True)


def test_log_csv_export(client: Any, web_services: Any) -> None:
    login(client, "approver")
    _finished_broadcast(web_services, client)
    reply = client.get("/log.csv")
    assert reply.status_code == 200 and reply.mimetype == "text/csv"
    assert "attachment" in reply.headers["Content-Disposition"]
    text = reply.data.decode("utf-8")
    assert text.startswith("\ufeff") and not text.startswith("\ufeff\ufeff")
    assert text.count("Tin đã phát") == 3  # one line per cluster
    minutes = client.get("/log/minutes.csv").data.decode("utf-8")
    assert "loa-1a" in minutes and "1.5" in minutes


# --- admin: speakers, zones, users -----------------------------------------------------------------


def test_admin_adds_zone_and_speaker_and_sees_password_once(client: Any, web_services: Any) -> None:
    login(client, "admin")
    assert post(client, "/zones", {"zone_id": "thon-3", "zone_name": "Thôn 3"}).status_code == 302
    reply = post(client, "/speakers", {"speaker_id": "loa-3a", "speaker_name": "Loa bến đò",
                                       "speaker_zone": "thon-3", "location": "Bến đò"})  # fmt: skip
    html = reply.get_data(as_text=True)
    password = re.search(r'id="mqtt-password">([^<]+)<', html).group(1)
    assert len(password) >= 20 and "chỉ hiện một lần" in html
    assert password not in client.get("/speakers").get_data(as_text=True)
    from broadcaster.fleet.registry import verify_mosquitto_hash
    from broadcaster.models import Speaker

    with web_services.sessions() as session:
        assert verify_mosquitto_hash(password, session.get(Speaker, "loa-3a").mqtt_password_hash)
    dup = post(client, "/speakers", {"speaker_id": "loa-3a", "speaker_name": "Trùng"})
    assert dup.status_code == 400 and "đã có" in dup.get_data(as_text=True)
    bad = post(client, "/zones", {"zone_id": "thôn 4", "zone_name": ""})
    assert bad.status_code == 400 and "Vui lòng nhập tên khu vực." in bad.get_data(as_text=True)


def test_admin_manages_users(client: Any, web_services: Any) -> None:
    login(client, "admin")
    short = post(client, "/users", {"username": "thu.ky", "display_name": "Thư ký", "role": "editor",
                                    "password": "123"})  # fmt: skip
    assert short.status_code == 400 and "ít nhất 8 ký tự" in short.get_data(as_text=True)
    assert 'value="Thư ký"' in short.get_data(as_text=True)
    post(client, "/users", {"username": "thu.ky", "display_name": "Thư ký", "role": "editor",
                            "password": "mat-khau-moi-1"})  # fmt: skip
    other = client.application.test_client()
    assert login(other, "thu.ky", "mat-khau-moi-1").status_code == 302
    with web_services.sessions() as session:
        uid = session.scalar(select(User.id).where(User.username == "thu.ky"))
    post(client, f"/users/{uid}", {"role": "editor", "display_name": "Thư ký"})  # "active" unticked
    assert other.get("/").status_code == 302  # deactivated: out at the next click


def test_last_admin_cannot_be_demoted(client: Any, web_services: Any) -> None:
    login(client, "admin")
    with web_services.sessions() as session:
        uid = session.scalar(select(User.id).where(User.username == "admin"))
    post(client, f"/users/{uid}", {"role": "editor", "active": "on"})
    with web_services.sessions() as session:
        assert session.get(User, uid).role == "admin"
    assert "Phải còn ít nhất một tài khoản quản trị" in client.get("/users").get_data(as_text=True)


def test_change_own_password(client: Any) -> None:
    login(client, "editor")
    wrong = post(client, "/account", {"current": "sai", "new": "mat-khau-2", "confirm": "mat-khau-2"})
    assert wrong.status_code == 400 and "Mật khẩu hiện tại không đúng." in wrong.get_data(as_text=True)
    assert (
        post(
            client, "/account", {"current": PASSWORD, "new": "mat-khau-2", "confirm": "mat-khau-2"}
        ).status_code
        == 302
    )
    post(client, "/logout")
    assert login(client, "editor", "mat-khau-2").status_code == 302


@pytest.mark.parametrize("path", ["/broadcasts/999", "/schedule/999", "/khong-co"])
def test_missing_things_get_a_vietnamese_404(client: Any, path: str) -> None:
    login(client, "editor")
    reply = client.get(path)
    assert reply.status_code == 404
    assert "Không tìm thấy" in reply.get_data(as_text=True)


def test_cli_user_add_creates_an_account_that_logs_in(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from broadcaster.__main__ import main
    from broadcaster.services import open_database
    from broadcaster.web.users import authenticate
    from tests.fixtures_web import web_settings

    instance = tmp_path / "inst"
    monkeypatch.setattr("sys.stdin", io.StringIO("mat-khau-cli-1\n"))
    code = main(["--instance", str(instance), "user", "add", "Can.Bo", "--role", "approver", "--name",
                 "Cán bộ văn hóa", "--password-stdin"])  # fmt: skip
    assert code == 0
    sessions = open_database(web_settings(instance))
    user = authenticate(sessions, "can.bo", "mat-khau-cli-1")
    assert user is not None and user.role == "approver" and user.display_name == "Cán bộ văn hóa"
    monkeypatch.setattr("sys.stdin", io.StringIO("ngan\n"))
    assert (
        main(["--instance", str(instance), "user", "add", "x2", "--role", "editor", "--password-stdin"]) == 1
    )
    sessions.kw["bind"].dispose()

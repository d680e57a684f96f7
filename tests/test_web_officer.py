"""Issue 13, the server side of what the officer met (Flask test client over the web fixtures: real
SQLite, the real broadcast lifecycle, scheduler service and speech over espeak-ng; no cluster is
online, so items wait).

Who hears it (the one target resolver, its refusal of "all" with anything else shown next to the
targets), one check for preview and submit, lexicon changes waiting for approval, the stop policy
by role, the week view's states and clashes, listening before approving, the voice sample, the
broadcast page's JSON view, CSV for Excel, the settings page's usage, and the document import's
error paths."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from broadcaster.domain import Announcement, Tier
from broadcaster.models import LexiconEntry, Schedule
from tests.fixtures_controller import wait_until
from tests.fixtures_web import csrf, login
from tests.test_web import compose_form, post, wait_job

MIXED = "«Tất cả loa» không đi cùng khu vực hay cụm loa khác"


# --- item 1: who hears it ----------------------------------------------------------------------------


def test_all_with_a_zone_is_refused_next_to_the_targets(client: Any, web_services: Any) -> None:
    login(client, "approver")
    reply = post(client, "/compose", compose_form(targets=["all", "thon-1"]))
    assert reply.status_code == 400
    page = reply.get_data(as_text=True)
    error = re.search(r'<p class="field-error" id="err-targets" role="alert">([^<]*)</p>', page)
    assert error is not None and MIXED in error.group(1)
    assert 'aria-describedby="err-targets"' in page and web_services.submitted() == []


def test_the_summary_comes_from_the_target_resolver(client: Any, web_services: Any) -> None:
    login(client, "editor")
    describe = web_services.services.targets.describe

    def summary(*targets: str) -> dict[str, Any]:
        query = "&".join(f"targets={t}" for t in targets)
        return client.get(f"/compose/targets?{query}", headers={"Accept": "application/json"}).get_json()

    assert summary("all") == {"summary": f"Sẽ phát tới {describe(['all'])}.", "ok": True}
    assert summary("thon-1") == {"summary": "Sẽ phát tới 2 cụm loa ở Thôn 1.", "ok": True}
    assert summary("thon-1", "loa-2a")["summary"] == "Sẽ phát tới 3 cụm loa ở Thôn 1 và Loa nhà văn hóa."
    mixed = summary("all", "thon-1")
    assert mixed["ok"] is False and MIXED in mixed["summary"]
    assert summary()["ok"] is False and "Chưa chọn nơi phát" in summary()["summary"]
    # The page carries the same words before any script runs.
    page = client.get("/compose").get_data(as_text=True)
    assert (
        f'<p class="targets-summary" id="targets-summary" aria-live="polite">Sẽ phát tới {describe(["all"])}.</p>'
        in page
    )


# --- item 3: one check, Vietnamese only ----------------------------------------------------------------


@pytest.mark.parametrize("text", ["😀😀😀", "🎉 !!! ###", "   ✅   "])
def test_preview_and_submit_refuse_unreadable_text_alike(client: Any, web_services: Any, text: str) -> None:
    login(client, "approver")
    preview = post(client, "/compose/preview", {"text": text, "repeat": "1"})
    assert preview.status_code == 400
    message = preview.get_json()["errors"]["text"]
    reply = post(client, "/compose", compose_form(text=text))
    assert reply.status_code == 400
    assert f'<p class="field-error" id="err-text" role="alert">{message}</p>' in reply.get_data(as_text=True)
    assert web_services.submitted() == []
    assert not re.search(r"[(][ -~]*[)]|readable|text", message), message  # no English


# --- item 4: the lexicon waits for approval ----------------------------------------------------------


def test_an_editors_reading_waits_for_an_approver(client: Any, web_app: Any, web_services: Any) -> None:
    lexicon = web_services.services.lexicon
    login(client, "editor")
    page = client.get("/lexicon").get_data(as_text=True)
    assert "Thay đổi của bạn được gửi tới người phê duyệt" in page
    sent = post(client, "/lexicon", {"term": "HTX", "reading": "hợp tác xã nông nghiệp"})
    assert sent.status_code == 302
    assert "chỉ được dùng sau khi được duyệt" in client.get("/lexicon").get_data(as_text=True)
    assert lexicon.overrides() == {}  # nothing changed for any render
    preview = post(client, "/compose/preview", {"text": "HTX họp", "repeat": "1"}).get_json()
    assert "nông nghiệp" not in preview["normalized_text"]
    wait_job(client, preview["status_url"])

    approver = web_app.test_client()
    login(approver, "approver")
    assert "Chờ duyệt (1)" in approver.get("/").get_data(as_text=True)
    page = approver.get("/approvals").get_data(as_text=True)
    assert "Từ điển cách đọc: «HTX»" in page and "Người đề xuất: Nguyễn Văn Biên" in page
    change = lexicon.proposals()[0]
    assert post(approver, f"/approvals/lexicon/{change.id}/approve").status_code == 302
    assert lexicon.overrides() == {"HTX": "hợp tác xã nông nghiệp"}
    assert lexicon.proposals() == []
    # A proposal is decided once.
    assert post(approver, f"/approvals/lexicon/{change.id}/approve").status_code == 404

    # An editor's deletion waits too; an approver refuses it and the reading stays.
    with web_services.sessions() as session:
        entry_id = session.scalar(select(LexiconEntry.id))
    assert post(client, f"/lexicon/{entry_id}/delete").status_code == 302
    assert lexicon.overrides() == {"HTX": "hợp tác xã nông nghiệp"}
    refusal = lexicon.proposals()[0]
    assert refusal.deletes
    post(approver, f"/approvals/lexicon/{refusal.id}/reject", {"reason": "Vẫn cần"})
    assert lexicon.overrides() == {"HTX": "hợp tác xã nông nghiệp"}
    # Editors cannot decide.
    post(client, "/lexicon", {"term": "TDP", "reading": "tổ dân phố"})
    assert post(client, f"/approvals/lexicon/{lexicon.proposals()[0].id}/approve").status_code == 403


def test_without_approval_required_an_editors_reading_applies_at_once(
    client: Any, web_app: Any, web_services: Any
) -> None:
    admin = web_app.test_client()
    login(admin, "admin")
    post(admin, "/settings", {})  # approval no longer required
    login(client, "editor")
    assert "áp dụng ngay" in client.get("/lexicon").get_data(as_text=True)
    post(client, "/lexicon", {"term": "HTX", "reading": "hợp tác xã"})
    assert web_services.services.lexicon.overrides() == {"HTX": "hợp tác xã"}


# --- item 13: who may stop what ------------------------------------------------------------------------


def _two_items(web_services: Any) -> tuple[int, int]:
    manager = web_services.broadcasts
    normal = manager.submit(Announcement(text="Tin thường.", title="Thường"))
    emergency = manager.submit(Announcement(text="Tin khẩn.", title="Khẩn", tier=Tier.EMERGENCY))
    return normal, emergency


def _state(web_services: Any, broadcast_id: int) -> str:
    return web_services.broadcasts.get(broadcast_id)["state"]


def test_an_editors_stop_stops_normal_items_only(client: Any, web_services: Any) -> None:
    normal, emergency = _two_items(web_services)
    login(client, "editor")
    page = client.get("/").get_data(as_text=True)
    assert "Dừng tin thông thường" in page and "Tin ưu tiên và tin khẩn cấp vẫn phát" in page
    assert "Dừng tất cả ngay" not in page
    reply = post(client, "/stop-all")
    assert reply.status_code == 302
    assert _state(web_services, normal) == "cancelled"
    assert _state(web_services, emergency) != "cancelled"
    assert web_services.log("stop_all") == []  # no stop-everything was sent
    flash = client.get("/").get_data(as_text=True)
    assert "Đã dừng 1 tin thông thường" in flash
    assert "Dừng các tin thông thường?" in client.get("/stop-all").get_data(as_text=True)


def test_an_approvers_stop_stops_everything(client: Any, web_services: Any) -> None:
    normal, emergency = _two_items(web_services)
    login(client, "approver")
    assert "kể cả tin khẩn cấp" in client.get("/").get_data(as_text=True)
    assert post(client, "/stop-all").status_code == 302
    assert {_state(web_services, normal), _state(web_services, emergency)} == {"cancelled"}
    assert len(web_services.log("stop_all")) == 1


# --- item 5: the broadcast page's JSON view, listening before approving ------------------------------


def test_the_broadcast_page_has_a_live_json_view(client: Any, web_services: Any) -> None:
    login(client, "approver")
    post(client, "/compose", compose_form(title="Theo dõi"))
    broadcast_id = web_services.submitted()[0].id
    live = client.get(f"/broadcasts/{broadcast_id}/live", headers={"Accept": "application/json"}).get_json()
    assert live["final"] is False and live["id"] == broadcast_id
    assert 'id="live"' in live["html"] and "Theo dõi" in live["html"] and "<html" not in live["html"]
    page = client.get(f"/broadcasts/{broadcast_id}").get_data(as_text=True)
    assert f'data-poll-url="/broadcasts/{broadcast_id}/live"' in page and 'data-final="false"' in page
    web_services.broadcasts.cancel(broadcast_id)
    live = client.get(f"/broadcasts/{broadcast_id}/live").get_json()
    assert live["final"] is True and live["state_label"] == "Đã hủy"


def test_the_approver_listens_to_the_item_as_it_will_air(
    client: Any, web_app: Any, web_services: Any
) -> None:
    login(client, "editor")
    post(client, "/compose", compose_form(title="Nghe thử", text="Chiều nay họp thôn.", repeat="2"))
    broadcast_id = web_services.submitted()[0].id
    approver = web_app.test_client()
    login(approver, "approver")
    reply = post(approver, f"/approvals/{broadcast_id}/listen")
    assert reply.status_code == 200
    done = wait_job(approver, reply.get_json()["status_url"])
    assert done["state"] == "done", done
    assert done["audio_url"].endswith(".mp3") and done["duration_s"] > 1.0
    # Approving renders the same audio: a cache hit, the key the approver heard.
    post(approver, f"/approvals/{broadcast_id}/approve")
    wait_until(lambda: web_services.broadcasts.get(broadcast_id)["audio_key"], timeout=60, what="rendered")
    assert web_services.broadcasts.get(broadcast_id)["audio_key"] == done["key"]
    assert post(approver, "/approvals/999999/listen").status_code == 404


# --- item 6: the week view -----------------------------------------------------------------------------


def test_week_view_says_aired_missed_planned_and_nothing_before_creation(
    client: Any, web_services: Any
) -> None:
    zone = ZoneInfo(web_services.settings.timezone)
    local_now = datetime.now(zone)
    # Its daily time was a minute or two ago (yesterday's late evening just after midnight: the
    # three airings below are still the last three, and the latest within the firing grace).
    at = (local_now - timedelta(minutes=1)).strftime("%H:%M")
    scheduler = web_services.scheduler
    schedule_id = scheduler.create_schedule(
        {"title": "Bản tin trưa", "text": "Chào bà con.", "kind": "daily", "time": at, "targets": ["all"]}
    )
    born = datetime.now(UTC) - timedelta(days=2, hours=1)
    with web_services.sessions.begin() as session:
        session.execute(update(Schedule).where(Schedule.id == schedule_id).values(created=born))
    aired = scheduler.fire_schedule(schedule_id)
    assert aired is not None
    login(client, "approver")
    start = (local_now.date() - timedelta(days=6)).isoformat()
    page = client.get(f"/schedule?start={start}").get_data(as_text=True)
    statuses = re.findall(r'data-status="([a-z_]+)">\s*<a[^>]*>\s*<span class="time">([\d:]+)</span>\s*'
                          r'<span class="a-title">Bản tin trưa</span>', page)  # fmt: skip
    # Created two days ago: two missed airings (nobody ran the scheduler), the latest aired.
    assert [s for s, _ in statuses] == ["missed", "missed", web_services.broadcasts.get(aired)["state"]]
    assert page.count("Lỡ giờ phát") >= 2
    next_week = (local_now.date() + timedelta(days=7)).isoformat()
    page = client.get(f"/schedule?start={next_week}").get_data(as_text=True)
    assert page.count("Bản tin trưa") >= 7 and "Đã hẹn giờ" in page


def test_a_clash_is_warned_on_save_and_marked_in_the_week(client: Any, web_services: Any) -> None:
    login(client, "approver")
    form = compose_form(action="schedule", when="daily", weekly_time="06:30", targets=["thon-1"])
    post(client, "/compose", {**form, "title": "Sáng A"})
    first = client.get("/schedule").get_data(as_text=True)
    assert "trùng giờ" not in first
    post(client, "/compose", {**form, "title": "Sáng B", "targets": ["loa-1a"]})  # a cluster of thôn 1
    page = client.get("/schedule").get_data(as_text=True)
    assert "Lưu ý: bản tin này trùng giờ với «Sáng A» trên cùng cụm loa" in page
    zone = ZoneInfo(web_services.settings.timezone)
    next_week = (datetime.now(zone).date() + timedelta(days=7)).isoformat()
    page = client.get(f"/schedule?start={next_week}").get_data(as_text=True)
    assert page.count("Trùng giờ với «Sáng B»") == 7 and page.count("Trùng giờ với «Sáng A»") == 7
    # Another zone at the same time is no clash.
    post(client, "/compose", {**form, "title": "Sáng C", "targets": ["thon-2"]})
    assert "Lưu ý" not in client.get("/schedule").get_data(as_text=True).split("Sáng C")[0]


# --- the voice picker's sample, CSV for Excel, usage ----------------------------------------------------


def test_voice_sample_renders_a_short_sentence(client: Any) -> None:
    login(client, "editor")
    reply = post(client, "/voices/sample", {"engine": "espeak-ng", "voice": ""})
    done = wait_job(client, reply.get_json()["status_url"])
    assert done["state"] == "done" and done["engine"] == "espeak-ng" and done["duration_s"] > 1.0
    assert post(client, "/voices/sample", {"engine": "espeak-ng", "voice": "klingon"}).status_code == 400
    assert post(client, "/voices/sample", {"engine": "festival"}).status_code == 400


def test_csv_for_excel_uses_the_vietnamese_regional_format(client: Any, web_services: Any) -> None:
    login(client, "approver")
    post(client, "/compose", compose_form(title="Một; hai", text="Chào bà con, hẹn gặp lại."))
    excel = client.get("/log.csv?format=excel")
    assert excel.status_code == 200 and excel.data.startswith(b"\xef\xbb\xbf")
    lines = excel.data.decode("utf-8-sig").splitlines()
    assert lines[0].split(";")[:3] == ["Mã lượt phát", "Thời gian", "Tiêu đề"]
    assert '"Một; hai"' in lines[1]  # a separator inside a field is quoted
    plain = client.get("/log.csv").data.decode("utf-8-sig").splitlines()
    assert plain[0].startswith("Mã lượt phát,Thời gian,Tiêu đề,")
    assert client.get("/log.csv?format=ods").status_code == 400
    minutes = client.get("/log/minutes.csv?format=excel").data.decode("utf-8-sig").splitlines()
    assert minutes[0].startswith("Ngày;Khu vực;")
    from broadcaster.reports import to_csv

    assert to_csv([{"a": 1.5, "b": 2}], [("a", "A"), ("b", "B")], excel=True).splitlines()[1] == "1,5;2"


def test_settings_show_characters_sent_per_paid_engine(
    client: Any, web_services: Any, monkeypatch: Any
) -> None:
    from broadcaster.tts.usage import UsageRow

    login(client, "admin")
    assert "không dùng giọng đọc trả phí nào" in client.get("/settings").get_data(as_text=True)
    rows = [UsageRow("fpt", "FPT.AI", 12_345, 67_890, 50_000), UsageRow("zalo", "Zalo AI", 0, 10, None)]
    monkeypatch.setattr(web_services.speech, "usage", lambda: rows)
    page = client.get("/settings").get_data(as_text=True)
    assert re.search(r"FPT\.AI</td>\s*<td class=\"num\">12\.345</td>\s*<td class=\"num\">67\.890</td>", page)
    assert "50.000" in page and "37.655" in page and "Không giới hạn" in page


# --- item 9: every error path of the document import is a clear 4xx ------------------------------------


def test_document_import_error_paths_are_4xx(client: Any, web_app: Any) -> None:
    login(client, "editor")
    token = csrf(client, "/")
    headers = {"X-CSRFToken": token, "Accept": "application/json"}

    def send(data: dict[str, Any], **extra: Any) -> Any:
        return client.post(
            "/compose/import", data=data, headers=headers, content_type="multipart/form-data", **extra
        )

    cases = {
        "no file": ({}, 400, "Vui lòng chọn"),
        "wrong kind": ({"document": (io.BytesIO(b"MZ"), "x.exe")}, 400, "Loại tệp không được hỗ trợ"),
        "empty": ({"document": (io.BytesIO(b""), "x.txt")}, 400, "Tệp rỗng"),
        "broken pdf": ({"document": (io.BytesIO(b"%PDF-1.4 garbage"), "x.pdf")}, 400, "bị hỏng"),
    }
    for name, (data, status, message) in cases.items():
        reply = send(data)
        assert reply.status_code == status, name
        assert message in reply.get_json()["errors"]["document"], name
    web_app.config["MAX_CONTENT_LENGTH"] = 1024
    big = send({"document": (io.BytesIO(b"x" * 4096), "big.txt")})
    assert big.status_code == 413 and big.get_json()["error"] == "Tệp tải lên quá lớn."
    web_app.config["MAX_CONTENT_LENGTH"] = 50 * 1024 * 1024
    # Without the page script: the compose page again, the message next to the file field.
    page = client.post(
        "/compose/import",
        data={"document": (io.BytesIO(b"%PDF-1.4 garbage"), "x.pdf"), "csrf_token": token, "text": "Giữ lại"},
        headers={"Accept": "text/html"},
        content_type="multipart/form-data",
    )
    assert page.status_code == 400
    body = page.get_data(as_text=True)
    assert 'id="err-document"' in body and "Giữ lại" in body


def test_api_csv_offers_the_excel_format_too(tmp_path: Any) -> None:
    from tests.test_api import Api

    api = Api(tmp_path)
    try:
        api.client.post(
            "/api/broadcasts", headers=api.auth, json={"text": "Chào bà con.", "targets": ["all"]}
        )
        excel = api.client.get("/api/log.csv?format=excel", headers=api.auth)
        assert excel.status_code == 200 and excel.data.startswith(b"\xef\xbb\xbf")
        assert excel.data.decode("utf-8-sig").splitlines()[0].startswith("Mã lượt phát;Thời gian;")
        plain = api.client.get("/api/log.csv", headers=api.auth).data.decode("utf-8-sig")
        assert plain.splitlines()[0].startswith("Mã lượt phát,Thời gian,")
        minutes = api.client.get("/api/reports/minutes.csv?format=excel", headers=api.auth)
        assert minutes.data.decode("utf-8-sig").startswith("Ngày;")
        bad = api.client.get("/api/log.csv?format=ods", headers=api.auth)
        assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "format"
    finally:
        api.manager.stop()
        api.engine.dispose()

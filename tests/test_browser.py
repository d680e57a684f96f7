"""The officer UI in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

The app is served by werkzeug on a loopback port over ``ui_stack``: the real controller as
``broadcaster serve --demo`` builds it (managed mosquitto, nine simulated clusters in three zones,
SQLite, espeak-ng), shared by the tests of this module. Each test gets a fresh browser context (own
cookies); one browser serves the whole session."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.fixtures_web import ARTIFACTS, browser_login

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_login_and_dashboard_screenshot(ui_stack: Any, new_page: Any, page_errors: list[str]) -> None:
    page = new_page(ui_stack.url, viewport={"width": 1280, "height": 900})
    page.goto("/")
    assert "/login" in page.url
    page.get_by_label("Tên đăng nhập").fill("admin")
    page.get_by_label("Mật khẩu").fill("sai-mat-khau")
    page.get_by_role("button", name="Đăng nhập").click()
    assert page.get_by_role("alert").inner_text() == "Tên đăng nhập hoặc mật khẩu không đúng."
    page_errors.clear()  # the refused login's 401 is logged by the browser console
    browser_login(page, "admin")
    assert page.get_by_role("heading", name="Tổng quan").is_visible()
    cards = page.locator(".speaker-card")
    assert cards.count() == ui_stack.cluster_count
    for zone in ui_stack.zone_names:
        assert page.get_by_role("heading", name=re.compile(re.escape(zone))).first.is_visible()
    wait_for(
        lambda: page.locator(".speaker-card.online").count() == ui_stack.cluster_count, what="all online"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    phone = new_page(ui_stack.url, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    browser_login(phone, "admin")
    phone.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
    # Nothing on the phone is wider than the screen (no sideways scrolling of the page).
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    assert page_errors == []


def test_compose_preview_shows_normalized_text_and_plays(
    ui_stack: Any, new_page: Any, page_errors: list[str]
) -> None:
    page = new_page(ui_stack.url)
    browser_login(page, "editor")
    page.get_by_role("link", name="Soạn thông báo").first.click()
    page.get_by_label("Nội dung thông báo").fill("UBND xã thông báo: họp lúc 7h30 tại HTX số 2.")
    page.get_by_role("button", name="Xem trước và nghe thử").click()
    mark = page.locator("#preview-text mark", has_text="ủy ban nhân dân")
    mark.wait_for()
    assert mark.get_attribute("title") == "Chữ gốc: UBND"
    assert page.locator("#preview-text mark").count() >= 4  # UBND, 7h30, HTX, 2
    assert "Ủy ban nhân dân xã thông báo" in page.locator("#preview-text").inner_text()
    audio = page.locator("#preview-audio")
    audio.wait_for(state="visible", timeout=60_000)
    assert re.search(r"/audio/[0-9a-f]{64}\.mp3$", audio.get_attribute("src"))
    duration = page.wait_for_function(
        "() => { const a = document.getElementById('preview-audio'); return a.readyState >= 1 && a.duration; }",
        timeout=30_000,
    ).json_value()
    assert duration > 1.0
    assert "Âm thanh sẵn sàng" in page.locator("#preview-status").inner_text()
    assert page_errors == []


def test_broadcast_now_dashboard_shows_playing_then_done(ui_stack: Any, new_page: Any) -> None:
    page = new_page(ui_stack.url, viewport={"width": 1280, "height": 900})
    browser_login(page, "approver")
    page.goto("/compose")
    page.get_by_label("Tiêu đề").fill("Thông báo lịch họp thôn")
    page.get_by_label("Nội dung thông báo").fill(
        "Tối nay lúc 19h30, mời bà con về nhà văn hóa họp bàn việc làm đường. Đề nghị bà con đi đúng giờ."
    )
    page.get_by_role("button", name="Phát ngay").click()
    page.wait_for_url(re.compile(r"/\?b=\d+$"))
    # The flash says who hears it, and what is true now (sent and waiting, or playing).
    assert (
        f"«Thông báo lịch họp thôn» tới tất cả {ui_stack.cluster_count} cụm loa"
        in page.locator(".flashes").inner_text()
    )
    playing = page.locator(".speaker-card.is-playing")
    # The dashboard updates itself (no reload): all nine clusters playing...
    wait_for(lambda: playing.count() == ui_stack.cluster_count, timeout=60, what="all clusters playing")
    assert "Đang phát: Thông báo lịch họp thôn" in playing.first.inner_text()
    page.screenshot(path=str(ARTIFACTS / "dashboard-playing.png"), full_page=True)
    # ...then done on every one of them.
    recent = page.locator(".recent-item").first
    wait_for(lambda: recent.get_attribute("data-state") == "done", timeout=120, what="broadcast done")
    assert f"{ui_stack.cluster_count}/{ui_stack.cluster_count} loa đã phát xong" in recent.inner_text()
    assert "Đã phát xong" in recent.inner_text()
    wait_for(lambda: playing.count() == 0, timeout=30, what="clusters idle")


def test_stop_all_asks_first_then_stops_every_cluster(ui_stack: Any, new_page: Any) -> None:
    from broadcaster.domain import Announcement

    page = new_page(ui_stack.url, viewport={"width": 1280, "height": 900})
    browser_login(page, "approver")
    long_text = " ".join(["Đây là bản tin dài để kiểm tra nút dừng tất cả."] * 8)
    broadcast_id = ui_stack.services.broadcasts.submit(Announcement(text=long_text, title="Bản tin dài"))
    playing = page.locator(".speaker-card.is-playing")
    wait_for(lambda: playing.count() == ui_stack.cluster_count, timeout=60, what="all clusters playing")
    stop = page.get_by_role("link", name="Dừng tất cả")
    stop.click()
    dialog = page.get_by_role("dialog", name="Dừng tất cả loa?")
    assert dialog.is_visible()
    dialog.get_by_role("button", name="Không, quay lại").click()
    assert dialog.is_hidden()
    assert ui_stack.services.broadcasts.get(broadcast_id)["state"] == "playing"  # nothing stopped yet
    stop.click()
    dialog.get_by_role("button", name="Dừng tất cả ngay").click()
    page.wait_for_url(re.compile(r"/$"))
    assert "Đã gửi lệnh dừng tới tất cả cụm loa." in page.locator(".flashes").inner_text()
    wait_for(lambda: ui_stack.services.broadcasts.get(broadcast_id)["state"] not in ("playing", "sending"),
             timeout=30, what="broadcast stopped")  # fmt: skip
    played = [d["seconds_played"] or 0 for d in ui_stack.services.broadcasts.get(broadcast_id)["deliveries"]]
    assert max(played) < ui_stack.services.broadcasts.get(broadcast_id)["duration_s"]


def test_volume_of_a_zone_reaches_its_clusters(ui_stack: Any, new_page: Any) -> None:
    """The dashboard's "Âm lượng" form, through the real controller and the simulated nodes: every
    cluster of the zone reports the new volume in its health, and the cards show it."""
    zone = ui_stack.zone_names[0]
    page = new_page(ui_stack.url, viewport={"width": 1280, "height": 900})
    browser_login(page, "approver")
    page.get_by_label("Nơi đặt").select_option(label=zone)
    page.get_by_label("Âm lượng (%)").fill("37")
    page.get_by_role("button", name="Đặt âm lượng").click()
    page.wait_for_url(re.compile(r"/$"))
    assert re.search(r"Đã gửi lệnh đặt âm lượng 37% tới \d+ cụm loa", page.locator(".flashes").inner_text())
    section = page.locator("section.zone", has=page.get_by_role("heading", name=re.compile(re.escape(zone))))
    volumes = section.locator(".sp-volume")
    # Nodes report volume in their health messages (every 10 s in the demo); the page polls.
    wait_for(lambda: volumes.count() > 0 and all(v == "37%" for v in volumes.all_inner_texts()),
             timeout=40, what=f"clusters of {zone} at 37%")  # fmt: skip
    others = page.locator(
        "section.zone", has_not=page.get_by_role("heading", name=re.compile(re.escape(zone)))
    )
    assert "37%" not in " ".join(others.locator(".sp-volume").all_inner_texts())


def test_schedule_bulletin_appears_in_week_view(ui_stack: Any, new_page: Any) -> None:
    page = new_page(ui_stack.url, viewport={"width": 1280, "height": 900})
    browser_login(page, "approver")
    page.goto("/compose")
    page.get_by_label("Tiêu đề").fill("Bản tin sáng thứ Hai")
    page.get_by_label("Nội dung thông báo").fill("Chào buổi sáng. Đây là bản tin của xã.")
    page.get_by_label("Lặp lại hằng tuần").check()
    assert page.get_by_label("Ngày phát").is_hidden()  # only the weekly fields now
    page.get_by_label("Thứ Hai").check()
    page.get_by_label("Giờ phát trong ngày").fill("06:15")
    page.get_by_role("button", name="Hẹn giờ").click()
    page.wait_for_url(re.compile(r"/schedule"))
    assert "Đã lưu lịch phát định kỳ." in page.locator(".flashes").inner_text()
    page.get_by_role("link", name="Tuần sau ›").click()
    monday = page.locator(".day").first
    assert "Thứ Hai" in monday.inner_text()
    airing = monday.locator(".airing")
    assert (
        airing.count() == 1
        and "06:15" in airing.inner_text()
        and "Bản tin sáng thứ Hai" in airing.inner_text()
    )
    # Open it, change the time, and see the week view follow.
    airing.locator("a").click()
    page.get_by_label("Giờ phát trong ngày").fill("06:45")
    page.get_by_role("button", name="Lưu lịch phát").click()
    page.wait_for_url(re.compile(r"/schedule$"))
    page.get_by_role("link", name="Tuần sau ›").click()
    assert "06:45" in page.locator(".day").first.locator(".airing").inner_text()


def test_editor_item_waits_for_approval(ui_stack: Any, new_page: Any) -> None:
    editor = new_page(ui_stack.url)
    browser_login(editor, "editor")
    editor.goto("/compose")
    assert editor.get_by_label("Khẩn cấp").is_disabled()  # editors write normal items only
    editor.get_by_label("Tiêu đề").fill("Lịch tiêm phòng")
    editor.get_by_label("Nội dung thông báo").fill("Sáng thứ Bảy tiêm phòng dại cho chó mèo tại nhà văn hóa.")
    editor.get_by_role("button", name="Gửi duyệt để phát ngay").click()
    editor.wait_for_url(re.compile(r"/approvals$"))
    item = editor.locator(".approval", has_text="Lịch tiêm phòng")
    assert item.is_visible() and item.get_by_role("button", name="Duyệt và phát").count() == 0
    broadcast_id = int(item.get_attribute("data-broadcast"))
    assert ui_stack.services.broadcasts.get(broadcast_id)["state"] == "pending_approval"

    approver = new_page(ui_stack.url)
    browser_login(approver, "approver")
    approver.get_by_role("link", name=re.compile(r"^Chờ duyệt \(\d+\)$")).click()
    assert ui_stack.services.broadcasts.get(broadcast_id)["state"] == "pending_approval"
    approver.locator(f'.approval[data-broadcast="{broadcast_id}"]').get_by_role(
        "button", name="Duyệt và phát"
    ).click()
    assert "Đã duyệt «Lịch tiêm phòng». Tin sẽ được phát." in approver.locator(".flashes").inner_text()
    wait_for(
        lambda: ui_stack.services.broadcasts.get(broadcast_id)["state"] == "done", timeout=120, what="aired"
    )
    assert {d["state"] for d in ui_stack.services.broadcasts.get(broadcast_id)["deliveries"]} == {"done"}


def test_script_in_announcement_is_shown_as_text(
    ui_stack: Any, new_page: Any, page_errors: list[str]
) -> None:
    evil = '<script>window.__xss = 1; alert("xss")</script><img src=x onerror="window.__xss = 2">'
    page = new_page(ui_stack.url)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.add_init_script("window.__xss = 0")
    browser_login(page, "editor")
    page.goto("/compose")
    page.get_by_label("Tiêu đề").fill(evil)
    page.get_by_label("Nội dung thông báo").fill("Thông báo " + evil)
    page.get_by_role("button", name="Xem trước và nghe thử").click()
    preview = page.locator("#preview-text")
    preview.wait_for(state="visible")
    # The preview shows how it reads aloud ("<" is read "nhỏ hơn"), as text; nothing ran.
    assert "nhỏ hơn script lớn hơn" in preview.inner_text()
    assert preview.locator("script, img").count() == 0 and page.evaluate("window.__xss") == 0
    page.get_by_role("button", name="Gửi duyệt để phát ngay").click()
    page.wait_for_url(re.compile(r"/approvals$"))
    item = page.locator(".approval").first
    assert evil in item.locator("h2").inner_text()
    assert evil in item.locator(".announcement-text").first.inner_text()
    for path in ("/", "/log", f"/broadcasts/{item.get_attribute('data-broadcast')}"):
        page.goto(path)
        page.wait_for_timeout(300)  # let any injected handler run (it must not exist)
        assert evil in page.locator("main").inner_text(), path
        assert page.evaluate("window.__xss") == 0, path
    assert dialogs == []
    assert not [e for e in page_errors if "xss" in e]


def test_record_from_microphone_and_broadcast_it(
    ui_stack: Any, new_page: Any, page_errors: list[str]
) -> None:
    """MediaRecorder in the page (Chromium's fake microphone) -> upload -> ffmpeg conversion."""
    page = new_page(ui_stack.url, permissions=["microphone"])
    browser_login(page, "approver")
    page.goto("/compose")
    page.get_by_text("Hoặc phát bản ghi âm thay cho giọng đọc máy").click()
    page.get_by_role("button", name="● Ghi âm từ micro").click()
    status = page.locator("#recording-status")
    page.wait_for_function("() => document.getElementById('recording-status').textContent.includes('2 giây')")
    page.get_by_role("button", name="■ Dừng ghi").click()
    page.wait_for_function("() => document.getElementById('audio_key').value.length === 64", timeout=60_000)
    assert "Sẽ phát bản ghi âm «ghi-am.webm»" in status.inner_text()
    key = page.locator("#audio_key").input_value()
    assert ui_stack.services.speech.store.has(key)
    assert ui_stack.services.speech.store.meta(key).get("engine") == "recording"
    page.get_by_label("Tiêu đề").fill("Thông báo ghi âm")
    page.get_by_role("button", name="Phát ngay").click()
    page.wait_for_url(re.compile(r"/\?b=\d+$"))
    broadcast_id = int(page.url.rsplit("=", 1)[1])
    assert ui_stack.services.broadcasts.get(broadcast_id)["title"] == "Thông báo ghi âm"
    assert page_errors == []


def test_pages_look_right_on_phone_and_desktop(ui_stack: Any, new_page: Any, page_errors: list[str]) -> None:
    """Every page renders without script errors and without sideways scrolling on a phone."""
    shots = ARTIFACTS / "pages"
    shots.mkdir(parents=True, exist_ok=True)
    for label, options in (
        ("desktop", {"viewport": {"width": 1280, "height": 900}}),
        ("phone", {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}),
    ):
        page = new_page(ui_stack.url, **options)
        browser_login(page, "admin")
        for path in ("/", "/compose", "/schedule", "/approvals", "/log", "/lexicon", "/speakers", "/users",
                     "/settings"):  # fmt: skip
            page.goto(path)
            name = path.strip("/") or "dashboard"
            page.screenshot(path=str(shots / f"{label}-{name}.png"), full_page=True)
            if label == "phone":
                width = page.evaluate("document.documentElement.scrollWidth")
                assert width <= 390, f"{path} is {width}px wide on a phone"
    assert page_errors == []

"""Issue 13 in a real headless Chromium: what an officer met during a day with the demo (items 1-8),
on a desktop and on a 390x844 phone.

The app is served over ``ui_stack``: the real controller as ``broadcaster serve --demo`` builds it
(managed mosquitto, nine simulated clusters in three zones, SQLite, espeak-ng). Each test gets a
fresh browser context; one Chromium serves the module."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.fixtures_controller import wait_until
from tests.fixtures_web import ARTIFACTS, browser_login

pytestmark = [pytest.mark.browser, pytest.mark.integration]

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": {"width": 1280, "height": 900}}
# Officer-facing text must not carry these (issue 13, item 8).
JARGON = re.compile(r"MQTT|dBFS|espeak|eSpeak|Bộ đọc|bộ đọc|huỷ|Huỷ|[“”]")


def _zone_box(page: Any, name: str) -> Any:
    return page.locator("label.zone", has_text=name).locator("input")


def _newest_id(stack: Any) -> int:
    return max((b["id"] for b in stack.services.broadcasts.list(limit=5)), default=0)


# --- item 1: who will hear it ----------------------------------------------------------------------


def test_a_zone_tick_unticks_all_and_the_summary_says_who_hears_it(ui_stack: Any, new_page: Any) -> None:
    page = new_page(ui_stack.url, **DESKTOP)
    browser_login(page, "approver")
    page.goto("/compose")
    all_box = page.locator("#target-all")
    summary = page.locator("#targets-summary")
    targets = ui_stack.services.targets
    assert all_box.is_checked()
    assert summary.inner_text() == f"Sẽ phát tới {targets.describe(['all'])}."
    _zone_box(page, "Thôn Đông").check()
    assert not all_box.is_checked()  # a zone means that zone only
    wait_until(lambda: summary.inner_text() == f"Sẽ phát tới {targets.describe(['thon-1'])}.", what="summary")
    assert summary.inner_text() == "Sẽ phát tới 3 cụm loa ở Thôn Đông."
    all_box.check()
    assert not _zone_box(page, "Thôn Đông").is_checked()
    wait_until(lambda: summary.inner_text() == f"Sẽ phát tới {targets.describe(['all'])}.", what="all again")
    _zone_box(page, "Thôn Đoài").check()
    page.get_by_label("Tiêu đề").fill("Chỉ thôn Đoài")
    page.get_by_label("Nội dung thông báo").fill("Thông báo riêng cho bà con thôn Đoài.")
    page.get_by_role("button", name="Phát ngay").click()
    page.wait_for_url(re.compile(r"/\?b=\d+$"))
    broadcast = ui_stack.services.broadcasts.get(int(page.url.rsplit("=", 1)[1]))
    assert broadcast["targets"] == ["thon-2"]
    # Item 5: the flash says what is true now: sent, waiting or playing, never "started" while queued.
    flash = page.locator(".flashes").inner_text()
    assert "Đã bắt đầu phát" not in flash
    assert "«Chỉ thôn Đoài»" in flash and "3 cụm loa ở Thôn Đoài" in flash
    assert re.search(r"Đang chờ đến lượt phát|sẽ phát lúc \d\d:\d\d|^Đang phát", flash), flash


# --- item 3: the same check on submit as in the preview ------------------------------------------


def test_emoji_only_text_is_refused_by_preview_and_submit_in_vietnamese(ui_stack: Any, new_page: Any) -> None:
    page = new_page(ui_stack.url, **DESKTOP)
    browser_login(page, "approver")
    page.goto("/compose")
    before = _newest_id(ui_stack)
    page.get_by_label("Nội dung thông báo").fill("🎉🎉🎉")
    page.get_by_role("button", name="Xem trước và nghe thử").click()
    status = page.locator("#preview-status.error")
    status.wait_for()
    preview_message = status.inner_text()
    page.get_by_role("button", name="Phát ngay").click()
    page.wait_for_load_state()
    assert "/compose" in page.url
    error = page.locator("#err-text")
    assert error.inner_text() == preview_message  # one check, one message
    assert "Đã bắt đầu phát" not in page.locator("main").inner_text()
    assert not re.search(r"\([a-z ]+\)|readable|text", error.inner_text()), error.inner_text()
    assert _newest_id(ui_stack) == before  # nothing was sent


# --- item 5: truthful state, the page refreshes itself, the approver listens -----------------------


def test_broadcast_page_follows_the_item_without_reloading(ui_stack: Any, new_page: Any) -> None:
    from broadcaster.domain import Announcement

    page = new_page(ui_stack.url, **DESKTOP)
    browser_login(page, "approver")
    broadcast_id = ui_stack.services.broadcasts.submit(
        Announcement(text="Bản tin ngắn để xem trang tự cập nhật.", title="Tự cập nhật", targets=("thon-3",))
    )
    page.goto(f"/broadcasts/{broadcast_id}")
    page.evaluate("window.__sameDocument = true")
    pill = page.locator(".head-actions .pill").first
    assert pill.inner_text() != "Đã phát xong"
    wait_until(lambda: pill.inner_text() == "Đã phát xong", timeout=90, what="the page to show done")
    assert page.evaluate("window.__sameDocument") is True  # updated in place, not reloaded
    assert page.locator("table.deliveries tbody tr").count() == 3


def test_approver_hears_the_item_and_sees_the_authors_full_name(ui_stack: Any, new_page: Any) -> None:
    editor = new_page(ui_stack.url, **DESKTOP)
    browser_login(editor, "editor")
    editor.goto("/compose")
    editor.get_by_label("Tiêu đề").fill("Nghe trước khi duyệt")
    editor.get_by_label("Nội dung thông báo").fill("Chiều nay thu gom rác tại các thôn.")
    editor.get_by_role("button", name="Gửi duyệt để phát ngay").click()
    editor.wait_for_url(re.compile(r"/approvals$"))
    approver = new_page(ui_stack.url, **DESKTOP)
    browser_login(approver, "approver")
    approver.goto("/approvals")
    item = approver.locator(".approval", has_text="Nghe trước khi duyệt")
    assert "Người soạn: Nguyễn Văn Biên" in item.inner_text()
    assert "Người soạn: editor" not in item.inner_text()
    item.get_by_role("button", name="Nghe thử").click()
    audio = item.locator("audio")
    audio.wait_for(state="visible", timeout=60_000)
    assert re.search(r"/audio/[0-9a-f]{64}\.mp3$", audio.get_attribute("src"))
    item.get_by_role("button", name="Từ chối").click()


# --- item 6: schedules -----------------------------------------------------------------------------


def test_daily_choice_and_a_clash_warning(ui_stack: Any, new_page: Any) -> None:
    page = new_page(ui_stack.url, **DESKTOP)
    browser_login(page, "approver")
    zone = ZoneInfo(ui_stack.services.settings.timezone)
    at = (datetime.now(zone) + timedelta(hours=3)).strftime("%H:%M")
    for title in ("Bản tin hằng ngày A", "Bản tin hằng ngày B"):
        page.goto("/compose")
        page.get_by_label("Tiêu đề").fill(title)
        page.get_by_label("Nội dung thông báo").fill("Chào buổi sáng bà con.")
        page.get_by_label("Hằng ngày").check()
        assert page.get_by_label("Thứ Hai").is_hidden()  # no days to pick: every day
        page.get_by_label("Giờ phát trong ngày").fill(at)
        page.get_by_role("button", name="Hẹn giờ").click()
        page.wait_for_url(re.compile(r"/schedule"))
    flash = page.locator(".flashes").inner_text()
    assert "Đã lưu lịch phát định kỳ." in flash
    assert "trùng giờ" in flash and "«Bản tin hằng ngày A»" in flash
    items = ui_stack.services.scheduler.list_schedules()
    assert {s["kind"] for s in items if s["title"].startswith("Bản tin hằng ngày")} == {"daily"}
    page.get_by_role("link", name="Tuần sau ›").click()
    days = page.locator(".day")
    assert days.count() == 7
    for i in range(7):  # next week: every day has both, each planned and marked as clashing
        airings = days.nth(i).locator(".airing", has_text="Bản tin hằng ngày")
        assert airings.count() == 2
        assert "Đã hẹn giờ" in airings.first.inner_text()
        assert airings.first.locator(".clash").count() == 1


def test_week_view_starts_at_the_bulletins_creation(ui_stack: Any, new_page: Any) -> None:
    page = new_page(ui_stack.url, **DESKTOP)
    browser_login(page, "approver")
    ui_stack.services.scheduler.create_schedule(
        {"title": "Mới tạo hôm nay", "text": "Bản tin mới.", "kind": "daily", "time": "00:01",
         "targets": ["thon-3"]},
        author="approver",
    )  # fmt: skip
    page.goto("/schedule")
    page.locator(".day.today").wait_for()
    for i in range(page.locator(".day").count()):
        day = page.locator(".day").nth(i)
        if "today" in (day.get_attribute("class") or ""):
            break
        assert day.locator(".airing", has_text="Mới tạo hôm nay").count() == 0, f"day {i} before creation"
    page.get_by_role("link", name="Tuần sau ›").click()
    assert page.locator(".airing", has_text="Mới tạo hôm nay").count() == 7


# --- item 7: the phone -----------------------------------------------------------------------------


def test_phone_menu_button_sticky_send_and_big_check_boxes(ui_stack: Any, new_page: Any) -> None:
    page = new_page(ui_stack.url, **PHONE)
    browser_login(page, "approver")
    menu = page.get_by_role("button", name="Menu")
    assert menu.is_visible()
    log_link = page.locator(".nav").get_by_role("link", name="Nhật ký")
    assert not log_link.is_visible()
    menu.click()
    assert menu.get_attribute("aria-expanded") == "true"
    for name in ("Tổng quan", "Soạn thông báo", "Lịch phát", "Chờ duyệt", "Nhật ký", "Từ điển"):
        link = page.locator(".nav").get_by_role("link", name=name)
        box = link.bounding_box()
        assert link.is_visible() and box is not None, name
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, name  # not cut off at the edge
        assert box["height"] >= 44, name
    page.locator(".nav").get_by_role("link", name="Soạn thông báo").click()
    page.wait_for_url(re.compile(r"/compose$"))
    send = page.get_by_role("button", name="Phát ngay")
    box = send.bounding_box()
    assert box is not None and box["y"] + box["height"] <= 844, box  # reachable without scrolling
    page.mouse.wheel(0, 600)
    page.wait_for_timeout(100)
    box = send.bounding_box()
    assert box is not None and 0 <= box["y"] and box["y"] + box["height"] <= 844  # still there: sticky
    summary = page.locator("#targets-summary").bounding_box()
    assert summary is not None and summary["y"] + summary["height"] <= 844  # who hears it, above send
    labels = page.locator("label.check:visible")  # the days of the week are hidden until chosen
    assert labels.count() >= 12
    for i in range(labels.count()):
        label = labels.nth(i)
        label.scroll_into_view_if_needed()
        rect = label.bounding_box()
        assert rect is not None and rect["height"] >= 44, (label.inner_text(), rect)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "compose-phone.png"))
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


# --- item 8: wording -------------------------------------------------------------------------------


def test_preview_keeps_capitals_and_flags_what_it_cannot_read(ui_stack: Any, new_page: Any) -> None:
    page = new_page(ui_stack.url, **DESKTOP)
    browser_login(page, "editor")
    page.goto("/compose")
    page.get_by_label("Nội dung thông báo").fill(
        "UBND xã Hòa Bình thông báo: họp lúc 7h30. Mời bà con 🎉 đến đủ."
    )
    page.get_by_role("button", name="Xem trước và nghe thử").click()
    preview = page.locator("#preview-text")
    preview.locator("mark").first.wait_for()
    text = preview.inner_text()
    assert "Ủy ban nhân dân xã Hòa Bình thông báo" in text
    assert ". Mời bà con" in text
    flag = preview.locator("mark.flag")
    assert flag.count() == 1 and flag.inner_text() == "🎉"
    assert "không được đọc" in flag.get_attribute("title")
    assert page.locator("#preview-flags").inner_text() == "Có 1 chỗ cần kiểm tra."


def test_stop_dialog_csv_choices_and_no_jargon(ui_stack: Any, new_page: Any) -> None:
    page = new_page(ui_stack.url, **DESKTOP)
    browser_login(page, "admin")
    page.get_by_role("link", name="Dừng tất cả").click()
    dialog = page.get_by_role("dialog", name="Dừng tất cả loa?")
    assert "vẫn phát theo giờ đã hẹn" in dialog.inner_text()
    dialog.get_by_role("button", name="Không, quay lại").click()
    page.goto("/log")
    with page.expect_download() as excel:
        page.get_by_role("link", name="Tải nhật ký cho Excel").click()
    raw = Path(excel.value.path()).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    header = raw.decode("utf-8-sig").splitlines()[0]
    assert header.startswith("Mã lượt phát;Thời gian;")
    with page.expect_download() as plain:
        page.get_by_role("link", name="Tải nhật ký (CSV)").click()
    assert Path(plain.value.path()).read_bytes().decode("utf-8-sig").startswith("Mã lượt phát,Thời gian,")
    for path in ("/", "/compose", "/schedule", "/approvals", "/log", "/lexicon", "/speakers", "/settings",
                 "/account"):  # fmt: skip
        page.goto(path)
        visible = page.locator("main").inner_text() + " ".join(page.locator("main option").all_inner_texts())
        found = JARGON.findall(visible)
        assert not found, (path, found)

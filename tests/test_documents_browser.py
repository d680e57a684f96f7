"""The compose page in headless Chromium: a photo of a công văn is read on the worker, its text
lands in the text box, and the words the machine was unsure of are listed under it, each one
selecting itself in the box when clicked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_web import ARTIFACTS, browser_login
from tests.test_documents_ocr import PAGE_1, encode, render_scan

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def test_photo_import_fills_the_box_and_lists_words_to_check(
    web_app: Any, live_server: Any, new_page: Any, page_errors: list[str], tmp_path: Path
) -> None:
    server = live_server(web_app)
    page = new_page(server.url, viewport={"width": 1280, "height": 900})
    browser_login(page, "editor")
    page.goto("/compose")
    photo = tmp_path / "cong-van.png"
    photo.write_bytes(encode(render_scan(PAGE_1[2:4], angle=1.5, seed=3, smudge="phòng"), "PNG"))
    page.locator("summary", has_text="Lấy nội dung từ công văn").click()
    page.get_by_label("Chọn tệp văn bản hoặc ảnh chụp công văn").set_input_files(str(photo))
    page.get_by_role("button", name="Lấy nội dung").click()
    review = page.locator("#ocr-review")
    review.wait_for(state="visible", timeout=90_000)
    assert "xã tổ chức tiêm" in page.get_by_label("Nội dung thông báo").input_value()
    assert "từ cần kiểm tra" in page.locator("#import-status").inner_text()
    entry = page.locator("#ocr-words button").first
    word = entry.locator("mark").inner_text()
    assert "tiêm" in entry.inner_text()  # shown in its context, to find it on the paper
    entry.click()
    selected = page.evaluate(
        "() => { const t = document.getElementById('text'); return t.value.slice(t.selectionStart, t.selectionEnd); }"
    )
    assert selected == word
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "compose-ocr.png"), full_page=True)
    assert page_errors == []

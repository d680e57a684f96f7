"""The admin's "Tải cấu hình" in the real headless Chromium: the one-time link and its QR code on
the computer, the download on a phone (its own browser, nobody logged in), and the link spent."""

from __future__ import annotations

from pathlib import Path

import pytest

from speakers.config import load_config
from tests.fixtures_web import ARTIFACTS, browser_login

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def test_admin_hands_a_phone_the_agent_yaml_through_a_qr_link(
    ui_stack, new_page, page_errors, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    admin = new_page(ui_stack.url, viewport={"width": 1280, "height": 900})
    browser_login(admin, "admin")
    admin.goto("/speakers")
    admin.locator("form[action$='/speakers/loa-09/enroll'] button").click()
    admin.wait_for_url("**/speakers/loa-09/enroll")
    qr = admin.locator(".enroll-qr svg")
    assert qr.is_visible() and qr.bounding_box()["width"] >= 150  # big enough to scan
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    admin.screenshot(path=str(ARTIFACTS / "enroll-link.png"), full_page=True)
    link = admin.locator("#enroll-url").inner_text().strip()
    assert link.startswith(ui_stack.url + "/enroll/")

    phone = new_page(ui_stack.url, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    phone.goto(link)
    assert "loa-09" in phone.locator("main").inner_text()
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    phone.screenshot(path=str(ARTIFACTS / "enroll-phone.png"), full_page=True)
    with phone.expect_download() as download:
        phone.get_by_role("button", name="Tải tệp agent.yaml").click()
    saved = tmp_path / "agent.yaml"
    download.value.save_as(saved)
    assert download.value.suggested_filename == "agent.yaml"
    config = load_config(saved)
    assert config.id == "loa-09" and config.mqtt.ca_pem and config.broker_url().tls

    assert page_errors == []
    phone.goto(link)  # spent: 410, which the browser also notes in its console
    assert "đã được dùng" in phone.locator("main").inner_text()
    assert [e for e in page_errors if "410" not in e] == []

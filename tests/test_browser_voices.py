"""Issue 12's officer-facing parts in a real headless Chromium: the compose page's voice picker (the
engines' voices by accent and gender, a "Nghe thử" sample per voice), the dashboard's notice when
a voice is set aside (quota spent), and the settings page's characters sent per paid engine.

The controller is the web harness (real SQLite, the real broadcast lifecycle and speech service)
with FPT.AI first in the engine order, talking to the local stand-in of the provider
(tests/stubs/cloud_tts.py), and espeak-ng behind it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_controller import wait_until
from tests.fixtures_web import LiveServer, add_accounts, add_fleet, browser_login
from tests.stubs.cloud_tts import CloudTtsStub

pytestmark = [pytest.mark.browser, pytest.mark.integration]

KEY = "fpt-test-key-0123456789"


class VoiceStack:
    def __init__(self, tmp_path: Path, tone_mp3: bytes) -> None:
        from broadcaster.speech import SpeechService
        from broadcaster.web import create_app
        from tests.fixtures_controller import unit_services, unit_settings

        self.stub = CloudTtsStub(audio=tone_mp3, key=KEY).start()
        tts = {
            "order": ["fpt", "espeak-ng"],
            "fpt": {
                "url": self.stub.endpoint("fpt"),
                "api_key": KEY,
                "poll_interval_s": 0.02,
                "timeout_s": 5.0,
            },
        }
        # The real speech service of these settings: it counts FPT.AI's characters in the
        # controller's database (the settings page reads them back).
        speech = SpeechService.from_settings(unit_settings(tmp_path / "instance", tts=tts))
        self.services = unit_services(
            tmp_path, fake_fleet=True, scheduler=True, commune=False, tts=tts, speech=speech
        )
        add_accounts(self.services.sessions)
        add_fleet(self.services.sessions)
        self.services.broadcasts.start()
        self.app = create_app(self.services.settings, self.services)
        self.server = LiveServer(self.app)
        self.url = self.server.url

    def close(self) -> None:
        from broadcaster.web import shutdown_app

        self.server.stop()
        shutdown_app(self.app)
        self.services.broadcasts.stop()
        self.services.scheduler.shutdown()
        self.services.db_engine.dispose()
        self.stub.stop()


@pytest.fixture(scope="module")
def voices(tmp_path_factory: pytest.TempPathFactory, tone_mp3: bytes) -> Iterator[VoiceStack]:
    stack = VoiceStack(tmp_path_factory.mktemp("voices"), tone_mp3)
    yield stack
    stack.close()


def test_voice_picker_offers_voices_by_accent_and_plays_a_sample(
    voices: VoiceStack, new_page: Any, page_errors: list[str]
) -> None:
    page = new_page(voices.url, viewport={"width": 1280, "height": 900})
    browser_login(page, "editor")
    page.goto("/compose")
    picker = page.get_by_label("Giọng đọc", exact=True)
    groups = picker.locator("optgroup")
    labels = [groups.nth(i).get_attribute("label") for i in range(groups.count())]
    assert labels[:3] == ["Giọng miền Bắc", "Giọng miền Trung", "Giọng miền Nam"]
    south = picker.locator('optgroup[label="Giọng miền Nam"] option')
    assert "Lan Nhi — nữ, miền Nam (FPT.AI)" in south.all_inner_texts()
    picker.select_option(label="Lan Nhi — nữ, miền Nam (FPT.AI)")
    assert page.locator("#engine").input_value() == "fpt"  # the voice brings its engine
    before = voices.stub.calls("fpt")
    page.get_by_role("button", name="Nghe thử giọng này").click()
    audio = page.locator("#voice-sample-audio")
    audio.wait_for(state="visible", timeout=30_000)
    assert re.search(r"/audio/[0-9a-f]{64}\.mp3$", audio.get_attribute("src"))
    assert voices.stub.calls("fpt") > before
    assert voices.stub.last("fpt").headers["voice"] == "lannhi"
    assert voices.stub.problems == []
    # Another accent, another sample.
    picker.select_option(label="Lê Minh — nam, miền Bắc (FPT.AI)")
    page.get_by_role("button", name="Nghe thử giọng này").click()
    wait_until(lambda: voices.stub.last("fpt").headers["voice"] == "leminh", timeout=30, what="leminh asked")
    assert page_errors == []


def test_a_voice_set_aside_is_noticed_on_the_dashboard_and_usage_is_shown(
    voices: VoiceStack, new_page: Any
) -> None:
    page = new_page(voices.url, viewport={"width": 1280, "height": 900})
    browser_login(page, "admin")
    page.goto("/settings")
    row = page.locator("#tts-usage tr[data-engine='fpt']")
    assert "FPT.AI" in row.inner_text()
    today = int(row.locator("td").nth(1).inner_text().replace(".", ""))
    assert today > 0  # the samples of the test before were sent to FPT.AI
    voices.stub.mode = "quota"
    try:
        page.goto("/compose")
        page.get_by_label("Giọng đọc", exact=True).select_option(label="Mỹ An — nữ, miền Trung (FPT.AI)")
        page.get_by_role("button", name="Nghe thử giọng này").click()
        status = page.locator("#voice-sample-status.error")
        status.wait_for(timeout=30_000)
        assert "Không tạo được âm thanh" in status.inner_text()
        assert not re.search(r"quota|FPT\.AI:|Out of", status.inner_text())  # no English for the officer
        page.goto("/")
        notice = page.locator("#engine-notices li")
        notice.first.wait_for()
        text = notice.first.inner_text()
        assert text.startswith("Giọng đọc «FPT.AI» tạm thời không dùng")
        assert "Bản tin vẫn được đọc bằng giọng khác." in text
    finally:
        voices.stub.mode = "ok"


def test_the_lexicon_page_plays_a_word_with_the_chosen_voice(
    voices: VoiceStack, new_page: Any, page_errors: list[str]
) -> None:
    page = new_page(voices.url, viewport={"width": 1280, "height": 900})
    browser_login(page, "editor")
    page.goto("/lexicon")
    card = page.locator("#lexicon-try")
    card.get_by_label("Từ hoặc câu cần nghe").fill("UBND xã")
    card.get_by_label("Kiểu giọng").select_option(label="Lan Nhi — nữ, miền Nam (FPT.AI)")
    assert card.get_by_label("Giọng đọc", exact=True).input_value() == "fpt"  # the voice brings its engine
    card.get_by_role("button", name="Nghe thử").click()
    audio = page.locator("#lexicon-try-audio")
    audio.wait_for(state="visible", timeout=30_000)
    assert re.search(r"/audio/[0-9a-f]{64}\.mp3$", audio.get_attribute("src"))
    sent = voices.stub.last("fpt")
    assert sent.headers["voice"] == "lannhi" and "ủy ban nhân dân" in sent.body.decode()
    assert page_errors == []

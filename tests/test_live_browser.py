"""Live speech from Debian's headless Chromium with a fake microphone playing a known tone, over the
controller's own HTTPS (browsers open the microphone only on secure pages), to nine simulated
clusters whose player is the file player: the tone must come out of the clusters' files.

One controller, web server and browser for the module."""

from __future__ import annotations

import array
import math
import shutil
import tempfile
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_controller import wait_until
from tests.fixtures_live import goertzel_power, peak_frequency
from tests.fixtures_web import CHROMIUM, CHROMIUM_ARGS, PASSWORD, add_accounts

pytestmark = [pytest.mark.browser, pytest.mark.integration]

# The fake microphone's tone: far from the test sources' 440/660 Hz, well inside what the
# conditioner (high-pass, 12 kHz frames) passes.
TONE_HZ = 750.0
MIC_RATE = 48_000


def _tone_wav(path: Path, seconds: float = 4.0) -> None:
    """A tone in short bursts (speech-like: a steady tone would be taken for noise and suppressed
    by the browser's noise suppression)."""
    samples = array.array("h")
    for n in range(int(seconds * MIC_RATE)):
        on = (n / MIC_RATE) % 0.5 < 0.4
        samples.append(int(12_000 * math.sin(2 * math.pi * TONE_HZ * n / MIC_RATE)) if on else 0)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(MIC_RATE)
        wav.writeframes(samples.tobytes())


@dataclass
class Stack:
    url: str
    controller: Any
    players: Path
    ca: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from broadcaster.broker import ManagedBroker, find_mosquitto
    from broadcaster.web import create_app, shutdown_app
    from broadcaster.web.serve import WebServer, web_tls_files
    from tests.fixtures_broker import BrokerFixture
    from tests.fixtures_controller import E2EController

    find_mosquitto()
    workdir = Path(tempfile.mkdtemp(prefix="loa-mosquitto-"))
    workdir.chmod(0o755)
    broker = ManagedBroker(workdir / "broker")
    broker.start()
    players = tmp_path_factory.mktemp("players")
    controller = server = app = None
    try:
        controller = E2EController(
            BrokerFixture(broker),
            tmp_path_factory.mktemp("live-web") / "instance",
            sim_options={"player": "file", "player_dir": players},
            web={"https": True},
        )
        add_accounts(controller.services.sessions)
        app = create_app(controller.services.settings, controller.services)
        tls = web_tls_files(controller.services.settings, host="127.0.0.1")
        assert tls.ca is not None
        server = WebServer(app, "127.0.0.1", 0, tls=tls).start()
        yield Stack(server.url, controller, players, tls.ca)
    finally:
        if server is not None:
            server.stop()
        if app is not None:
            shutdown_app(app)
        if controller is not None:
            controller.close()
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def mic_browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Chromium with a fake microphone that plays the tone file (no permission prompt)."""
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: run bash scripts/test (it installs it)")
    from playwright.sync_api import sync_playwright

    tone = tmp_path_factory.mktemp("mic") / "tone.wav"
    _tone_wav(tone)
    mic = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={tone}",
        "--autoplay-policy=no-user-gesture-required",
    ]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS + mic)
        yield browser
        browser.close()


def _page(browser: Any, stack: Stack, errors: list[str]) -> Any:
    # The instance CA is not in the browser's store; the page is still https (a secure context).
    context = browser.new_context(base_url=stack.url, locale="vi-VN", ignore_https_errors=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.goto("/login")
    page.get_by_label("Tên đăng nhập").fill("approver")
    page.get_by_label("Mật khẩu").fill(PASSWORD)
    page.get_by_role("button", name="Đăng nhập").click()
    page.wait_for_url(lambda url: "/login" not in url)
    page.goto("/live")
    return page


def _start(page: Any, zone_name: str) -> int:
    page.get_by_label("Tất cả loa").uncheck()
    page.get_by_label(zone_name).check()
    page.get_by_role("button", name="Bắt đầu").click()
    page.wait_for_function("() => window.loaLive && window.loaLive.id")
    assert page.evaluate("window.isSecureContext") is True
    return int(page.evaluate("window.loaLive.id"))


def _stream_files(players: Path, speakers: list[str], bid: int) -> dict[str, list[int]]:
    """The samples each cluster's file player wrote for the live item."""
    out: dict[str, list[int]] = {}
    for speaker in speakers:
        for path in sorted((players / speaker).glob(f"*-{bid}-stream.wav")):
            with wave.open(str(path), "rb") as wav:
                rate = wav.getframerate()
                data = array.array("h", wav.readframes(wav.getnframes()))
            out.setdefault(speaker, []).extend(data)
            assert rate == 12_000
    return out


def _assert_tone(samples: list[int], speaker: str) -> None:
    loud = [s for s in samples if abs(s) > 500]
    assert len(loud) > 12_000, f"{speaker} played less than a second of sound"
    # A second and a half from the middle: the strongest frequency between 300 and 1500 Hz is the
    # tone, and most of the sound is at it.
    window = samples[len(samples) // 4 : len(samples) // 4 + 18_000]
    assert abs(peak_frequency(window, 12_000, 300, 1500, 10) - TONE_HZ) <= 10, speaker
    at_tone = goertzel_power(window, 12_000, TONE_HZ)
    off_tone = goertzel_power(window, 12_000, TONE_HZ * 1.5)
    assert at_tone > 10 * off_tone and at_tone > 0.2, (speaker, at_tone, off_tone)


def test_live_speech_from_the_browser_microphone_reaches_the_clusters(stack: Stack, mic_browser: Any) -> None:
    errors: list[str] = []
    page = _page(mic_browser, stack, errors)
    bid = _start(page, "Thôn Đoài")  # loa-04..06
    manager = stack.controller.broadcasts
    stack.controller.wait_state(bid, "playing", timeout=20)
    page.wait_for_timeout(4000)  # four seconds of "speech"
    page.get_by_role("button", name="Kết thúc").click()
    page.get_by_text("Xem lượt phát").wait_for()
    result = stack.controller.wait_state(bid, "done", "partial", "failed", timeout=30)
    assert result["state"] == "done", (result["reason"], result["deliveries"])
    assert result["kind"] == "live" and result["source_name"] == "Phát trực tiếp"
    files = wait_until(
        lambda: (
            (f := _stream_files(stack.players, ["loa-04", "loa-05", "loa-06"], bid)) and len(f) == 3 and f
        ),
        timeout=10,
        what="the three clusters' files",
    )
    for speaker, samples in files.items():
        _assert_tone(samples, speaker)
    assert not _stream_files(stack.players, ["loa-01", "loa-07"], bid)  # not targeted
    wait_until(lambda: (manager.get(bid) or {}).get("audio_key"), timeout=20, what="the recording kept")
    assert errors == []


def test_the_browser_closed_mid_live_ends_the_item_by_itself(stack: Stack, mic_browser: Any) -> None:
    errors: list[str] = []
    page = _page(mic_browser, stack, errors)
    bid = _start(page, "Thôn Trung")  # loa-07..09
    stack.controller.wait_state(bid, "playing", timeout=20)
    page.wait_for_timeout(2000)
    # The officer closed the browser (or its network went away): no «Kết thúc» reaches the
    # controller, not even the page's last-moment one.
    page.route("**/live/*/end", lambda route: route.abort())
    page.context.close()
    result = stack.controller.wait_state(bid, "done", "partial", "failed", timeout=30)
    assert result["state"] == "done", (result["reason"], result["deliveries"])
    assert stack.controller.broadcasts.feed_live(bid, b"\0\0" * 1600) is False
    files = wait_until(
        lambda: (
            (f := _stream_files(stack.players, ["loa-07", "loa-08", "loa-09"], bid)) and len(f) == 3 and f
        ),
        timeout=10,
        what="the three clusters' files",
    )
    for speaker, samples in files.items():
        assert sum(1 for s in samples if abs(s) > 500) > 6_000, speaker  # what was said before closing
    assert any("kết thúc" in m for m in stack.controller.log_messages(bid))

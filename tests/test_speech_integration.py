"""The speech service with the real engines (espeak-ng, piper with the joe voice, gTTS against a
local stub), and the ``broadcaster tts`` command in a subprocess."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from broadcaster.audio.config import AudioConfig
from broadcaster.audio.store import AudioStore
from broadcaster.settings import load_settings
from broadcaster.speech import SpeechService
from broadcaster.tts import TtsConfig, build_chain
from tests.fakes import FakeNormalizer
from tests.fixtures_speech import GttsStub, audio_facts

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
VI_TEXT = "Ủy ban nhân dân xã thông báo, lịch tiêm phòng cho đàn gia súc."


def service(tmp_path: Path, tts: TtsConfig, **audio: object) -> SpeechService:
    return SpeechService(
        build_chain(tts),
        AudioStore(tmp_path / "audio_cache", 1 << 30),
        AudioConfig(**audio),
        normalizer=FakeNormalizer(),
    )


def assert_broadcast_ready(path: Path, *, kbps: int = 48) -> None:
    facts = audio_facts(path)
    assert facts.codec == "mp3" and facts.channels == 1 and facts.sample_rate == 24_000
    assert abs(facts.bit_rate - kbps * 1000) <= 2_000
    assert abs(facts.integrated_lufs - (-16.0)) <= 1.0
    assert facts.true_peak_dbtp <= -1.5


def test_espeak_render_is_broadcast_ready(tmp_path: Path) -> None:
    speech = service(tmp_path, TtsConfig(order=["espeak-ng"]))
    result = speech.render(VI_TEXT)
    assert result.engine == "espeak-ng" and result.voice == "vi" and not result.cache_hit
    assert_broadcast_ready(result.path)
    facts = audio_facts(result.path)
    assert result.duration_s == pytest.approx(facts.duration_s, abs=0.1)
    assert result.loudness_lufs == pytest.approx(facts.integrated_lufs, abs=0.1)
    assert result.true_peak_dbtp == pytest.approx(facts.true_peak_dbtp, abs=0.1)
    assert result.sha256 == hashlib.sha256(result.path.read_bytes()).hexdigest()
    # Two chimes (about 1.7 s each) and the speech.
    assert 6.0 < result.duration_s < 20.0


def test_espeak_repeat_twice_roughly_doubles(tmp_path: Path) -> None:
    speech = service(tmp_path, TtsConfig(order=["espeak-ng"]), repeat_connector="")
    once = speech.render(VI_TEXT, chime=False)
    twice = speech.render(VI_TEXT, chime=False, repeat=2)
    assert 1.8 * once.duration_s < twice.duration_s < 2.2 * once.duration_s
    assert_broadcast_ready(twice.path)


def test_piper_voice_file_is_used_first(tmp_path: Path, joe_voice: Path) -> None:
    speech = service(tmp_path, TtsConfig(order=["piper", "espeak-ng"], piper={"voices": [joe_voice]}))
    result = speech.render("Good morning. The commune office is open today.")
    assert (result.engine, result.voice) == ("piper", "en_US-joe-medium")
    assert_broadcast_ready(result.path)
    assert speech.engines()[0]["voices"] == ["en_US-joe-medium"]


def test_piper_without_voice_file_is_skipped(tmp_path: Path) -> None:
    speech = service(tmp_path, TtsConfig(order=["piper", "espeak-ng"]))
    assert speech.render(VI_TEXT).engine == "espeak-ng"
    assert speech.engines()[0]["available"] is False


def test_gtts_is_used_when_it_answers(tmp_path: Path, gtts_stub: GttsStub) -> None:
    tts = TtsConfig(order=["gtts", "espeak-ng"], gtts={"base_url": gtts_stub.url, "retries": 0})
    speech = service(tmp_path, tts)
    result = speech.render(VI_TEXT)
    assert (result.engine, result.voice) == ("gtts", "vi")
    assert gtts_stub.texts == ["ủy ban nhân dân xã thông báo,", "lịch tiêm phòng cho đàn gia súc."]
    assert_broadcast_ready(result.path)


def test_gtts_timeout_falls_back_and_is_not_waited_on_again(tmp_path: Path, gtts_stub: GttsStub) -> None:
    gtts_stub.mode = "hang"
    tts = TtsConfig(
        order=["gtts", "espeak-ng"], gtts={"base_url": gtts_stub.url, "timeout_s": 0.3, "retries": 1,
                                            "retry_backoff_s": 0.0},
    )  # fmt: skip
    speech = service(tmp_path, tts)
    first = speech.render(VI_TEXT)
    assert first.engine == "espeak-ng"
    assert gtts_stub.requests == 2  # one request and one retry, both timed out
    second = speech.render("Đề nghị bà con chú ý.")
    assert second.engine == "espeak-ng"
    assert gtts_stub.requests == 2  # in cool-down: not asked again
    assert speech.engines()[0]["cooling_down"].startswith("gTTS chunk 1/1: no reply within 0.3 s")


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "BROADCASTER_TTS__ORDER": "[espeak-ng]",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("BROADCASTER_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "broadcaster", "--instance", str(tmp_path / "instance"), "tts", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )


def parse(stdout: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in stdout.strip().splitlines())


def test_cli_tts_writes_the_file_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "out.mp3"
    first = run_cli(tmp_path, "UBND xã Phúc Hòa thông báo lịch tiêm phòng.", "-o", str(out))
    assert first.returncode == 0, first.stderr
    lines = parse(first.stdout)
    assert lines["engine"] == "espeak-ng" and lines["voice"] == "vi" and lines["cache"] == "miss"
    assert lines["duration"].endswith(" s") and float(lines["duration"][:-2]) > 3
    assert abs(float(lines["loudness"].removesuffix(" LUFS")) + 16) <= 1.0
    assert float(lines["peak"].removesuffix(" dBTP")) <= -1.5
    assert_broadcast_ready(out)
    store_file = tmp_path / "instance" / "audio_cache" / f"{lines['key']}.mp3"
    assert store_file.read_bytes() == out.read_bytes()

    out2 = tmp_path / "again.mp3"
    second = run_cli(
        tmp_path, "UBND xã Phúc Hòa thông báo lịch tiêm phòng.", "-o", str(out2), "--repeat", "1"
    )
    assert second.returncode == 0, second.stderr
    assert parse(second.stdout)["cache"] == "hit"
    assert out2.read_bytes() == out.read_bytes()


def test_cli_tts_options_and_errors(tmp_path: Path) -> None:
    out = tmp_path / "out.mp3"
    ok = run_cli(tmp_path, "Xin chào bà con.", "-o", str(out), "--voice", "vi-vn-x-south", "--repeat", "2",
                 "--no-chime", "--engine", "espeak-ng")  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert parse(ok.stdout)["voice"] == "vi-vn-x-south"
    empty = run_cli(tmp_path, "   ", "-o", str(tmp_path / "empty.mp3"))
    assert empty.returncode == 1 and "trống" in empty.stderr
    assert not (tmp_path / "empty.mp3").exists()
    bad_engine = run_cli(tmp_path, "Xin chào.", "-o", str(tmp_path / "x.mp3"), "--engine", "festival")
    assert bad_engine.returncode == 1 and "Không có giọng đọc «festival»" in bad_engine.stderr


def test_service_from_settings_uses_the_instance_store(tmp_path: Path) -> None:
    settings = load_settings(
        {"instance": tmp_path / "inst"}, environ={"BROADCASTER_TTS__ORDER": "[espeak-ng]"}
    )
    speech = SpeechService.from_settings(settings)
    assert speech.store.root == tmp_path / "inst" / "audio_cache"
    assert speech.store.max_bytes == 2 * 1024**3
    assert [e["name"] for e in speech.engines()] == ["espeak-ng"]

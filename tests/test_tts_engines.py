"""The real engines: espeak-ng (real binary), piper (the joe voice), gTTS (against a local stub of
Google's endpoint; no network)."""

from __future__ import annotations

import io
import stat
import wave
from pathlib import Path

import pytest

from broadcaster.tts import AudioClip, EngineUnavailable, TtsConfig, TtsEngine, TtsError, build_engines
from broadcaster.tts.config import EspeakOptions, GttsOptions, PiperOptions
from broadcaster.tts.espeak import EspeakEngine
from broadcaster.tts.gtts_engine import GttsEngine
from broadcaster.tts.piper_engine import PiperEngine
from tests.fixtures_speech import GttsStub

pytestmark = pytest.mark.integration


def wav_seconds(clip: AudioClip) -> tuple[float, int, int]:
    with wave.open(io.BytesIO(clip.data)) as wav:
        return wav.getnframes() / wav.getframerate(), wav.getframerate(), wav.getnchannels()


# --- espeak-ng -------------------------------------------------------------------------------


def test_espeak_speaks_vietnamese_offline() -> None:
    engine = EspeakEngine()
    assert engine.available()
    assert engine.default_voice() == "vi"
    assert {"vi", "vi-vn-x-south"} <= set(engine.voices())
    clip = engine.synthesize("ủy ban nhân dân xã phúc hòa thông báo.")
    seconds, rate, channels = wav_seconds(clip)
    assert clip.format == "wav"
    assert rate == 22050 and channels == 1
    assert 1.0 < seconds < 8.0


def test_espeak_longer_text_gives_longer_audio_and_reads_leading_dash() -> None:
    engine = EspeakEngine()
    short = wav_seconds(engine.synthesize("xin chào"))[0]
    longer = wav_seconds(
        engine.synthesize("-xin chào bà con, hôm nay xã tổ chức tiêm phòng cho đàn gia súc")
    )[0]
    assert longer > 2 * short


def test_espeak_unknown_voice_and_missing_binary_are_unavailable() -> None:
    with pytest.raises(EngineUnavailable, match="no voice"):
        EspeakEngine().synthesize("xin chào", "klingon")
    missing = EspeakEngine(EspeakOptions(binary="/nonexistent/espeak-ng"))
    assert not missing.available()
    with pytest.raises(EngineUnavailable, match="not installed"):
        missing.synthesize("xin chào")


def test_espeak_hang_is_cut_by_its_timeout(tmp_path: Path) -> None:
    fake = tmp_path / "espeak-ng"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    engine = EspeakEngine(EspeakOptions(binary=str(fake), timeout_s=0.3))
    with pytest.raises(TtsError, match="timed out"):
        engine.synthesize("xin chào")


def test_espeak_failure_reports_stderr(tmp_path: Path) -> None:
    fake = tmp_path / "espeak-ng"
    fake.write_text("#!/bin/sh\necho 'voice data missing' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    with pytest.raises(TtsError, match="exited with 3: voice data missing"):
        EspeakEngine(EspeakOptions(binary=str(fake))).synthesize("xin chào")


# --- piper -----------------------------------------------------------------------------------


def test_piper_with_a_voice_file(joe_voice: Path) -> None:
    engine = PiperEngine(PiperOptions(voices=[joe_voice]))
    assert engine.available()
    assert engine.voices() == ["en_US-joe-medium"]
    assert engine.default_voice() == "en_US-joe-medium"
    clip = engine.synthesize("Good morning. The commune office is open today.")
    seconds, rate, channels = wav_seconds(clip)
    assert rate == 22050 and channels == 1
    assert 1.5 < seconds < 8.0
    slower = PiperEngine(PiperOptions(voices=[joe_voice], length_scale=1.6))
    assert (
        wav_seconds(slower.synthesize("Good morning. The commune office is open today."))[0] > seconds * 1.3
    )


def test_piper_without_voice_is_unavailable(tmp_path: Path) -> None:
    engine = PiperEngine(PiperOptions())
    assert not engine.available()
    with pytest.raises(EngineUnavailable, match="no piper voice"):
        engine.synthesize("hello")
    missing = PiperEngine(PiperOptions(voices=[tmp_path / "vi_VN-nothing-medium.onnx"]))
    assert not missing.available()
    assert missing.voices() == []
    with pytest.raises(EngineUnavailable, match="not configured or its files are missing"):
        missing.synthesize("hello", "vi_VN-nothing-medium")


def test_piper_broken_voice_file_is_unavailable(tmp_path: Path) -> None:
    onnx = tmp_path / "broken.onnx"
    onnx.write_bytes(b"not a model")
    Path(f"{onnx}.json").write_text("{}")
    engine = PiperEngine(PiperOptions(voices=[onnx]))
    with pytest.raises(EngineUnavailable, match="cannot load piper voice"):
        engine.synthesize("hello")


# --- gTTS --------------------------------------------------------------------------------------


def gtts(stub: GttsStub, **options: object) -> GttsEngine:
    defaults = {"base_url": stub.url, "timeout_s": 2.0, "retries": 0, "retry_backoff_s": 0.0}
    return GttsEngine(GttsOptions(**{**defaults, **options}))


def test_gtts_returns_the_audio_of_each_chunk(gtts_stub: GttsStub) -> None:
    engine = gtts(gtts_stub)
    clip = engine.synthesize("xin chào bà con.")
    assert clip.format == "mp3"
    assert clip.data == gtts_stub.audio
    assert gtts_stub.texts == ["xin chào bà con."]


def test_gtts_chunks_long_text_at_boundaries(gtts_stub: GttsStub) -> None:
    text = (
        "hôm nay ủy ban nhân dân xã thông báo lịch tiêm phòng cho đàn gia súc gia cầm trên địa bàn toàn xã, "
        "đề nghị các hộ gia đình chủ động đưa vật nuôi đến điểm tiêm theo đúng giờ quy định của ban thú y, "
        "mọi thắc mắc xin liên hệ văn phòng ủy ban"
    )
    clip = gtts(gtts_stub).synthesize(text)
    assert len(gtts_stub.texts) >= 3
    assert all(len(part) <= 100 for part in gtts_stub.texts)
    assert " ".join(gtts_stub.texts).replace(",", "").split() == text.replace(",", "").split()
    assert clip.data == gtts_stub.audio * len(gtts_stub.texts)
    assert clip.info["chunks"] == len(gtts_stub.texts)


def test_gtts_retries_then_succeeds(gtts_stub: GttsStub) -> None:
    gtts_stub.fail_first = 2
    clip = gtts(gtts_stub, retries=2).synthesize("xin chào.")
    assert clip.data == gtts_stub.audio
    assert gtts_stub.requests == 3


def test_gtts_gives_up_after_its_retries(gtts_stub: GttsStub) -> None:
    gtts_stub.mode = "error"
    with pytest.raises(TtsError, match="HTTP 503"):
        gtts(gtts_stub, retries=1).synthesize("xin chào.")
    assert gtts_stub.requests == 2


def test_gtts_client_error_is_not_retried(gtts_stub: GttsStub) -> None:
    gtts_stub.mode, gtts_stub.status = "error", 400
    with pytest.raises(TtsError, match="HTTP 400"):
        gtts(gtts_stub, retries=3).synthesize("xin chào.")
    assert gtts_stub.requests == 1


def test_gtts_times_out_on_a_silent_server(gtts_stub: GttsStub) -> None:
    gtts_stub.mode = "hang"
    with pytest.raises(TtsError, match="no reply within 0.3 s"):
        gtts(gtts_stub, timeout_s=0.3).synthesize("xin chào.")


def test_gtts_unreachable_host_is_a_tts_error() -> None:
    # Port 9 on loopback: nothing listens, the connection is refused at once (no network used).
    engine = GttsEngine(GttsOptions(base_url="http://127.0.0.1:9", timeout_s=1, retries=0))
    with pytest.raises(TtsError, match="request failed"):
        engine.synthesize("xin chào.")


def test_gtts_reply_without_audio_is_a_tts_error(gtts_stub: GttsStub) -> None:
    gtts_stub.audio = b""
    with pytest.raises(TtsError, match="no audio"):
        gtts(gtts_stub).synthesize("xin chào.")


def test_gtts_voice_and_punctuation_only_text() -> None:
    engine = GttsEngine(GttsOptions(base_url="http://127.0.0.1:9"))
    assert engine.voices() == ["vi"] and engine.default_voice() == "vi"
    with pytest.raises(EngineUnavailable):
        engine.synthesize("xin chào", "en")
    with pytest.raises(TtsError, match="cannot read"):
        engine.synthesize("...")


# --- configuration ------------------------------------------------------------------------------


def test_engines_follow_the_configured_order(joe_voice: Path) -> None:
    config = TtsConfig(order=["espeak-ng", "piper"], piper={"voices": [joe_voice]})
    engines = build_engines(config)
    assert [e.name for e in engines] == ["espeak-ng", "piper"]
    assert all(isinstance(e, TtsEngine) for e in engines)


def test_config_rejects_unknown_and_duplicate_engines() -> None:
    with pytest.raises(ValueError, match="unknown engine"):
        TtsConfig(order=["gtts", "festival"])
    with pytest.raises(ValueError, match="twice"):
        TtsConfig(order=["gtts", "gtts"])
    with pytest.raises(ValueError, match="at least one"):
        TtsConfig(order=[])

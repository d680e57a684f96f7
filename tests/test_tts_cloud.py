"""The cloud engines (FPT.AI, Viettel AI, Zalo AI, Google Cloud, Azure) against a local stub of
each provider (tests/stubs/cloud_tts.py): the request as documented, and every kind of answer."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from broadcaster.settings import load_settings
from broadcaster.tts import (
    CLOUD_ENGINES,
    EngineUnavailable,
    Gender,
    Region,
    TtsAuthError,
    TtsBadResponse,
    TtsConfig,
    TtsError,
    TtsQuotaError,
    TtsRateLimited,
    TtsTimeout,
    build_chain,
    build_engine,
)
from broadcaster.tts.azure import ssml
from broadcaster.tts.cloud import CloudEngine, sniff_audio
from tests.stubs.cloud_tts import CloudTtsStub

KEY = "sk-LEAK-7f3a9c2e51"


@pytest.fixture
def stub(tone_mp3: bytes) -> Iterator[CloudTtsStub]:
    server = CloudTtsStub(audio=tone_mp3, key=KEY).start()
    try:
        yield server
    finally:
        server.stop()


def config_for(stub: CloudTtsStub, name: str, *, key: str | None = KEY, **extra: Any) -> TtsConfig:
    """A TtsConfig whose engine ``name`` talks to the stub."""
    section = name.replace("-", "_")
    options: dict[str, Any] = {"url": stub.endpoint(name), "timeout_s": 5.0, **extra}
    if key is not None:
        options["api_key"] = key
    if name == "fpt":
        options.setdefault("poll_interval_s", 0.02)
        options.setdefault("poll_timeout_s", 5.0)
    return TtsConfig(order=[name, "espeak-ng"], **{section: options})


def engine_for(stub: CloudTtsStub, name: str, **extra: Any) -> CloudEngine:
    engine = build_engine(name, config_for(stub, name, **extra))
    assert isinstance(engine, CloudEngine)
    return engine


TEXT = "Ủy ban nhân dân xã thông báo lịch tiêm phòng."


# --- success and the request as documented ------------------------------------------------------


@pytest.mark.parametrize("name", CLOUD_ENGINES)
def test_success_returns_the_providers_mp3(stub: CloudTtsStub, name: str, tone_mp3: bytes) -> None:
    engine = engine_for(stub, name)
    clip = engine.synthesize(TEXT)
    assert clip.format == "mp3" and clip.data == tone_mp3
    assert stub.problems == []
    assert stub.calls(name) == 1


def test_fpt_request_is_the_documented_one(stub: CloudTtsStub) -> None:
    engine_for(stub, "fpt", speed=-1).synthesize(TEXT, "leminh")
    sent = stub.last("fpt")
    assert sent.method == "POST"
    assert sent.headers["api-key"] == KEY
    assert (sent.headers["voice"], sent.headers["speed"], sent.headers["format"]) == ("leminh", "-1", "mp3")
    assert sent.body.decode("utf-8") == TEXT
    assert stub.problems == []


def test_fpt_pads_a_piece_shorter_than_its_minimum(stub: CloudTtsStub) -> None:
    engine_for(stub, "fpt").synthesize("Ừ")
    assert stub.last("fpt").body.decode("utf-8") == "Ừ.."
    assert stub.problems == []


def test_viettel_request_is_the_documented_one(stub: CloudTtsStub) -> None:
    engine_for(stub, "viettel", speed=0.9).synthesize(TEXT, "hcm-diemmy")
    assert stub.last("viettel").json() == {
        "text": TEXT,
        "voice": "hcm-diemmy",
        "speed": 0.9,
        "tts_return_option": 3,
        "token": KEY,
        "without_filter": False,
    }


def test_zalo_request_is_the_documented_one(stub: CloudTtsStub) -> None:
    engine_for(stub, "zalo", speed=0.9).synthesize(TEXT, "4")
    sent = stub.last("zalo")
    assert sent.headers["apikey"] == KEY
    assert sent.form() == {"input": TEXT, "speaker_id": "4", "speed": "0.9", "encode_type": "1"}


def test_google_request_is_the_documented_one_with_the_key_out_of_the_url(stub: CloudTtsStub) -> None:
    engine_for(stub, "google-cloud").synthesize(TEXT, "vi-VN-Wavenet-D")
    sent = stub.last("google-cloud")
    assert sent.headers["x-goog-api-key"] == KEY and KEY not in sent.path
    assert sent.json() == {
        "input": {"text": TEXT},
        "voice": {"languageCode": "vi-VN", "name": "vi-VN-Wavenet-D"},
        "audioConfig": {"audioEncoding": "MP3", "speakingRate": 1.0},
    }


def test_google_accepts_a_bearer_token_instead_of_a_key(stub: CloudTtsStub) -> None:
    engine = engine_for(stub, "google-cloud", key=None, access_token=KEY)
    assert engine.available()
    engine.synthesize(TEXT)
    assert stub.last("google-cloud").headers["authorization"] == f"Bearer {KEY}"
    assert stub.problems == []


def test_azure_request_is_ssml_with_the_voice_and_escaped_text(stub: CloudTtsStub) -> None:
    engine_for(stub, "azure").synthesize("Giá 5 < 7 & 8 > 2 'đồng'", "vi-VN-NamMinhNeural")
    sent = stub.last("azure")
    assert sent.headers["ocp-apim-subscription-key"] == KEY
    assert sent.body.decode() == ssml("Giá 5 < 7 & 8 > 2 'đồng'", "vi-VN-NamMinhNeural")
    assert "&lt; 7 &amp; 8 &gt;" in sent.body.decode()
    assert stub.problems == []


def test_azure_rate_goes_into_prosody() -> None:
    assert '<prosody rate="-10%">xin chào</prosody>' in ssml("xin chào", "vi-VN-HoaiMyNeural", -10)


def test_azure_url_is_made_from_the_region() -> None:
    engine = build_engine("azure", TtsConfig(azure={"region": "eastasia", "api_key": KEY}))
    assert engine.url == "https://eastasia.tts.speech.microsoft.com/cognitiveservices/v1"  # type: ignore[attr-defined]


# --- async audio links ---------------------------------------------------------------------------


def test_fpt_polls_the_async_link_until_the_mp3_is_there(stub: CloudTtsStub, tone_mp3: bytes) -> None:
    stub.pending_polls = 3
    clip = engine_for(stub, "fpt").synthesize(TEXT)
    assert clip.data == tone_mp3
    assert stub.fetches("/fpt-audio/") == 4  # three 404s, then the audio
    assert stub.problems == []  # the link was fetched without the key


def test_fpt_gives_up_when_the_link_never_fills(stub: CloudTtsStub) -> None:
    stub.pending_polls = 10_000
    with pytest.raises(TtsTimeout, match="not ready after 0.3 s"):
        engine_for(stub, "fpt", poll_timeout_s=0.3).synthesize(TEXT)
    assert stub.fetches("/fpt-audio/") >= 2


def test_zalo_waits_for_its_streaming_link(stub: CloudTtsStub, tone_mp3: bytes) -> None:
    stub.pending_polls = 1
    assert engine_for(stub, "zalo").synthesize(TEXT).data == tone_mp3
    assert stub.fetches("/zalo-audio/") == 2


# --- failures --------------------------------------------------------------------------------------

EXPECTED: dict[str, type[TtsError]] = {
    "auth": TtsAuthError,
    "quota": TtsQuotaError,
    "rate_limit": TtsRateLimited,
    "non_json": TtsBadResponse,
    "missing_fields": TtsBadResponse,
    "not_audio": TtsBadResponse,
    "slow": TtsTimeout,
}


@pytest.mark.parametrize("mode", list(EXPECTED))
@pytest.mark.parametrize("name", CLOUD_ENGINES)
def test_each_failure_raises_its_typed_error(stub: CloudTtsStub, name: str, mode: str) -> None:
    stub.mode = mode
    engine = engine_for(stub, name, timeout_s=0.3 if mode == "slow" else 5.0)
    with pytest.raises(EXPECTED[mode]) as raised:
        engine.synthesize(TEXT)
    assert engine.label_vi in str(raised.value)
    assert stub.problems == []


@pytest.mark.parametrize("name", CLOUD_ENGINES)
def test_a_server_error_is_a_plain_transient_failure(stub: CloudTtsStub, name: str) -> None:
    stub.mode = "server_error"
    with pytest.raises(TtsError) as raised:
        engine_for(stub, name).synthesize(TEXT)
    assert raised.value.kind == "error" and "500" in str(raised.value)


def test_a_rate_limit_carries_the_providers_retry_after(stub: CloudTtsStub) -> None:
    stub.mode = "rate_limit"
    with pytest.raises(TtsRateLimited) as raised:
        engine_for(stub, "fpt").synthesize(TEXT)
    assert raised.value.retry_after_s == 7.0


def test_an_unreachable_provider_is_a_tts_error(stub: CloudTtsStub) -> None:
    config = TtsConfig(fpt={"api_key": KEY, "url": "http://127.0.0.1:9/hmi/tts/v5", "timeout_s": 2})
    with pytest.raises(TtsError, match="FPT.AI cannot be reached"):
        build_engine("fpt", config).synthesize(TEXT)


def test_a_link_to_a_non_http_scheme_is_refused(stub: CloudTtsStub) -> None:
    engine = engine_for(stub, "fpt")
    with pytest.raises(TtsBadResponse, match="refusing a file URL"):
        engine._fetch_when_ready("file:///etc/passwd", timeout_s=1, first_wait_s=0.01)


# --- keys never leak ---------------------------------------------------------------------------


def _messages(exc: BaseException) -> str:
    parts = []
    while exc is not None:
        parts += [str(exc), repr(exc)]
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return "\n".join(parts)


@pytest.mark.parametrize("name", CLOUD_ENGINES)
def test_the_key_is_in_no_error_message_and_no_log_line(
    stub: CloudTtsStub, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    seen = []
    with caplog.at_level(logging.DEBUG):
        for mode in ("auth", "quota", "rate_limit", "non_json", "not_audio", "server_error", "slow"):
            stub.mode = mode
            engine = engine_for(stub, name, timeout_s=0.3 if mode == "slow" else 5.0)
            with pytest.raises(TtsError) as raised:
                engine.synthesize(TEXT)
            seen.append(_messages(raised.value))
    assert "***" in "\n".join(seen) or name == "azure"  # the stub echoes the key in its auth answers
    assert KEY not in "\n".join(seen)
    assert KEY not in caplog.text
    assert KEY not in repr(engine.options())


def test_the_key_comes_from_the_environment_and_never_shows_in_settings() -> None:
    settings = load_settings(
        environ={"BROADCASTER_TTS__FPT__API_KEY": KEY, "BROADCASTER_TTS__ORDER": "[fpt, espeak-ng]"}
    )
    assert settings.tts.fpt.api_key is not None and settings.tts.fpt.api_key.get_secret_value() == KEY
    assert KEY not in settings.model_dump_json() and KEY not in repr(settings)
    assert build_chain(settings.tts).engine("fpt").available()


# --- set-up and voices -------------------------------------------------------------------------


@pytest.mark.parametrize("name", CLOUD_ENGINES)
def test_without_a_key_the_engine_is_unavailable_and_skipped(name: str) -> None:
    config = TtsConfig(order=[name, "espeak-ng"])
    chain = build_chain(config)
    engine = chain.engine(name)
    assert not engine.available()
    assert [e.name for e in chain.plan()] == ["espeak-ng"]
    with pytest.raises(EngineUnavailable, match="no API key"):
        engine.synthesize(TEXT)


def test_default_order_is_unchanged() -> None:
    assert TtsConfig().order == ["gtts", "piper", "espeak-ng"]


@pytest.mark.parametrize("name", CLOUD_ENGINES)
def test_voices_are_described_with_accent_gender_and_a_vietnamese_label(name: str) -> None:
    engine = build_engine(name, TtsConfig())
    infos = engine.voice_info()  # type: ignore[attr-defined]
    assert infos and [v.name for v in infos] == engine.voices()
    assert engine.default_voice() in engine.voices()
    for info in infos:
        assert isinstance(info.region, Region) and isinstance(info.gender, Gender)
        assert f"{info.gender.label_vi}, {info.region.label_vi} ({engine.label_vi})" in info.label_vi  # type: ignore[attr-defined]
    regions = {v.region for v in infos}
    assert Region.NORTH in regions


def test_voice_labels_read_as_the_officer_expects() -> None:
    fpt = {v.name: v for v in build_engine("fpt", TtsConfig()).voice_info()}  # type: ignore[attr-defined]
    assert fpt["banmai"].label_vi == "Ban Mai — nữ, miền Bắc (FPT.AI)"
    assert fpt["giahuy"].to_dict() == {
        "name": "giahuy",
        "label_vi": "Gia Huy — nam, miền Trung (FPT.AI)",
        "region": "trung",
        "region_vi": "miền Trung",
        "gender": "nam",
        "gender_vi": "nam",
    }
    viettel = {v.name: v for v in build_engine("viettel", TtsConfig()).voice_info()}  # type: ignore[attr-defined]
    assert {v.region for v in viettel.values()} == {Region.NORTH, Region.CENTRAL, Region.SOUTH}


def test_an_unknown_voice_is_a_set_up_error(stub: CloudTtsStub) -> None:
    with pytest.raises(EngineUnavailable, match="no voice 'klingon'"):
        engine_for(stub, "zalo").synthesize(TEXT, "klingon")
    assert stub.calls("zalo") == 0


def test_a_configured_voice_outside_the_catalogue_is_accepted(stub: CloudTtsStub) -> None:
    engine = engine_for(stub, "fpt", voice="ngoclam")
    assert engine.default_voice() == "ngoclam" and "ngoclam" in engine.voices()
    engine.synthesize(TEXT)
    assert stub.last("fpt").headers["voice"] == "ngoclam"


def test_audio_is_recognised_by_its_first_bytes(tone_mp3: bytes) -> None:
    assert sniff_audio(tone_mp3) == "mp3"
    assert sniff_audio(b"RIFF\x00\x00\x00\x00WAVEfmt ") == "wav"
    assert sniff_audio(b"<html>") is None and sniff_audio(b"") is None


def test_options_change_the_cache_key_but_hold_no_secret() -> None:
    slow = build_engine("fpt", TtsConfig(fpt={"speed": -2, "api_key": KEY}))
    fast = build_engine("fpt", TtsConfig(fpt={"speed": 2, "api_key": KEY}))
    assert slow.options() != fast.options()
    assert all(KEY not in repr(e.options()) for e in (slow, fast))

"""Failures and cost of the cloud engines in the chain: per-kind cool-downs, the dashboard status
(Vietnamese reasons), characters counted per engine and day, daily caps; the real speech service
falling back to espeak-ng when a cloud engine fails; the SQL counter on a real database."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect

from broadcaster.audio.config import AudioConfig
from broadcaster.audio.store import AudioStore
from broadcaster.db import create_schema, make_engine, make_session_factory
from broadcaster.settings import load_settings
from broadcaster.speech import SpeechService
from broadcaster.tts import (
    EngineChain,
    MemoryUsageCounter,
    SqlUsageCounter,
    TtsAuthError,
    TtsConfig,
    TtsError,
    TtsQuotaError,
    TtsRateLimited,
    build_engine,
)
from broadcaster.tts.espeak import EspeakEngine
from broadcaster.tts.usage import LazySqlUsageCounter, UsageCounter
from tests.fakes import FailingEngine, FakeEngine, FakeNormalizer
from tests.stubs.cloud_tts import CloudTtsStub

KEY = "zk-4c1e9b77aa"
TZ = "Asia/Ho_Chi_Minh"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class WallClock:
    """UTC now; 2026-03-05 10:00 in Hà Nội (UTC+7) to start with."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 5, 3, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class MeteredEngine(FakeEngine):
    """A fake cloud engine: characters sent to it are counted."""

    metered = True
    label_vi = "FPT.AI"


class FailingMetered(FailingEngine):
    metered = True
    label_vi = "Zalo AI"


def chain_of(engines: list[Any], **kwargs: Any) -> tuple[EngineChain, Clock, WallClock]:
    clock, wall = Clock(), WallClock()
    chain = EngineChain(engines, clock=clock, wall_clock=wall, timezone=TZ, **kwargs)
    return chain, clock, wall


def names(engines: list[Any]) -> list[str]:
    return [e.name for e in engines]


# --- cool-downs by kind of failure -------------------------------------------------------------


def test_a_wrong_key_keeps_the_engine_aside_longer_than_a_transient_failure() -> None:
    chain, clock, _ = chain_of(
        [MeteredEngine("fpt"), MeteredEngine("zalo"), FakeEngine("espeak-ng")],
        cooldown_s=300,
        auth_cooldown_s=3600,
    )
    chain.trip("fpt", "FPT.AI: HTTP 401", TtsAuthError("FPT.AI: HTTP 401"))
    chain.trip("zalo", "Zalo AI cannot be reached", TtsError("Zalo AI cannot be reached"))
    clock.now += 301
    assert chain.cooling("zalo") is None
    assert chain.cooling("fpt") == "FPT.AI: HTTP 401"
    assert names(chain.plan()) == ["zalo", "espeak-ng", "fpt"]
    clock.now += 3300
    assert chain.cooling("fpt") is None


def test_throttling_waits_what_the_provider_asked_or_the_configured_time() -> None:
    chain, clock, _ = chain_of([MeteredEngine("fpt"), FakeEngine("espeak-ng")], rate_limit_cooldown_s=60)
    chain.trip("fpt", "429", TtsRateLimited("429", retry_after_s=7))
    clock.now += 6
    assert chain.cooling("fpt")
    clock.now += 2
    assert chain.cooling("fpt") is None
    chain.trip("fpt", "429", TtsRateLimited("429"))
    assert chain.cooldown_for(TtsRateLimited("429")) == 60
    assert chain.cooldown_for(TtsQuotaError("quota")) == chain.cooldown_for(TtsAuthError("key")) == 3600


def test_status_says_who_is_skipped_until_when_and_why_in_vietnamese() -> None:
    fpt, zalo = MeteredEngine("fpt"), FailingMetered("zalo")
    zalo.label_vi = "Zalo AI"
    no_key = MeteredEngine("viettel", available=False)
    no_key.label_vi = "Viettel AI"
    chain, _, wall = chain_of([fpt, zalo, no_key, FakeEngine("espeak-ng")], auth_cooldown_s=3600)
    chain.trip("zalo", "Zalo AI error 401: Wrong apikey ***", TtsAuthError("Zalo AI error 401"))
    chain.trip("fpt", "FPT.AI: quota", TtsQuotaError("FPT.AI: quota"))
    status = {s.name: s for s in chain.status()}
    assert status["zalo"].skipped and status["zalo"].kind == "auth"
    assert status["zalo"].reason_vi == "Khóa API của Zalo AI không hợp lệ"
    assert status["zalo"].until == (wall.now + timedelta(hours=1)).astimezone(chain.tz)
    assert status["zalo"].to_dict()["until_vi"] == "11:00 ngày 05/03"
    assert status["fpt"].reason_vi == "FPT.AI đã hết hạn mức của gói dịch vụ"
    assert status["viettel"].skipped and status["viettel"].reason_vi == "Chưa có khóa API cho Viettel AI"
    assert not status["espeak-ng"].skipped and status["espeak-ng"].reason_vi is None
    assert "***" in (status["zalo"].reason or "")


# --- usage and daily caps --------------------------------------------------------------------------


def test_characters_sent_are_counted_per_engine_and_local_day() -> None:
    usage = MemoryUsageCounter()
    fpt, local = MeteredEngine("fpt"), FakeEngine("espeak-ng")
    chain, _, wall = chain_of([fpt, local], usage=usage)
    chain.call(fpt, "xin chào bà con", None)
    chain.call(local, "không tính", None)  # local engines cost nothing: not counted
    assert usage.used("fpt", date(2026, 3, 5)) == len("xin chào bà con")
    assert usage.used("espeak-ng", date(2026, 3, 5)) == 0
    wall.now = datetime(2026, 3, 5, 17, 30, tzinfo=UTC)  # 00:30 on the 6th in Hà Nội
    chain.call(fpt, "abc", None)
    assert usage.used("fpt", date(2026, 3, 6)) == 3


def test_a_failed_call_is_not_counted() -> None:
    usage = MemoryUsageCounter()
    zalo = FailingMetered("zalo")
    chain, _, _ = chain_of([zalo], usage=usage)
    with pytest.raises(TtsError):
        chain.call(zalo, "xin chào", None)
    assert usage.totals(date(2026, 1, 1), date(2026, 12, 31)) == {}


def test_past_its_daily_cap_an_engine_is_skipped_until_the_next_local_day() -> None:
    usage = MemoryUsageCounter()
    fpt = MeteredEngine("fpt")
    chain, _, wall = chain_of([fpt, FakeEngine("espeak-ng")], usage=usage, caps={"fpt": 20})
    chain.call(fpt, "a" * 15, None)
    with pytest.raises(TtsError, match="daily cap of 20 characters") as raised:
        chain.call(fpt, "b" * 6, None)  # would pass the cap: not sent
    assert raised.value.kind == "cap" and fpt.call_count == 1
    chain.trip("fpt", str(raised.value), raised.value)
    assert names(chain.plan()) == ["espeak-ng"]  # not even as a last chance
    status = chain.status()[0]
    assert status.skipped and status.kind == "cap"
    assert status.reason_vi == "FPT.AI hết hạn mức ký tự trong ngày"
    assert status.until == datetime(2026, 3, 6, 0, 0, tzinfo=chain.tz)
    chain.call(fpt, "c" * 5, None)  # exactly the cap is allowed
    assert chain.capped("fpt") == (20, 20)
    assert chain.status()[0].reason_vi == "FPT.AI hết hạn mức ký tự trong ngày (đã dùng 20/20 ký tự)"
    wall.now += timedelta(days=1)
    assert names(chain.plan()) == ["fpt", "espeak-ng"]
    assert not chain.status()[0].skipped


def test_usage_report_gives_today_and_this_month_per_cloud_engine() -> None:
    usage = MemoryUsageCounter()
    usage.add("fpt", date(2026, 3, 1), 1000)
    usage.add("fpt", date(2026, 3, 5), 250)
    usage.add("zalo", date(2026, 2, 28), 99)  # last month
    usage.add("zalo", date(2026, 3, 5), 40)
    chain, _, _ = chain_of(
        [MeteredEngine("fpt"), FailingMetered("zalo"), FakeEngine("espeak-ng")],
        usage=usage,
        caps={"fpt": 5000},
    )
    rows = [r.to_dict() for r in chain.usage_report()]
    assert rows == [
        {
            "engine": "fpt",
            "label_vi": "FPT.AI",
            "today": 250,
            "month": 1250,
            "daily_cap": 5000,
            "remaining_today": 4750,
        },
        {
            "engine": "zalo",
            "label_vi": "Zalo AI",
            "today": 40,
            "month": 40,
            "daily_cap": None,
            "remaining_today": None,
        },
    ]


# --- through the real speech service ---------------------------------------------------------------


@pytest.fixture
def stub(tone_mp3: bytes) -> Iterator[CloudTtsStub]:
    server = CloudTtsStub(audio=tone_mp3, key=KEY).start()
    try:
        yield server
    finally:
        server.stop()


def speech_with(
    tmp_path: Path, stub: CloudTtsStub, name: str, *, usage: UsageCounter | None = None, **tts: Any
) -> SpeechService:
    section = name.replace("-", "_")
    options = {"url": stub.endpoint(name), "api_key": KEY, "timeout_s": 5.0, **tts.pop(section, {})}
    if name == "fpt":
        options.setdefault("poll_interval_s", 0.02)
    config = TtsConfig(order=[name, "espeak-ng"], **{section: options}, **tts)
    engines = [build_engine(n, config) for n in config.order]
    chain = EngineChain(
        engines,
        cooldown_s=config.cooldown_s,
        auth_cooldown_s=config.auth_cooldown_s,
        usage=usage,
        caps=config.daily_caps(),
        timezone=TZ,
    )
    return SpeechService(
        chain, AudioStore(tmp_path / "audio", 1 << 30), AudioConfig(), normalizer=FakeNormalizer()
    )


@pytest.mark.integration
@pytest.mark.parametrize(
    ("name", "reason"),
    [("fpt", "Khóa API của FPT.AI không hợp lệ"), ("zalo", "Khóa API của Zalo AI không hợp lệ")],
)
def test_a_dead_cloud_engine_falls_back_to_espeak_and_is_not_asked_again(
    tmp_path: Path, stub: CloudTtsStub, name: str, reason: str
) -> None:
    stub.mode = "auth"
    speech = speech_with(tmp_path, stub, name, cooldown_s=300, auth_cooldown_s=7200)
    first = speech.render("Thông báo lịch tiêm phòng. Mời bà con đến đúng giờ.", chime=False)
    assert first.engine == "espeak-ng" and first.duration_s > 1.0
    assert stub.calls(name) == 1  # the first sentence failed: the engine was left for this render
    second = speech.render("Thông báo cắt điện ngày mai.", chime=False)
    assert second.engine == "espeak-ng"
    assert stub.calls(name) == 1  # breaker open: the dead engine was not waited on again
    status = {s["name"]: s for s in speech.engine_status()}
    assert status[name]["skipped"] and status[name]["kind"] == "auth"
    assert status[name]["reason_vi"] == reason
    until = datetime.fromisoformat(status[name]["until"])
    assert until - datetime.now(UTC) > timedelta(seconds=3600)  # longer than a transient cool-down
    assert stub.problems == []


@pytest.mark.integration
def test_a_cloud_engine_speaks_counts_its_characters_and_stops_at_its_cap(
    tmp_path: Path, stub: CloudTtsStub
) -> None:
    usage = MemoryUsageCounter()
    text = "Thông báo lịch tiêm phòng. Mời bà con đến đúng giờ."
    speech = speech_with(tmp_path, stub, "fpt", usage=usage, fpt={"daily_char_cap": 60})
    result = speech.render(text, chime=False)
    assert result.engine == "fpt" and result.voice == "banmai"
    sent = sum(len(r.body.decode()) for r in stub.requests if r.path == "/hmi/tts/v5")
    today = speech.chain.today()
    assert usage.used("fpt", today) == sent == len(FakeNormalizer().normalize(text)) - 1  # less the space
    calls = stub.calls("fpt")
    capped = speech.render("Mời bà con đến nhà văn hóa thôn để họp.", chime=False)
    assert capped.engine == "espeak-ng" and stub.calls("fpt") == calls
    assert usage.used("fpt", today) == sent
    status = speech.engine_status()[0]
    assert status["skipped"] and status["reason_vi"].startswith("FPT.AI hết hạn mức ký tự trong ngày")
    assert [r.to_dict()["today"] for r in speech.usage()] == [sent]


@pytest.mark.integration
def test_engines_lists_cloud_voices_with_their_records(tmp_path: Path, stub: CloudTtsStub) -> None:
    speech = speech_with(tmp_path, stub, "azure")
    azure = speech.engines()[0]
    assert azure["label"] == "Microsoft Azure (cần Internet, trả phí)"
    assert azure["voices"] == ["vi-VN-HoaiMyNeural", "vi-VN-NamMinhNeural"]
    assert [v["label_vi"] for v in azure["voice_info"]] == [
        "Hoài My — nữ, miền Bắc (Microsoft Azure)",
        "Nam Minh — nam, miền Bắc (Microsoft Azure)",
    ]
    assert azure["status"]["skipped"] is False


# --- the SQL counter -------------------------------------------------------------------------------


def test_a_fresh_database_has_the_usage_table(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    create_schema(engine)
    assert "tts_usage" in inspect(engine).get_table_names()
    engine.dispose()


def test_the_sql_counter_adds_up_across_threads_and_days(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'usage.db'}")
    create_schema(engine)
    counter = SqlUsageCounter(make_session_factory(engine))
    day = date(2026, 3, 5)

    def worker() -> None:
        for _ in range(20):
            counter.add("fpt", day, 10)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert counter.used("fpt", day) == 800
    assert counter.add("fpt", day, 5) == 805
    counter.add("fpt", date(2026, 3, 1), 100)
    counter.add("zalo", date(2026, 2, 28), 7)
    assert counter.totals(date(2026, 3, 1), date(2026, 3, 31)) == {"fpt": 905}
    assert counter.totals(date(2026, 2, 1), date(2026, 3, 31)) == {"fpt": 905, "zalo": 7}
    assert counter.used("zalo", day) == 0
    engine.dispose()


@pytest.mark.integration
def test_from_settings_counts_into_the_instance_database(tmp_path: Path, stub: CloudTtsStub) -> None:
    settings = load_settings(
        {"instance": tmp_path / "instance"},
        environ={
            "BROADCASTER_TTS__ORDER": "[google-cloud, espeak-ng]",
            "BROADCASTER_TTS__GOOGLE_CLOUD__API_KEY": KEY,
            "BROADCASTER_TTS__GOOGLE_CLOUD__URL": stub.endpoint("google-cloud"),
        },
    )
    settings.ensure_instance()
    speech = SpeechService.from_settings(settings)
    assert isinstance(speech.chain.usage, LazySqlUsageCounter)
    assert speech.render("Xin chào bà con.", chime=False).engine == "google-cloud"
    engine = make_engine(settings.db_url)
    counter = SqlUsageCounter(make_session_factory(engine))
    assert stub.calls("google-cloud") == 1  # one sentence, one request
    sent = stub.last("google-cloud").json()["input"]["text"]
    assert counter.used("google-cloud", speech.chain.today()) == len(sent) > 0
    engine.dispose()


def test_from_settings_without_cloud_engines_never_touches_the_database(tmp_path: Path) -> None:
    settings = load_settings({"instance": tmp_path / "instance"}, environ={})
    assert SpeechService.from_settings(settings).chain.usage is None
    assert not (tmp_path / "instance" / "broadcaster.db").exists()


def test_the_real_espeak_engine_is_not_metered() -> None:
    assert not getattr(EspeakEngine(), "metered", False)

"""Fakes that cannot drift: the same assertions against each fake and its real implementation.

A fake that returns another shape than the real part fails here, not in production (before, the
fake speech service listed engines as names where the real one gives dicts, and production code
bent to accept both)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from broadcaster.audio.store import AudioStore
from broadcaster.broadcasts.ports import AudioStorePort, FleetPort, SpeechPort
from broadcaster.speech import RenderResult, SpeechError, SpeechService
from broadcaster.textnorm import Normalizer
from broadcaster.textnorm.config import TextnormConfig
from broadcaster.textnorm.normalizer import Normalized, Token
from broadcaster.tts.base import AudioClip, EngineUnavailable, TtsEngine
from broadcaster.tts.espeak import EspeakEngine
from tests.fakes import (
    FakeAmplifier,
    FakeEngine,
    FakeNormalizer,
    FakeSpeech,
    MemoryStore,
)
from tests.fixtures_controller import unit_services, unit_settings

# ------------------------------------------------------------------ engines


@pytest.fixture(params=["fake", "espeak-ng"])
def engine(request: pytest.FixtureRequest) -> TtsEngine:
    if request.param == "fake":
        return FakeEngine()
    from broadcaster.tts.config import EspeakOptions

    return EspeakEngine(EspeakOptions())


def test_engine_contract(engine: TtsEngine) -> None:
    assert isinstance(engine, TtsEngine)
    assert engine.available() is True
    voices = engine.voices()
    assert voices and engine.default_voice() in voices
    clip = engine.synthesize("xin chào bà con", engine.default_voice())
    assert isinstance(clip, AudioClip) and clip.format in ("wav", "mp3") and len(clip.data) > 1000
    with pytest.raises(EngineUnavailable):
        engine.synthesize("xin chào", "no-such-voice")
    assert isinstance(engine.options(), dict)


# ------------------------------------------------------------------ store


@pytest.fixture(params=["memory", "disk"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    return MemoryStore(tmp_path) if request.param == "memory" else AudioStore(tmp_path, 1 << 30)


def test_store_contract(store: Any) -> None:
    assert isinstance(store, AudioStorePort)
    key = "ab" * 32
    assert store.has(key) is False and store.meta(key) is None
    path, meta, hit = store.get_or_create(key, lambda: (b"ID3" + b"\x00" * 500, {"duration_s": 1.5}))
    assert hit is False and store.has(key) and path.name == f"{key}.mp3"
    assert store.read_bytes(key) == b"ID3" + b"\x00" * 500
    got = store.meta(key)
    assert (
        got is not None
        and got["duration_s"] == 1.5
        and len(got["sha256"]) == 64
        and meta["sha256"] == got["sha256"]
    )
    _, _, hit = store.get_or_create(key, lambda: (b"other", {}))
    assert hit is True
    store.pin(key, "broadcast:1")
    store.pin(key, "schedule:2")
    store.unpin(key, "broadcast:1")
    assert store.pins(key) == ["schedule:2"]


# ------------------------------------------------------------------ speech


@pytest.fixture(params=["fake", "real"])
def speech(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "fake":
        return FakeSpeech(tmp_path / "audio")
    return SpeechService.from_settings(unit_settings(tmp_path / "instance"))


def test_speech_contract(speech: Any) -> None:
    assert isinstance(speech, SpeechPort)
    engines = speech.engines()
    assert isinstance(engines, list) and engines
    for item in engines:
        assert {"name", "label", "available", "voices", "default_voice", "cooling_down"} <= set(item)
        assert isinstance(item["name"], str) and isinstance(item["voices"], list)
    result = speech.render("UBND xã thông báo họp.", repeat=1, chime=True)
    assert isinstance(result, RenderResult) and result.duration_s > 0 and result.normalized_text
    assert speech.store.has(result.key) and speech.store.meta(result.key)["sha256"] == result.sha256
    assert speech.normalize("UBND xã").startswith("ủy ban nhân dân") or speech.normalize("UBND xã")
    with pytest.raises(SpeechError) as err:
        speech.normalize("   ")
    assert err.value.message_vi


# ------------------------------------------------------------------ normalizer


@pytest.mark.parametrize("kind", ["fake", "real"])
def test_normalizer_contract(kind: str) -> None:
    normalizer = FakeNormalizer() if kind == "fake" else Normalizer.from_config(TextnormConfig())
    analysis = normalizer.analyze("Chợ Đình họp")
    assert isinstance(analysis, Normalized) and all(isinstance(t, Token) for t in analysis.tokens)
    assert "".join(t.original for t in analysis.tokens) == "Chợ Đình họp"
    assert analysis.text == normalizer.normalize("Chợ Đình họp") == "chợ đình họp"
    overridden = normalizer.with_overrides({"Chợ Đình": "chợ đình làng"})
    assert overridden.normalize("Chợ Đình họp") == "chợ đình làng họp"


# ------------------------------------------------------------------ fleet


@pytest.fixture(params=["fake", "real"])
def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    services = unit_services(tmp_path, fake_fleet=request.param == "fake")
    yield services.fleet
    services.db_engine.dispose()


def test_fleet_contract(fleet: Any) -> None:
    assert isinstance(fleet, FleetPort)
    snapshot = fleet.snapshot()
    assert [s["id"] for s in snapshot] == [f"loa-{i:02d}" for i in range(1, 10)]
    keys = {
        "id", "name", "zone", "enabled", "online", "stale", "last_seen", "health", "health_at", "playing",
        "volume", "amplifier_on", "alerts", "malformed",
    }  # fmt: skip
    assert all(set(s) == keys for s in snapshot)
    assert snapshot[0]["online"] is False and fleet.online_ids() == set()
    assert fleet.speaker("loa-01")["zone"] == "thon-1" and fleet.speaker("nope") is None
    assert isinstance(fleet.alerts(), list)


# ------------------------------------------------------------------ the node's hardware


def _members(protocol: type) -> dict[str, list[str]]:
    """Public members of a Protocol class and their parameter names."""
    import inspect

    out = {}
    for name, value in vars(protocol).items():
        if name.startswith("_"):
            continue
        target = value.fget if isinstance(value, property) else value
        out[name] = list(inspect.signature(target).parameters) if callable(target) else []
    return out


@pytest.mark.parametrize(("fake", "protocol"), [("FakePlayer", "Player"), ("FakeAmplifier", "Amplifier")])
def test_the_node_fakes_implement_the_agents_protocols(fake: str, protocol: str) -> None:
    import speakers.amplifier
    import speakers.player
    import tests.fakes

    proto = getattr(speakers.player, protocol, None) or getattr(speakers.amplifier, protocol)
    cls = getattr(tests.fakes, fake)
    faked = _members(cls)
    for name, params in _members(proto).items():
        assert name in faked or hasattr(cls, name), f"{fake} lacks {name}"
        if name in faked and params:
            assert faked[name] == params, f"{fake}.{name}{faked[name]} != {protocol}.{name}{params}"
    amp = FakeAmplifier()
    asyncio.run(amp.set(True))
    assert amp.is_on is True

"""The engine chain: order, availability, deadline per call, circuit breaker (fake engines)."""

from __future__ import annotations

import pytest

from broadcaster.tts import AudioClip, EngineChain, EngineUnavailable, TtsError
from tests.fakes import FailingEngine, FakeEngine, HangingEngine


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def names(engines: list) -> list[str]:
    return [e.name for e in engines]


def test_plan_follows_order_and_skips_unavailable() -> None:
    chain = EngineChain([FakeEngine("gtts"), FakeEngine("piper", available=False), FakeEngine("espeak-ng")])
    assert names(chain.plan()) == ["gtts", "espeak-ng"]
    assert names(chain.plan("espeak-ng")) == ["espeak-ng", "gtts"]
    assert names(chain.ordered("piper")) == ["piper", "gtts", "espeak-ng"]
    with pytest.raises(EngineUnavailable, match="unknown engine 'festival'"):
        chain.plan("festival")


def test_breaker_moves_a_failed_engine_last_until_cool_down_ends() -> None:
    clock = Clock()
    chain = EngineChain([FakeEngine("gtts"), FakeEngine("espeak-ng")], cooldown_s=60, clock=clock)
    chain.trip("gtts", "network unreachable")
    assert chain.cooling("gtts") == "network unreachable"
    # Still in the plan as a last chance, but after the healthy engine.
    assert names(chain.plan()) == ["espeak-ng", "gtts"]
    clock.now += 59
    assert names(chain.plan()) == ["espeak-ng", "gtts"]
    clock.now += 2
    assert chain.cooling("gtts") is None
    assert names(chain.plan()) == ["gtts", "espeak-ng"]
    chain.trip("gtts", "again")
    chain.reset("gtts")
    assert names(chain.plan()) == ["gtts", "espeak-ng"]


def test_call_returns_the_clip() -> None:
    engine = FakeEngine("espeak-ng")
    clip = EngineChain([engine]).call(engine, "xin chào", "giong-b")
    assert isinstance(clip, AudioClip) and clip.format == "wav"
    assert engine.calls == [("xin chào", "giong-b")]


def test_a_hanging_engine_is_abandoned_at_the_deadline() -> None:
    engine = HangingEngine("gtts")
    chain = EngineChain([engine], call_timeout_s=0.2)
    try:
        with pytest.raises(TtsError, match="gtts did not answer within 0.2 s"):
            chain.call(engine, "xin chào", None)
        assert engine.started.is_set()
    finally:
        engine.release.set()


def test_engine_errors_become_tts_errors() -> None:
    failing = FailingEngine("gtts")
    chain = EngineChain([failing])
    with pytest.raises(TtsError, match="network unreachable"):
        chain.call(failing, "x", None)
    crashing = FailingEngine("piper", error=RuntimeError("onnx exploded"))
    with pytest.raises(TtsError, match="piper crashed: RuntimeError: onnx exploded"):
        EngineChain([crashing]).call(crashing, "x", None)


def test_an_engine_whose_available_raises_is_skipped() -> None:
    class Broken(FakeEngine):
        def available(self) -> bool:
            raise OSError("probe failed")

    chain = EngineChain([Broken("piper"), FakeEngine("espeak-ng")])
    assert names(chain.plan()) == ["espeak-ng"]


def test_duplicate_or_missing_engines_are_rejected() -> None:
    with pytest.raises(ValueError, match="unique"):
        EngineChain([FakeEngine("a"), FakeEngine("a")])
    with pytest.raises(ValueError, match="at least one"):
        EngineChain([])


def test_call_many_synthesizes_in_parallel_up_to_the_engines_limit_in_order() -> None:
    """A slow engine answers a 9-piece bulletin in about three requests' time, not nine: after the
    first piece (alone, so a dead engine is asked once), up to ``max_parallel`` calls are in flight
    together. Proven without clocks: four calls meet at a barrier that only four concurrent calls
    can pass; more than four never run at once; the clips come back in text order."""
    import threading

    class Slow(FakeEngine):
        max_parallel = 4

        def __init__(self) -> None:
            super().__init__("slow")
            self.barrier = threading.Barrier(4, timeout=10)
            self.active = 0
            self.most = 0
            self.lock = threading.Lock()

        def synthesize(self, text: str, voice: str | None = None):  # type: ignore[no-untyped-def]
            with self.lock:
                self.active += 1
                self.most = max(self.most, self.active)
            try:
                if 1 <= int(text.split()[1]) <= 4:
                    self.barrier.wait()  # the first four after the probe must run together
                return super().synthesize(text, voice)
            finally:
                with self.lock:
                    self.active -= 1

    engine = Slow()
    chain = EngineChain([engine])
    texts = [f"câu {i} " + "a" * i for i in range(9)]
    clips = chain.call_many(engine, texts, None)
    assert len(clips) == 9 and engine.most == 4
    assert [t for t, _ in engine.calls][0] == "câu 0 "  # the probe went first, alone
    # In text order: each clip's length grows with its text the way FakeEngine makes it.
    lengths = [len(c.data) for c in clips]
    assert all(a < b for a, b in zip(lengths, lengths[1:], strict=False))

"""Speech engines (the TtsEngine seam) that need no binary and no network.

Each counts its calls (thread-safe) so tests can prove "no synthesis on a cache hit". Their answers
are real ``AudioClip`` objects; ``tests/test_fakes_contract.py`` holds them to the engine contract.
"""

from __future__ import annotations

import math
import threading
from array import array
from typing import Any

from broadcaster.tts.base import AudioClip, EngineUnavailable, TtsError


def tone_pcm16(duration_s: float, rate: int = 16_000, freq: float = 220.0, amp: float = 0.5) -> bytes:
    """A sine with 10 ms fades, as mono 16-bit PCM (speech stand-in, no silence to trim)."""
    n = int(duration_s * rate)
    fade = max(1, int(0.01 * rate))
    out = array("h")
    for i in range(n):
        env = min(1.0, i / fade, (n - 1 - i) / fade)
        out.append(int(32767 * amp * env * math.sin(2 * math.pi * freq * i / rate)))
    return out.tobytes()


class FakeEngine:
    """A TtsEngine that "speaks" a tone whose length grows with the text: 0.2 s + 30 ms per
    character. ``gate`` (an Event), when given, holds every call until it is set."""

    def __init__(
        self,
        name: str = "fake",
        voices: tuple[str, ...] = ("giong-a", "giong-b"),
        *,
        per_char_s: float = 0.03,
        rate: int = 16_000,
        gate: threading.Event | None = None,
        available: bool = True,
    ) -> None:
        self.name = name
        self._voices = list(voices)
        self.per_char_s = per_char_s
        self.rate = rate
        self.gate = gate
        self.is_available = available
        self.calls: list[tuple[str, str | None]] = []
        self.started = threading.Event()
        self._lock = threading.Lock()

    @property
    def call_count(self) -> int:
        with self._lock:
            return len(self.calls)

    def available(self) -> bool:
        return self.is_available

    def voices(self) -> list[str]:
        return list(self._voices)

    def default_voice(self) -> str:
        return self._voices[0]

    def options(self) -> dict[str, Any]:
        return {"per_char_s": self.per_char_s}

    def synthesize(self, text: str, voice: str | None = None) -> AudioClip:
        with self._lock:
            self.calls.append((text, voice))
        self.started.set()
        if voice is not None and voice not in self._voices:
            raise EngineUnavailable(f"{self.name} has no voice {voice!r}")
        if self.gate is not None and not self.gate.wait(30):
            raise TtsError(f"{self.name}: gate never opened")
        duration = 0.2 + self.per_char_s * len(text)
        return AudioClip.from_pcm16(tone_pcm16(duration, self.rate), self.rate)


class FailingEngine(FakeEngine):
    """Raises ``error`` (a TtsError by default: "network unreachable"); set ``error = None`` and
    it recovers (speaks like FakeEngine)."""

    def __init__(self, name: str = "failing", error: Exception | None = None, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.error: Exception | None = error or TtsError(f"{name}: network unreachable")

    def synthesize(self, text: str, voice: str | None = None) -> AudioClip:
        if self.error is None:
            return super().synthesize(text, voice)
        with self._lock:
            self.calls.append((text, voice))
        raise self.error


class HangingEngine(FakeEngine):
    """Never answers until ``release`` is set (tests set it at teardown so no thread lingers)."""

    def __init__(self, name: str = "hanging", **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.release = threading.Event()

    def synthesize(self, text: str, voice: str | None = None) -> AudioClip:
        with self._lock:
            self.calls.append((text, voice))
        self.started.set()
        self.release.wait(60)
        raise TtsError(f"{self.name}: released")


class GarbledEngine(FakeEngine):
    """Answers with bytes that are not audio (a broken engine build); rendering must reject them."""

    def synthesize(self, text: str, voice: str | None = None) -> AudioClip:
        with self._lock:
            self.calls.append((text, voice))
        return AudioClip(b"RIFF\x00\x00\x00\x00WAVEgarbage", "wav")

"""The speech service (SpeechPort) without synthesis: ``render`` stores deterministic fake "mp3"
bytes in a MemoryStore and answers with the real ``RenderResult``; failures raise the real
``SpeechError``; ``engines()`` answers in the real shape. ``tests/test_fakes_contract.py`` holds it
to the same assertions as ``broadcaster.speech.SpeechService``.

Controls: ``gate`` (an Event) holds renders until set; ``fail`` (a Vietnamese message) makes renders
raise; ``duration_s``/``durations`` set the audio length (per text); ``renders`` records each call.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from broadcaster.speech import RenderResult, SpeechError
from tests.fakes.normalizer import FakeNormalizer
from tests.fakes.store import MemoryStore

# The engines the fake pretends to have, in the configured order.
ENGINES = ("fake", "espeak-ng")


class FakeSpeech:
    def __init__(
        self,
        root: Path = Path("/nonexistent-audio-store"),
        *,
        duration_s: float = 0.6,
        size: int = 150_000,
        normalizer: FakeNormalizer | None = None,
        engines: tuple[str, ...] = ENGINES,
    ) -> None:
        self.store = MemoryStore(root)
        self.normalizer = normalizer or FakeNormalizer()
        self.engine_names = engines
        self.duration_s = duration_s
        self.durations: dict[str, float] = {}
        self.size = size
        self.max_chars = 20_000
        self.gate: threading.Event | None = None
        self.fail: str | None = None
        self.engines_fail: str | None = None  # engines() raises (a broken engine probe)
        self.renders: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    # -- text

    def check_text(self, text: str) -> str:
        if not isinstance(text, str) or not text.strip():
            raise SpeechError("Nội dung thông báo đang trống.", "the announcement text is empty")
        if len(text) > self.max_chars:
            raise SpeechError("Nội dung quá dài.", "the text is too long")
        return text

    def normalize(self, text: str, lexicon: Mapping[str, str] | None = None) -> str:
        text = self.check_text(text)
        normalizer = self.normalizer.with_overrides(dict(lexicon)) if lexicon else self.normalizer
        spoken = normalizer.normalize(text)
        if not any(ch.isalnum() for ch in spoken):
            raise SpeechError("Nội dung không có gì để đọc.", "nothing speakable in the text")
        return spoken

    # -- engines

    def engines(self) -> list[dict[str, Any]]:
        if self.engines_fail:
            raise RuntimeError(self.engines_fail)
        return [
            {
                "name": name,
                "label": name,
                "available": True,
                "voices": ["vi"],
                "default_voice": "vi",
                "cooling_down": False,
            }
            for name in self.engine_names
        ]

    # -- rendering

    def render(
        self,
        text: str,
        *,
        engine: str | None = None,
        voice: str | None = None,
        repeat: int = 1,
        chime: bool = True,
        lexicon: Mapping[str, str] | None = None,
        normalized: str | None = None,
        strict: bool = False,
    ) -> RenderResult:
        if self.gate is not None:
            self.gate.wait(30)
        with self._lock:
            self.renders.append(
                {
                    "text": text,
                    "engine": engine,
                    "voice": voice,
                    "repeat": repeat,
                    "lexicon": dict(lexicon) if lexicon else lexicon,
                }
            )
        if self.fail:
            raise SpeechError(self.fail, self.fail)
        spoken = normalized if normalized is not None else self.normalize(text, lexicon)
        used = engine or self.engine_names[0]
        duration = self.durations.get(text, self.duration_s) * repeat
        key = hashlib.sha256(f"{used}|{voice}|{repeat}|{chime}|{spoken}".encode()).hexdigest()
        hit = self.store.has(key)
        if not hit:
            seed = hashlib.sha256(key.encode()).digest()
            data = (seed * (self.size // len(seed) + 1))[: self.size]
            self.store.put(key, data, {"duration_s": duration, "engine": used, "text": text})
        meta = self.store.meta(key) or {}
        return RenderResult(
            key=key,
            path=self.store.path(key),
            text=text,
            normalized_text=spoken,
            engine=used,
            voice=voice or "vi",
            duration_s=duration,
            loudness_lufs=-16.0,
            true_peak_dbtp=-2.0,
            cache_hit=hit,
            sha256=str(meta.get("sha256", "")),
            size=int(meta.get("size", 0)),
        )

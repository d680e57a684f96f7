"""The sound of a render: the settings it depends on (part of every audio key), and how
synthesized pieces, pauses, chime and repeats become the mastered MP3 and its store metadata.
Shared by the normal render, the streamed render (``broadcaster/speech_stream.py``) and imported
recordings (``broadcaster/speech/recordings.py``)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from broadcaster.audio.config import AudioConfig
from broadcaster.audio.script import Pause
from broadcaster.audio.store import AudioStore
from broadcaster.domain import AudioKey, nfc
from broadcaster.speech.errors import RenderResult

# Bump when rendering changes in a way that changes the sound, so old cache entries are not reused.
RENDER_VERSION = 1


def audio_key(payload: dict[str, Any]) -> AudioKey:
    """The sha256 of ``payload`` as canonical JSON (sorted keys, no spaces, UTF-8)."""
    blob = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return AudioKey(hashlib.sha256(blob.encode("utf-8")).hexdigest())


class Program:
    """Render settings and mastering over one ``AudioConfig``, results read from one store."""

    def __init__(self, store: AudioStore, audio: AudioConfig) -> None:
        self.store = store
        self.audio = audio

    def settings(self, *, repeat: int, chime: bool) -> dict[str, Any]:
        """Everything besides engine, voice and text that changes the rendered sound."""
        a = self.audio
        settings: dict[str, Any] = {
            "v": RENDER_VERSION,
            "sample_rate": a.sample_rate,
            "bitrate_kbps": a.bitrate_kbps,
            "target_lufs": a.target_lufs,
            "true_peak_dbtp": a.true_peak_dbtp,
            "highpass_hz": a.highpass_hz,
            "pauses_ms": [a.clause_pause_ms, a.sentence_pause_ms, a.paragraph_pause_ms, a.edge_silence_ms],
            "chime": bool(chime),
            "repeat": repeat,
        }
        if chime:
            settings["chime_gap_ms"] = a.chime_gap_ms
        if repeat > 1:
            settings["repeat_connector"] = self.connector_text()
            settings["repeat_gap_ms"] = a.repeat_gap_ms
        return settings

    def connector_text(self) -> str:
        """What is read between repeats ("xin nhắc lại"), NFC, lower case, single spaces."""
        return " ".join(nfc(self.audio.repeat_connector).lower().split())

    def pause_ms(self, pause: Pause) -> int:
        """The silence after a piece that ends with ``pause``."""
        a = self.audio
        return {
            Pause.NONE: 0,
            Pause.CLAUSE: a.clause_pause_ms,
            Pause.SENTENCE: a.sentence_pause_ms,
            Pause.PARAGRAPH: a.paragraph_pause_ms,
        }[pause]

    def assemble(
        self,
        engine_name: str,
        voice: str,
        text: str,
        spoken: str,
        parts: list[tuple[Any, int]],
        connector_clip: Any,
        *,
        repeat: int,
        chime: bool,
        settings: dict[str, Any],
    ) -> tuple[bytes, dict[str, Any]]:
        """Synthesized pieces (clip, pause after it) to the mastered MP3 and its store metadata."""
        from broadcaster.audio import render

        a = self.audio
        body = render.speech_track(parts)
        connector = render.speech_track([(connector_clip, 0)]) if connector_clip is not None else None
        program = render.program(body, a, repeat=repeat, connector=connector, chime=chime)
        mastered = render.master_track(program, a)
        meta = {
            "text": text,
            "normalized_text": spoken,
            "engine": engine_name,
            "voice": voice,
            "duration_s": round(mastered.duration_s, 3),
            "loudness_lufs": mastered.loudness.integrated_lufs,
            "true_peak_dbtp": mastered.loudness.true_peak_dbtp,
            "settings": settings,
        }
        return mastered.mp3, meta

    def result(self, key: str, meta: dict[str, Any], text: str, spoken: str, *, hit: bool) -> RenderResult:
        """The ``RenderResult`` of the stored render ``key`` with its metadata ``meta``."""
        return RenderResult(
            key=key,
            path=self.store.path(key),
            text=text,
            normalized_text=spoken,
            engine=str(meta.get("engine", "")),
            voice=str(meta.get("voice", "")),
            duration_s=float(meta.get("duration_s", 0.0)),
            loudness_lufs=float(meta.get("loudness_lufs", 0.0)),
            true_peak_dbtp=float(meta.get("true_peak_dbtp", 0.0)),
            cache_hit=hit,
            sha256=str(meta.get("sha256", "")),
            size=int(meta.get("size", 0)),
        )


__all__ = ["RENDER_VERSION", "Program", "audio_key"]

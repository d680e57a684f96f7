"""Piper: neural voices from ``.onnx`` files, offline.

No Vietnamese piper voice ships with the project; a deployment drops one in (for example
``vi_VN-vais1000-medium.onnx`` with its ``.onnx.json``) and lists it under ``tts.piper.voices``.
Without a voice file the engine is unavailable and the chain skips it. This module is the only
place that imports ``piper``.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from broadcaster.tts.base import AudioClip, EngineUnavailable, TtsError
from broadcaster.tts.config import PiperOptions

_LOGGER = logging.getLogger(__name__)


def voice_name(path: Path) -> str:
    """``/x/vi_VN-vais1000-medium.onnx`` -> ``vi_VN-vais1000-medium``."""
    return path.name.removesuffix(".onnx")


class PiperEngine:
    """Piper voices loaded lazily, once, and kept. Synthesis is serialized per voice because
    piper's phonemizer (espeak-ng inside) keeps global state."""

    name = "piper"

    def __init__(self, options: PiperOptions | None = None) -> None:
        self._opts = options or PiperOptions()
        self._paths = {voice_name(p): Path(p) for p in self._opts.voices}
        self._loaded: dict[str, Any] = {}
        self._load_lock = threading.Lock()
        self._synth_locks = {name: threading.Lock() for name in self._paths}

    def _usable(self, path: Path) -> bool:
        return path.is_file() and Path(f"{path}.json").is_file()

    def available(self) -> bool:
        return any(self._usable(p) for p in self._paths.values())

    def voices(self) -> list[str]:
        return [name for name, path in self._paths.items() if self._usable(path)]

    def default_voice(self) -> str:
        if self._opts.default_voice:
            return self._opts.default_voice
        voices = self.voices()
        return voices[0] if voices else ""

    def options(self) -> dict[str, Any]:
        files = {}
        for name, path in self._paths.items():
            try:
                stat = path.stat()
                files[name] = [stat.st_size, int(stat.st_mtime)]  # a replaced voice file re-renders
            except OSError:
                files[name] = None
        return {"length_scale": self._opts.length_scale, "files": files}

    def _voice(self, name: str) -> Any:
        with self._load_lock:
            voice = self._loaded.get(name)
            if voice is not None:
                return voice
            path = self._paths.get(name)
            if path is None or not self._usable(path):
                raise EngineUnavailable(f"piper voice {name!r} is not configured or its files are missing")
            try:
                from piper import PiperVoice

                voice = PiperVoice.load(path, use_cuda=self._opts.use_cuda)
            except Exception as exc:  # a broken voice file must not break the chain
                raise EngineUnavailable(f"cannot load piper voice {path}: {exc}") from exc
            _LOGGER.info("piper voice %s loaded from %s", name, path)
            self._loaded[name] = voice
            return voice

    def synthesize(self, text: str, voice: str | None = None) -> AudioClip:
        name = voice or self.default_voice()
        if not name:
            raise EngineUnavailable("no piper voice file configured (tts.piper.voices)")
        piper_voice = self._voice(name)
        try:
            from piper import SynthesisConfig

            config = SynthesisConfig(length_scale=self._opts.length_scale)
            with self._synth_locks[name]:
                chunks = list(piper_voice.synthesize(text, syn_config=config))
        except Exception as exc:  # onnxruntime and the phonemizer raise assorted errors
            raise TtsError(f"piper failed: {exc.__class__.__name__}: {exc}") from exc
        if not chunks:
            raise TtsError("piper produced no audio")
        rate = chunks[0].sample_rate
        pcm = b"".join(chunk.audio_int16_bytes for chunk in chunks)
        return AudioClip.from_pcm16(pcm, rate, chunks[0].sample_channels)

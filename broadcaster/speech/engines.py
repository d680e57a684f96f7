"""The configured TTS engines as the officer sees them: Vietnamese labels, which engines and voices
work here now (the web form), which are skipped and why (the dashboard notice), the cloud usage
(settings page), and which engine an officer's choice of engine or voice means."""

from __future__ import annotations

import logging
from typing import Any

from broadcaster.speech.errors import SpeechError
from broadcaster.speech.recordings import RECORDING_ENGINE
from broadcaster.tts import EngineChain, TtsEngine
from broadcaster.tts.base import voice_info_of
from broadcaster.tts.usage import UsageRow

_LOGGER = logging.getLogger(__name__)

ENGINE_LABELS_VI = {
    "gtts": "Google (cần Internet)",
    "piper": "Piper (ngoại tuyến)",
    "espeak-ng": "Giọng máy dự phòng (ngoại tuyến)",
    "fpt": "FPT.AI (cần Internet, trả phí)",
    "viettel": "Viettel AI (cần Internet, trả phí)",
    "zalo": "Zalo AI (cần Internet, trả phí)",
    "google-cloud": "Google Cloud (cần Internet, trả phí)",
    "azure": "Microsoft Azure (cần Internet, trả phí)",
    RECORDING_ENGINE: "Bản ghi âm",
}


class EngineCatalog:
    """Describes the engines of ``chain`` and resolves the officer's engine/voice choice."""

    def __init__(self, chain: EngineChain) -> None:
        self.chain = chain

    def describe(self) -> list[dict[str, Any]]:
        """For the web form: every configured engine in order, whether it works here now.
        ``voice_info`` describes the voices (accent, gender, Vietnamese label) when the engine
        does; ``status`` says whether it is skipped, until when and why (Vietnamese)."""
        out = []
        statuses = {s.name: s.to_dict() for s in self.chain.status()}
        for engine in self.chain.engines():
            try:
                available = bool(engine.available())
                voices = list(engine.voices()) if available else []
                default = engine.default_voice() if available else ""
                info = voice_info_of(engine) if available else None
            except Exception:  # a broken probe must not break the form
                _LOGGER.exception("engine %s failed to describe itself", engine.name)
                available, voices, default, info = False, [], "", None
            out.append(
                {
                    "name": engine.name,
                    "label": ENGINE_LABELS_VI.get(engine.name, engine.name),
                    "available": available,
                    "voices": voices,
                    "default_voice": default,
                    "cooling_down": self.chain.cooling(engine.name),
                    "voice_info": [v.to_dict() for v in info or ()],
                    "status": statuses.get(engine.name),
                }
            )
        return out

    def status(self) -> list[dict[str, Any]]:
        """Per engine: skipped or not, until when and why, for the dashboard notice."""
        return [s.to_dict() for s in self.chain.status()]

    def usage(self) -> list[UsageRow]:
        """Characters sent today and this month per cloud engine, with the daily caps."""
        return self.chain.usage_report()

    def requested(self, engine: str | None, voice: str | None) -> str | None:
        """The engine to try first for ``engine``/``voice`` (SpeechError when unknown): ``engine``
        itself, or given a voice alone, the first engine that offers it; None: the configured order."""
        if engine is not None:
            if engine not in self.chain:
                names = ", ".join(self.chain.order)
                raise SpeechError(
                    f"Không có giọng đọc «{ENGINE_LABELS_VI.get(engine, engine)}» trên máy chủ này. "
                    "Vui lòng chọn giọng khác.",
                    f"unknown engine {engine!r}; configured: {names}",
                )
            if voice is not None and voice not in self.chain.engine(engine).voices():
                raise SpeechError(
                    f"Giọng đọc «{ENGINE_LABELS_VI.get(engine, engine)}» không có kiểu giọng «{voice}».",
                    f"engine {engine} has no voice {voice!r}",
                )
            return engine
        if voice is not None:
            for eng in self.chain.engines():
                try:
                    if voice in eng.voices():
                        return eng.name
                except Exception:
                    continue
            raise SpeechError(f"Không có kiểu giọng «{voice}».", f"no engine offers voice {voice!r}")
        return None

    @staticmethod
    def voice_for(eng: TtsEngine, requested: str | None, voice: str | None) -> str:
        """The voice ``eng`` reads with: the one asked for when it is the requested engine, else
        its default."""
        if voice is not None and eng.name == requested:
            return voice
        try:
            return eng.default_voice()
        except Exception:
            return ""


__all__ = ["ENGINE_LABELS_VI", "EngineCatalog"]

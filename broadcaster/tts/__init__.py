"""Speech engines behind one small protocol, and the configured order with fallback.

Importing this package is cheap: the engines' third-party libraries (gtts, piper) are imported
by their own modules, which :func:`build_engines` loads.
"""

from __future__ import annotations

from broadcaster.tts.base import AudioClip, EngineUnavailable, TtsEngine, TtsError
from broadcaster.tts.chain import EngineChain
from broadcaster.tts.config import ENGINE_NAMES, TtsConfig


def build_engine(name: str, config: TtsConfig) -> TtsEngine:
    """One real engine by its config name."""
    if name == "gtts":
        from broadcaster.tts.gtts_engine import GttsEngine

        return GttsEngine(config.gtts)
    if name == "piper":
        from broadcaster.tts.piper_engine import PiperEngine

        return PiperEngine(config.piper)
    if name == "espeak-ng":
        from broadcaster.tts.espeak import EspeakEngine

        return EspeakEngine(config.espeak)
    raise EngineUnavailable(f"unknown engine {name!r}; known: {', '.join(ENGINE_NAMES)}")


def build_engines(config: TtsConfig) -> list[TtsEngine]:
    """The engines of ``config.order``, in that order."""
    return [build_engine(name, config) for name in config.order]


def build_chain(config: TtsConfig) -> EngineChain:
    return EngineChain(
        build_engines(config), call_timeout_s=config.call_timeout_s, cooldown_s=config.cooldown_s
    )


__all__ = [
    "ENGINE_NAMES",
    "AudioClip",
    "EngineChain",
    "EngineUnavailable",
    "TtsConfig",
    "TtsEngine",
    "TtsError",
    "build_chain",
    "build_engine",
    "build_engines",
]

"""Speech engines behind one small protocol, and the configured order with fallback.

Importing this package is cheap: the engines' third-party libraries (gtts, piper) are imported
by their own modules, which :func:`build_engines` loads. The cloud engines (FPT.AI, Viettel AI,
Zalo AI, Google Cloud, Microsoft Azure) use the stdlib HTTP client in :mod:`broadcaster.tts.http`.
"""

from __future__ import annotations

from broadcaster.tts.base import (
    AudioClip,
    DailyCapReached,
    EngineUnavailable,
    Gender,
    Region,
    TtsAuthError,
    TtsBadResponse,
    TtsEngine,
    TtsError,
    TtsQuotaError,
    TtsRateLimited,
    TtsTimeout,
    VoiceInfo,
)
from broadcaster.tts.chain import EngineChain
from broadcaster.tts.config import CLOUD_ENGINES, ENGINE_NAMES, TtsConfig
from broadcaster.tts.status import EngineStatus
from broadcaster.tts.usage import MemoryUsageCounter, SqlUsageCounter, UsageCounter, UsageRow


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
    if name == "fpt":
        from broadcaster.tts.fpt import FptEngine

        return FptEngine(config.fpt)
    if name == "viettel":
        from broadcaster.tts.viettel import ViettelEngine

        return ViettelEngine(config.viettel)
    if name == "zalo":
        from broadcaster.tts.zalo import ZaloEngine

        return ZaloEngine(config.zalo)
    if name == "google-cloud":
        from broadcaster.tts.google_cloud import GoogleCloudEngine

        return GoogleCloudEngine(config.google_cloud)
    if name == "azure":
        from broadcaster.tts.azure import AzureEngine

        return AzureEngine(config.azure)
    raise EngineUnavailable(f"unknown engine {name!r}; known: {', '.join(ENGINE_NAMES)}")


def build_engines(config: TtsConfig) -> list[TtsEngine]:
    """The engines of ``config.order``, in that order."""
    return [build_engine(name, config) for name in config.order]


def build_chain(
    config: TtsConfig, *, usage: UsageCounter | None = None, timezone: str = "Asia/Ho_Chi_Minh"
) -> EngineChain:
    """The chain of ``config.order`` with its timeouts, cool-downs and daily caps; ``usage``
    counts the characters sent to the cloud engines (needed for the caps)."""
    return EngineChain(
        build_engines(config),
        call_timeout_s=config.call_timeout_s,
        cooldown_s=config.cooldown_s,
        rate_limit_cooldown_s=config.rate_limit_cooldown_s,
        auth_cooldown_s=config.auth_cooldown_s,
        quota_cooldown_s=config.quota_cooldown_s,
        usage=usage,
        caps=config.daily_caps(),
        timezone=timezone,
    )


__all__ = [
    "CLOUD_ENGINES",
    "ENGINE_NAMES",
    "AudioClip",
    "DailyCapReached",
    "EngineChain",
    "EngineStatus",
    "EngineUnavailable",
    "Gender",
    "MemoryUsageCounter",
    "Region",
    "SqlUsageCounter",
    "TtsAuthError",
    "TtsBadResponse",
    "TtsConfig",
    "TtsEngine",
    "TtsError",
    "TtsQuotaError",
    "TtsRateLimited",
    "TtsTimeout",
    "UsageCounter",
    "UsageRow",
    "VoiceInfo",
    "build_chain",
    "build_engine",
    "build_engines",
]

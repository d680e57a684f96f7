"""The engine seam: what every speech engine implements, and the errors it raises."""

from __future__ import annotations

import enum
import io
import wave
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


class TtsError(Exception):
    """An engine failed on this text (network down, timeout, crash). The reason is logged and
    the next engine in the configured order is tried.

    ``kind`` tells the chain's circuit breaker how long to skip the engine: the subclasses below
    name the failures a cloud provider reports (wrong key, quota spent, throttled, too slow)."""

    kind = "error"


class EngineUnavailable(TtsError):
    """The engine is not set up here (no voice file, binary missing, unknown voice)."""

    kind = "unavailable"


class TtsAuthError(TtsError):
    """The provider refused the credentials (wrong, revoked or expired key; billing disabled)."""

    kind = "auth"


class TtsQuotaError(TtsError):
    """The provider's quota for this account is spent (characters or requests per day/month)."""

    kind = "quota"


class TtsRateLimited(TtsError):
    """The provider throttles us (HTTP 429); ``retry_after_s`` when it said how long to wait."""

    kind = "rate_limit"

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class TtsTimeout(TtsError):
    """The provider did not answer (or the audio did not appear) within the deadline."""

    kind = "timeout"


class TtsBadResponse(TtsError):
    """The provider answered with something we cannot use (not JSON, fields missing, not audio)."""

    kind = "bad_response"


class DailyCapReached(TtsError):
    """Our own daily character cap for this engine (``tts.<engine>.daily_char_cap``) is reached."""

    kind = "cap"


class Region(enum.StrEnum):
    """Accent of a voice."""

    NORTH = "bac"
    CENTRAL = "trung"
    SOUTH = "nam"

    @property
    def label_vi(self) -> str:
        return {"bac": "miền Bắc", "trung": "miền Trung", "nam": "miền Nam"}[self.value]


class Gender(enum.StrEnum):
    MALE = "nam"
    FEMALE = "nu"

    @property
    def label_vi(self) -> str:
        return {"nam": "nam", "nu": "nữ"}[self.value]


@dataclass(frozen=True)
class VoiceInfo:
    """One voice as the compose form shows it: ``name`` is what ``synthesize`` accepts,
    ``label_vi`` the officer's label, e.g. "Ban Mai — nữ, miền Bắc (FPT.AI)"."""

    name: str
    label_vi: str
    region: Region
    gender: Gender

    @classmethod
    def make(cls, name: str, person: str, gender: Gender, region: Region, provider: str) -> VoiceInfo:
        """The label from its parts: "<person> — <gender>, <region> (<provider>)"."""
        return cls(name, f"{person} — {gender.label_vi}, {region.label_vi} ({provider})", region, gender)

    def to_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "label_vi": self.label_vi,
            "region": self.region.value,
            "region_vi": self.region.label_vi,
            "gender": self.gender.value,
            "gender_vi": self.gender.label_vi,
        }


@dataclass(frozen=True)
class AudioClip:
    """Speech as an engine returns it: encoded audio bytes plus the ffmpeg format name.

    ``format`` is ``"wav"`` (PCM WAV, any rate) or ``"mp3"``. The renderer decodes it; engines
    never touch the broadcast format.
    """

    data: bytes
    format: str
    info: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.format not in ("wav", "mp3"):
            raise ValueError(f"unsupported clip format: {self.format!r}")
        if not self.data:
            raise ValueError("empty audio clip")

    @classmethod
    def from_pcm16(cls, pcm: bytes, sample_rate: int, channels: int = 1) -> AudioClip:
        """Wrap signed 16-bit little-endian PCM as a WAV clip."""
        buf = io.BytesIO()
        with wave.open(buf, "wb") as wav:
            wav.setnchannels(channels)
            wav.setsampwidth(2)
            wav.setframerate(sample_rate)
            wav.writeframes(pcm)
        return cls(buf.getvalue(), "wav")


@runtime_checkable
class TtsEngine(Protocol):
    """A speech engine.

    Contract:

    * ``name`` is the stable id used in config, cache keys and the broadcast log
      (``"gtts"``, ``"espeak-ng"``, ``"piper"``).
    * ``available()`` is cheap and never raises: False when the engine cannot work here at all
      (binary missing, no voice file configured). It does not probe the network.
    * ``voices()`` lists the voice names accepted by ``synthesize``; ``default_voice()`` is
      one of them.
    * ``synthesize(text, voice)`` turns one short piece of already-normalized text (a sentence
      or a clause) into an :class:`AudioClip`. It raises :class:`EngineUnavailable` on bad
      set-up (including an unknown voice) and :class:`TtsError` on any other failure; it never
      raises anything else on purpose and never hangs: every network call and subprocess has
      a timeout. It is called from worker threads, possibly concurrently.
    * ``options()`` returns the settings that change the sound (speed, voice file...); they go
      into the cache key so changing them re-renders. Never a secret (API keys stay out).

    Optional members, read with ``getattr`` (the local engines do not have them):

    * ``voice_info()`` -> ``list[VoiceInfo]``: the voices with accent, gender and a Vietnamese
      label (:func:`voice_info_of` gives a plain record for engines without it).
    * ``metered`` (bool): characters sent to it cost money or quota, so the chain counts them
      per day (see :mod:`broadcaster.tts.usage`) and enforces its daily cap.
    * ``label_vi`` (str): the provider's name in Vietnamese text ("FPT.AI", "Zalo AI").
    * ``phoneme_alphabet`` (``"ipa"`` or ``"espeak"``): the engine takes phonetic hints in that
      alphabet as ``synthesize(text, voice, hints={reading: hint})`` (see
      :mod:`broadcaster.pronunciation`); it is only called so when there are hints.
    """

    name: str

    def available(self) -> bool: ...

    def voices(self) -> list[str]: ...

    def default_voice(self) -> str: ...

    def synthesize(self, text: str, voice: str | None = None) -> AudioClip: ...

    def options(self) -> dict[str, Any]: ...


def voice_info_of(engine: TtsEngine) -> list[VoiceInfo] | None:
    """The engine's typed voice records, or None when it does not describe its voices."""
    describe = getattr(engine, "voice_info", None)
    if not callable(describe):
        return None
    return list(describe())

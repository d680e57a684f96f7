"""The engine seam: what every speech engine implements, and the errors it raises."""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


class TtsError(Exception):
    """An engine failed on this text (network down, timeout, crash). The reason is logged and
    the next engine in the configured order is tried."""


class EngineUnavailable(TtsError):
    """The engine is not set up here (no voice file, binary missing, unknown voice)."""


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
      into the cache key so changing them re-renders.
    """

    name: str

    def available(self) -> bool: ...

    def voices(self) -> list[str]: ...

    def default_voice(self) -> str: ...

    def synthesize(self, text: str, voice: str | None = None) -> AudioClip: ...

    def options(self) -> dict[str, Any]: ...

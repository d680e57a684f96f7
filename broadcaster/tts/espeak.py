"""espeak-ng: the offline engine that is always there, and the last resort of the chain.

Runs ``espeak-ng -v vi --stdout`` with the text on stdin (so a text starting with ``-`` is never
read as an option) and a timeout.
"""

from __future__ import annotations

import logging
import shutil
import struct
import subprocess
from collections.abc import Mapping
from typing import Any

from broadcaster.tts.base import AudioClip, EngineUnavailable, TtsError
from broadcaster.tts.config import EspeakOptions
from broadcaster.tts.phonemes import espeak_text

_LOGGER = logging.getLogger(__name__)

# Vietnamese voices shipped with espeak-ng 1.51 (``espeak-ng --voices=vi``).
KNOWN_VOICES = ("vi", "vi-vn-x-central", "vi-vn-x-south")


def _wav_stream_to_pcm(data: bytes) -> tuple[bytes, int, int]:
    """Parse espeak-ng's streamed WAV (its size fields are 0x7fffffff placeholders)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise TtsError("espeak-ng returned no WAV data")
    pos = 12
    rate = channels = 0
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = pos + 8
        if chunk_id == b"fmt ":
            _fmt, channels, rate = struct.unpack_from("<HHI", data, body)
            pos = body + size + (size & 1)
        elif chunk_id == b"data":
            if not rate:
                break
            pcm = data[body:]
            return pcm[: len(pcm) - len(pcm) % (2 * channels)], rate, channels
        else:
            pos = body + size + (size & 1)
    raise TtsError("espeak-ng returned a malformed WAV stream")


class EspeakEngine:
    """espeak-ng through a subprocess. Thread-safe: each call is its own process."""

    name = "espeak-ng"
    # One process per call; the controller's machine has about two cores.
    max_parallel = 2
    # Hints in espeak-ng's own phoneme notation, read as [[...]] (it ignores SSML <phoneme>).
    phoneme_alphabet = "espeak"

    def __init__(self, options: EspeakOptions | None = None) -> None:
        self._opts = options or EspeakOptions()

    def available(self) -> bool:
        return shutil.which(self._opts.binary) is not None

    def voices(self) -> list[str]:
        voices = list(KNOWN_VOICES)
        if self._opts.voice not in voices:
            voices.insert(0, self._opts.voice)
        return voices

    def default_voice(self) -> str:
        return self._opts.voice

    def options(self) -> dict[str, Any]:
        return {"speed": self._opts.speed, "pitch": self._opts.pitch, "gap": self._opts.word_gap}

    def synthesize(
        self, text: str, voice: str | None = None, hints: Mapping[str, str] | None = None
    ) -> AudioClip:
        """``hints``: ``{reading: espeak-ng phonemes}``, spoken in place of each reading."""
        voice = voice or self._opts.voice
        if voice not in self.voices():
            raise EngineUnavailable(f"espeak-ng has no voice {voice!r}")
        binary = shutil.which(self._opts.binary)
        if binary is None:
            raise EngineUnavailable(f"{self._opts.binary} is not installed")
        cmd = [
            binary,
            "-b", "1",  # input is UTF-8
            "-v", voice,
            "-s", str(self._opts.speed),
            "-p", str(self._opts.pitch),
            "-g", str(self._opts.word_gap),
            "--stdout",
        ]  # fmt: skip
        try:
            proc = subprocess.run(
                cmd,
                input=(espeak_text(text, hints) if hints else text).encode("utf-8"),
                capture_output=True,
                timeout=self._opts.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise TtsError(f"espeak-ng timed out after {self._opts.timeout_s:g} s") from exc
        except OSError as exc:
            raise EngineUnavailable(f"cannot run espeak-ng: {exc}") from exc
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip()
            raise TtsError(f"espeak-ng exited with {proc.returncode}: {err}")
        pcm, rate, channels = _wav_stream_to_pcm(proc.stdout)
        if not pcm:
            raise TtsError("espeak-ng produced no audio")
        _LOGGER.debug("espeak-ng: %d bytes of audio at %d Hz for %d chars", len(pcm), rate, len(text))
        return AudioClip.from_pcm16(pcm, rate, channels)

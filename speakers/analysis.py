"""Measuring audio: duration and loudness profile of a file, decoded with ffmpeg.

The agent measures each file once (:class:`Analyzer`, shared by thousands of simulated nodes) and
derives from the profile the RMS level of what was actually played (receipts) and the level at
the output at a given moment (health).
"""

from __future__ import annotations

import array
import asyncio
import math
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Analysis: mono 8 kHz is plenty to measure level and duration, and cheap to decode.
_ANALYSIS_RATE = 8000
_WINDOW_S = 0.1
_WINDOW = int(_ANALYSIS_RATE * _WINDOW_S)
SILENCE_DBFS = -120.0


class PlayerError(Exception):
    """Playback could not happen; the message is the reason reported in the ``failed`` event."""


@dataclass(frozen=True)
class Analysis:
    """Duration and loudness profile of a file (mean square per 100 ms, full scale = 1.0)."""

    duration_s: float
    window_s: float
    mean_squares: tuple[float, ...]

    def rms_dbfs(self, seconds: float | None = None, volume: int = 100) -> float:
        """RMS level in dBFS of the first ``seconds`` (all when None) played at ``volume``."""
        windows = self.mean_squares
        if seconds is not None:
            windows = windows[: max(0, math.ceil(seconds / self.window_s - 1e-9))]
        if not windows or volume <= 0:
            return SILENCE_DBFS
        mean_square = sum(windows) / len(windows) * (volume / 100.0) ** 2
        if mean_square <= 0:
            return SILENCE_DBFS
        return max(SILENCE_DBFS, round(10 * math.log10(mean_square), 2))

    def level_between(self, start_s: float, end_s: float, volume: int = 100) -> float:
        """RMS level in dBFS of the part from ``start_s`` to ``end_s`` played at ``volume``."""
        first = max(0, int(start_s / self.window_s))
        last = max(first + 1, math.ceil(end_s / self.window_s - 1e-9))
        windows = self.mean_squares[first:last]
        if not windows or volume <= 0:
            return SILENCE_DBFS
        mean_square = sum(windows) / len(windows) * (volume / 100.0) ** 2
        if mean_square <= 0:
            return SILENCE_DBFS
        return max(SILENCE_DBFS, round(10 * math.log10(mean_square), 2))

    def to_json(self) -> dict[str, Any]:
        return {
            "duration_s": self.duration_s,
            "window_s": self.window_s,
            "mean_squares": list(self.mean_squares),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Analysis:
        return cls(
            float(data["duration_s"]), float(data["window_s"]), tuple(float(x) for x in data["mean_squares"])
        )


def find_ffmpeg() -> str:
    found = shutil.which("ffmpeg")
    if not found:
        raise PlayerError("ffmpeg is not installed (apt-get install ffmpeg)")
    return found


def samples(pcm: bytes) -> array.array[int]:
    """s16le PCM bytes as integers."""
    values = array.array("h")
    values.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    if sys.byteorder != "little":
        values.byteswap()
    return values


def _mean_squares(pcm: bytes) -> tuple[float, ...]:
    values = samples(pcm)
    scale = 1.0 / (32768.0 * 32768.0)
    out = []
    for start in range(0, len(values), _WINDOW):
        window = values[start : start + _WINDOW]
        out.append(sum(x * x for x in window) / len(window) * scale)
    return tuple(out)


async def analyze(path: Path) -> Analysis:
    """Decode ``path`` with ffmpeg and measure it. Raises PlayerError if it does not decode."""
    proc = await asyncio.create_subprocess_exec(
        find_ffmpeg(),
        "-nostdin",
        "-v",
        "error",
        "-i",
        str(path),
        "-f",
        "s16le",
        "-ac",
        "1",
        "-ar",
        str(_ANALYSIS_RATE),
        "-",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    pcm, err = await proc.communicate()
    if proc.returncode != 0 or not pcm:
        detail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no audio"]
        raise PlayerError(f"audio does not decode: {detail[0]}")
    loop = asyncio.get_running_loop()
    squares = await loop.run_in_executor(None, _mean_squares, pcm)
    return Analysis(duration_s=len(pcm) / 2 / _ANALYSIS_RATE, window_s=_WINDOW_S, mean_squares=squares)


class Analyzer:
    """Memoised :func:`analyze` keyed by audio id: thousands of simulated nodes that receive the
    same file decode it once; concurrent callers share one ffmpeg run."""

    def __init__(self) -> None:
        self._done: dict[str, Analysis] = {}
        self._running: dict[str, asyncio.Future[Analysis]] = {}

    def known(self, audio_id: str) -> Analysis | None:
        return self._done.get(audio_id)

    def remember(self, audio_id: str, analysis: Analysis) -> None:
        self._done[audio_id] = analysis

    async def get(self, audio_id: str, path: Path) -> Analysis:
        found = self._done.get(audio_id)
        if found is not None:
            return found
        running = self._running.get(audio_id)
        if running is not None:
            return await asyncio.shield(running)
        fut: asyncio.Future[Analysis] = asyncio.get_running_loop().create_future()
        self._running[audio_id] = fut
        try:
            result = await analyze(path)
        except BaseException as exc:
            self._running.pop(audio_id, None)
            if not fut.done():
                fut.set_exception(exc if isinstance(exc, Exception) else PlayerError("cancelled"))
                fut.exception()  # retrieved: no "never retrieved" noise when nobody waits
            raise
        self._running.pop(audio_id, None)
        self._done[audio_id] = result
        fut.set_result(result)
        return result

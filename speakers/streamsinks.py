"""Stream sinks: where each player sends a live stream's samples (``speakers/stream.py``).

* :class:`NullStreamSink` decodes nothing: it records one timeline entry per chunk (when it
  sounds, in this machine's wall time, and which controller time it was meant for), the record
  the simulator and the benchmarks measure synchronisation from.
* :class:`FileStreamSink` decodes and writes what it played to ``<folder>/<time>-<broadcast>.wav``
  (at the playback volume) plus a line in ``played.jsonl``.
* :class:`RealStreamSink` decodes and writes s16le PCM to the output program (``aplay``) at the
  stream's rate; the sound card's resampler (ALSA ``plug``) takes it from there.
"""

from __future__ import annotations

import array
import asyncio
import collections
import contextlib
import json
import math
import os
import shutil
import time
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from speakers import adpcm
from speakers.stream import Chunk

# RMS level of nothing, as the analysis reports it.
_SILENCE_DBFS = -120.0


def _pcm(chunk: Chunk, volume: int) -> array.array[int]:
    """The chunk's samples at ``volume`` (0-100)."""
    if chunk.frame is None:
        return array.array("h", bytes(2 * chunk.count))
    frame = chunk.frame
    samples = adpcm.decode(frame.payload, frame.samples, frame.predictor, frame.index)
    part = samples[chunk.offset : chunk.offset + chunk.count]
    if volume >= 100:
        return part
    gain = max(0, volume) / 100
    return array.array("h", (int(s * gain) for s in part))


class _Level:
    """Mean square over the last second written (the health's ``output_dbfs``, the receipts' RMS)."""

    def __init__(self) -> None:
        self.recent: collections.deque[tuple[float, int]] = collections.deque()
        self.total_sq = 0.0
        self.total_n = 0

    def add(self, samples: array.array[int], rate: int) -> None:
        some = samples[::4]
        if not some:
            return
        square = sum(s * s for s in some) / (32768.0 * 32768.0)
        self.total_sq += square
        self.total_n += len(some)
        self.recent.append((square / len(some), len(samples)))
        while sum(n for _, n in self.recent) > rate and len(self.recent) > 1:
            self.recent.popleft()

    @staticmethod
    def dbfs(mean_square: float) -> float:
        return (
            max(_SILENCE_DBFS, round(10 * math.log10(mean_square), 2)) if mean_square > 0 else _SILENCE_DBFS
        )

    def last_second(self) -> float | None:
        if not self.recent:
            return None
        return self.dbfs(sum(m for m, _ in self.recent) / len(self.recent))

    def overall(self) -> float | None:
        return self.dbfs(self.total_sq / self.total_n) if self.total_n else None


class NullStreamSink:
    """Records the timeline (see the module docstring); plays nothing."""

    def __init__(self, timeline: list[dict[str, Any]], meta: dict[str, Any]) -> None:
        self.timeline = timeline
        self.meta = meta

    async def open(self, rate: int) -> None:
        return None

    async def write(self, chunk: Chunk) -> None:
        frame = chunk.frame
        self.timeline.append(
            {
                **self.meta,
                "kind": "stream",
                "seq": frame.seq if frame is not None else None,
                "t": chunk.t,
                "out": chunk.at_true,
                "samples": chunk.count,
                "offset": chunk.offset,
                "rate": chunk.rate,
            }
        )

    async def close(self) -> None:
        return None

    def level(self) -> float | None:
        return None


class FileStreamSink:
    """Writes the played samples to a WAV file (see the module docstring)."""

    def __init__(self, directory: Path, meta: dict[str, Any], volume: int) -> None:
        self.directory = Path(directory)
        self.meta = meta
        self.volume = volume
        self.level_meter = _Level()
        self._wav: wave.Wave_write | None = None
        self._path: Path | None = None
        self._samples = 0
        self._first: float | None = None

    async def open(self, rate: int) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.meta.get("broadcast_id", ""))[
            :40
        ]
        self._path = self.directory / f"{stamp}-{safe}-stream.wav"
        wav = wave.open(str(self._path), "wb")
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        self._wav = wav

    async def write(self, chunk: Chunk) -> None:
        if self._wav is None:
            return
        if self._first is None:
            self._first = chunk.at_true
        pcm = _pcm(chunk, self.volume)
        self.level_meter.add(pcm, chunk.rate)
        self._wav.writeframes(adpcm.samples_to_pcm(pcm))
        self._samples += len(pcm)

    async def close(self) -> None:
        wav, self._wav = self._wav, None
        if wav is None or self._path is None:
            return
        rate = wav.getframerate()
        wav.close()
        record = {
            **self.meta,
            "file": self._path.name,
            "kind": "stream",
            "start_true": self._first,
            "seconds_played": round(self._samples / rate, 3),
            "volume": self.volume,
        }
        with (self.directory / "played.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")

    def level(self) -> float | None:
        return self.level_meter.last_second()


def stream_output_command(rate: int, device: str | None = None) -> list[str]:
    """The command that plays s16le mono PCM at ``rate`` from stdin on this host."""
    if shutil.which("aplay"):
        return ["aplay", *(["-D", device] if device else []), "-q", "-t", "raw", "-f", "S16_LE",
                "-r", str(rate), "-c", "1", "-"]  # fmt: skip
    if shutil.which("ffplay"):
        return ["ffplay", "-nodisp", "-autoexit", "-loglevel", "error", "-f", "s16le", "-ar", str(rate),
                "-ch_layout", "mono", "-i", "-"]  # fmt: skip
    raise OSError("no audio output program found: install alsa-utils (aplay) or ffmpeg (ffplay)")


class RealStreamSink:
    """Decoded PCM into the output program (see the module docstring)."""

    def __init__(
        self, volume: int, command: Sequence[str] | None, device: str | None, env: dict[str, str]
    ) -> None:
        self.volume = volume
        self.command = list(command) if command else None
        self.device = device
        self.env = {**os.environ, **env}
        self.level_meter = _Level()
        self._proc: asyncio.subprocess.Process | None = None

    async def open(self, rate: int) -> None:
        command = self.command or stream_output_command(rate, self.device)
        self._proc = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env=self.env,
        )

    async def write(self, chunk: Chunk) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.returncode is not None:
            raise OSError("the audio output program ended")
        pcm = _pcm(chunk, self.volume)
        self.level_meter.add(pcm, chunk.rate)
        proc.stdin.write(adpcm.samples_to_pcm(pcm))
        await proc.stdin.drain()

    async def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(Exception):
                proc.stdin.close()
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), 5.0)

    def level(self) -> float | None:
        return self.level_meter.last_second()


__all__ = ["FileStreamSink", "NullStreamSink", "RealStreamSink", "stream_output_command"]

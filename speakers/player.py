"""Players: how a node turns a verified audio file into sound (or a record of it).

A :class:`Player` gets a :class:`PlayItem` twice: ``prepare`` runs shortly before the start
instant (decode, open the output) so that ``play`` can start on the dot; ``play`` returns when
the item has finished. Cancelling ``play`` stops the sound at once. The agent measures how long
an item really played; :func:`speakers.analysis.analyze` gives the level of what was played.

* :class:`RealPlayer`: raw PCM into a subprocess that owns the sound card: ``aplay`` when present,
  else ``ffplay -nodisp -autoexit`` reading PCM from stdin (or a configured command). The file is
  decoded ahead, the output process is started ahead and waits on its stdin, and the first
  samples are written at the start instant, so process start-up does not shift the start.
* :class:`NullPlayer`: plays nothing; records a timeline entry (true wall time of the start,
  controller time, duration, RMS) and waits the duration: simulated playback.
* :class:`FilePlayer`: writes what it plays (as WAV, at the playback volume, cut where playback
  was cut) to a folder, plus a JSON line per item, and takes the item's duration like a speaker.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from speakers.analysis import SILENCE_DBFS, Analysis, Analyzer, PlayerError, analyze, find_ffmpeg, samples
from speakers.streamsinks import FileStreamSink, NullStreamSink, RealStreamSink

_LOGGER = logging.getLogger(__name__)

__all__ = [
    "SILENCE_DBFS",
    "Analysis",
    "Analyzer",
    "FilePlayer",
    "NullPlayer",
    "Player",
    "PlayerError",
    "PlayItem",
    "RealPlayer",
    "analyze",
    "default_output_command",
    "find_ffmpeg",
    "make_player",
]

# Output: what sound cards take without resampling.
_OUT_RATE = 48000
_OUT_CHANNELS = 2
_OUT_BLOCK_S = 0.1


@dataclass
class PlayItem:
    """One thing to play, as the agent hands it to a player."""

    broadcast_id: str
    audio_id: str
    path: Path
    start_at: float  # controller time of the planned start
    duration_s: float
    volume: int  # 0..100, already adjusted for quiet hours
    tier: str = "normal"
    title: str = ""
    speaker_id: str = ""
    slot: str | None = None  # the scheduled airing (lookahead slot), if any
    offline: bool = False  # aired by the node on its own, without a play command
    # Filled in by the agent while it plays:
    started_controller: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Player(Protocol):
    """Contract of a player: ``prepare`` may take time (decode); ``play`` starts at once, returns
    when the item ends, stops immediately when cancelled, raises :class:`PlayerError`."""

    name: str

    async def prepare(self, item: PlayItem) -> None: ...

    async def play(self, item: PlayItem) -> None: ...

    async def release(self, item: PlayItem) -> None: ...

    def stream_sink(self, meta: dict[str, Any], volume: int) -> Any: ...


# ------------------------------------------------------------------------------ players


class NullPlayer:
    """Simulated playback: records a timeline entry and waits the item's duration.

    ``timeline`` entries: speaker_id, broadcast_id, audio_id, tier, title, start (true wall time,
    ``time.time()`` of this machine), start_controller (controller time of the start),
    start_at (planned), duration, volume; the agent adds end, seconds_played, rms_dbfs, outcome.
    """

    name = "null"

    def __init__(self, timeline: list[dict[str, Any]] | None = None) -> None:
        self.timeline: list[dict[str, Any]] = [] if timeline is None else timeline

    async def prepare(self, item: PlayItem) -> None:
        return None

    async def play(self, item: PlayItem) -> None:
        entry = {
            "speaker_id": item.speaker_id,
            "broadcast_id": item.broadcast_id,
            "audio_id": item.audio_id,
            "tier": item.tier,
            "title": item.title,
            "start": time.time(),
            "start_controller": item.started_controller,
            "start_at": item.start_at,
            "duration": item.duration_s,
            "volume": item.volume,
            "slot": item.slot,
            "offline": item.offline,
        }
        item.extra["timeline"] = entry
        self.timeline.append(entry)
        await asyncio.sleep(item.duration_s)

    async def release(self, item: PlayItem) -> None:
        return None

    def stream_sink(self, meta: dict[str, Any], volume: int) -> NullStreamSink:
        """Live streams: one timeline entry per chunk (``kind: "stream"``, ``out`` = when it sounds)."""
        return NullStreamSink(self.timeline, {**meta, "volume": volume})


class FilePlayer:
    """Writes what it plays to ``directory``: ``<time>-<broadcast>-<audio>.wav`` and ``played.jsonl``."""

    name = "file"

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._started: dict[int, float] = {}

    async def prepare(self, item: PlayItem) -> None:
        return None

    def stream_sink(self, meta: dict[str, Any], volume: int) -> FileStreamSink:
        """Live streams: what was played, as a WAV file and a line in played.jsonl."""
        return FileStreamSink(self.directory, meta, volume)

    async def play(self, item: PlayItem) -> None:
        started = time.monotonic()
        self._started[id(item)] = started
        item.extra["file_started"] = time.time()
        await asyncio.sleep(item.duration_s)

    async def release(self, item: PlayItem) -> None:
        started = self._started.pop(id(item), None)
        if started is None:
            return
        played = min(item.duration_s, time.monotonic() - started)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(item.extra.get("file_started", time.time())))
        safe_broadcast = "".join(c if c.isalnum() or c in "-_." else "_" for c in item.broadcast_id)[:40]
        out = self.directory / f"{stamp}-{safe_broadcast}-{item.audio_id[:12]}.wav"
        proc = await asyncio.create_subprocess_exec(
            find_ffmpeg(),
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-i",
            str(item.path),
            "-t",
            f"{played:.3f}",
            "-af",
            f"volume={item.volume / 100:.3f}",
            str(out),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        if proc.returncode != 0:
            _LOGGER.error("file player could not write %s: %s", out, err.decode("utf-8", "replace").strip())
        record = {
            "file": out.name,
            "broadcast_id": item.broadcast_id,
            "audio_id": item.audio_id,
            "title": item.title,
            "tier": item.tier,
            "volume": item.volume,
            "start_controller": item.started_controller,
            "seconds_played": round(played, 3),
            "slot": item.slot,
            "offline": item.offline,
        }
        with (self.directory / "played.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def default_output_command(device: str | None = None) -> list[str]:
    """The command that plays raw PCM (s16le, 48 kHz, stereo) from stdin on this host, on the ALSA
    ``device`` when given (aplay ``-D``; ffplay through SDL's ``AUDIODEV``, see :class:`RealPlayer`)."""
    if shutil.which("aplay"):
        return [
            "aplay",
            *(["-D", device] if device else []),
            "-q",
            "-t",
            "raw",
            "-f",
            "S16_LE",
            "-r",
            str(_OUT_RATE),
            "-c",
            str(_OUT_CHANNELS),
            "-",
        ]
    if shutil.which("ffplay"):
        return [
            "ffplay",
            "-nodisp",
            "-autoexit",
            "-loglevel",
            "error",
            "-f",
            "s16le",
            "-ar",
            str(_OUT_RATE),
            "-ch_layout",
            "stereo",
            "-i",
            "-",
        ]
    if shutil.which("paplay"):
        return [
            "paplay",
            *([f"--device={device}"] if device else []),
            "--raw",
            f"--rate={_OUT_RATE}",
            f"--channels={_OUT_CHANNELS}",
            "--format=s16le",
        ]
    raise PlayerError("no audio output program found: install alsa-utils (aplay) or ffmpeg (ffplay)")


class RealPlayer:
    """Plays through the host's sound output (see the module docstring).

    ``command``: the output program reading s16le 48 kHz stereo PCM on stdin (default: aplay,
    else ffplay). ``device``: the ALSA device (aplay ``-D``, or ``AUDIODEV`` for ffplay's SDL).
    ``env``: extra environment. ``software_volume``: scale samples by the item's volume (False
    when a mixer command sets the volume in hardware).

    :meth:`output_dbfs` is measured on the samples written to the output program over the last
    second (after the software volume): what the sound card was given, not what the horn emits.
    """

    name = "real"

    def __init__(
        self,
        command: Sequence[str] | None = None,
        env: dict[str, str] | None = None,
        software_volume: bool = True,
        device: str | None = None,
    ) -> None:
        self.command = list(command) if command else default_output_command(device)
        extra = dict(env or {})
        if device and not command and Path(self.command[0]).name == "ffplay":
            extra.setdefault("SDL_AUDIODRIVER", "alsa")
            extra.setdefault("AUDIODEV", device)
        self.env = {**os.environ, **extra}
        self.device = device
        self.software_volume = software_volume
        # Per item: mean square of each block written in the last second (output level).
        self._levels: dict[int, collections.deque[float]] = {}
        # Per item: (decoder, output program, first block of PCM). The file is streamed from the
        # decoder into the output program a block at a time, never decoded whole into memory
        # (20 minutes would be ~230 MB on a Pi).
        self._prepared: dict[int, tuple[asyncio.subprocess.Process, asyncio.subprocess.Process, bytes]] = {}

    def stream_sink(self, meta: dict[str, Any], volume: int) -> RealStreamSink:
        """Live streams: decoded PCM into aplay at the stream's rate (see speakers/streamsinks.py)."""
        return RealStreamSink(volume if self.software_volume else 100, None, self.device, {})

    @staticmethod
    def block_bytes() -> int:
        return int(_OUT_RATE * _OUT_CHANNELS * 2 * _OUT_BLOCK_S)

    async def _start_decoder(self, item: PlayItem) -> tuple[asyncio.subprocess.Process, bytes]:
        """Start ffmpeg on the file and read the first block (so a file that does not decode
        fails at prepare time, not at the start instant)."""
        gain = item.volume / 100 if self.software_volume else 1.0
        proc = await asyncio.create_subprocess_exec(
            find_ffmpeg(),
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(item.path),
            "-af",
            f"volume={gain:.3f}",
            "-f",
            "s16le",
            "-ac",
            str(_OUT_CHANNELS),
            "-ar",
            str(_OUT_RATE),
            "-",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        try:
            first = await proc.stdout.read(self.block_bytes())
        except BaseException:
            await _kill(proc)
            raise
        if not first:
            await proc.wait()
            err = await proc.stderr.read() if proc.stderr is not None else b""
            raise PlayerError(f"audio does not decode: {err.decode('utf-8', 'replace').strip()[-200:]}")
        return proc, first

    async def prepare(self, item: PlayItem) -> None:
        decoder, first = await self._start_decoder(item)
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env=self.env,
            )
        except OSError as exc:
            await _kill(decoder)
            raise PlayerError(f"cannot start {self.command[0]}: {exc}") from exc
        self._prepared[id(item)] = (decoder, proc, first)

    async def play(self, item: PlayItem) -> None:
        if id(item) not in self._prepared:
            await self.prepare(item)
        decoder, proc, block = self._prepared[id(item)]
        assert proc.stdin is not None and decoder.stdout is not None
        size = self.block_bytes()
        levels = self._levels[id(item)] = collections.deque(maxlen=round(1.0 / _OUT_BLOCK_S))
        try:
            while block:
                if proc.returncode is not None:
                    break
                proc.stdin.write(block)
                levels.append(_block_mean_square(block))
                await proc.stdin.drain()
                block = await decoder.stdout.read(size)
            proc.stdin.close()
            rc = await proc.wait()
        except (BrokenPipeError, ConnectionResetError):
            rc = await proc.wait()
        if rc != 0:
            err = b""
            if proc.stderr is not None:
                with contextlib.suppress(Exception):
                    err = await asyncio.wait_for(proc.stderr.read(), 1.0)
            raise PlayerError(
                f"{self.command[0]} failed (exit {rc}): {err.decode('utf-8', 'replace').strip()[-200:]}"
            )
        if block:  # the output program ended before the end of the file
            await _kill(decoder)
        elif await decoder.wait() != 0:
            err = await decoder.stderr.read() if decoder.stderr is not None else b""
            raise PlayerError(f"audio decoding failed: {err.decode('utf-8', 'replace').strip()[-200:]}")

    def output_dbfs(self, item: PlayItem) -> float | None:
        """RMS in dBFS of what was written to the output over the last second (None before)."""
        levels = self._levels.get(id(item))
        if not levels:
            return None
        mean_square = sum(levels) / len(levels)
        return max(SILENCE_DBFS, round(10 * math.log10(mean_square), 2)) if mean_square > 0 else SILENCE_DBFS

    async def release(self, item: PlayItem) -> None:
        self._levels.pop(id(item), None)
        prepared = self._prepared.pop(id(item), None)
        if prepared is None:
            return
        decoder, proc, _ = prepared
        for p in (proc, decoder):
            await _kill(p)
        if proc.stdin is not None:
            proc.stdin.close()
        for p in (proc, decoder):
            if p.stderr is not None:
                with contextlib.suppress(Exception):
                    await p.stderr.read()


_DRAIN_BYTES = 64 * 1024


def _block_mean_square(pcm: bytes) -> float:
    """Mean square of a block of s16le PCM, full scale = 1.0 (every 4th sample: plenty for a level,
    and cheap enough to run on every block a Pi writes)."""
    some = samples(pcm)[::4]
    if not some:
        return 0.0
    return sum(x * x for x in some) / len(some) / (32768.0 * 32768.0)


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    # Python 3.11's Process.wait() completes only once every pipe of the process reached EOF. A
    # killed decoder whose stdout we stopped reading (its buffer full, reading paused) would make
    # wait() hang for ever, so drain what is left first.
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(Exception):
                while await stream.read(_DRAIN_BYTES):
                    pass
    await proc.wait()


def make_player(
    kind: str,
    *,
    output_dir: Path | None = None,
    command: Sequence[str] | None = None,
    device: str | None = None,
) -> Player:
    if kind == "null":
        return NullPlayer()
    if kind == "file":
        if output_dir is None:
            raise PlayerError("the file player needs an output folder (--output-dir)")
        return FilePlayer(output_dir)
    if kind == "real":
        return RealPlayer(command, device=device)
    raise PlayerError(f"unknown player {kind!r} (real, null or file)")

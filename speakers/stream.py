"""Live streams on a node: relays and live speech (docs/protocol.md section 12).

:class:`StreamFrames` subscribes to a stream's frame topic while a job needs it and keeps the
frames that arrive (a few seconds ahead and behind). :func:`play_stream` plays one stream job: it
joins at the live point (the first frame that can still start on time, at or after ``start_at``),
starts on the dot of that frame's controller time, then writes frame after frame to the player's
stream sink like a sound card consumes samples. Before each frame it compares where the output is
(start + samples written) with where the frame must sound (its controller time on this node's
clock estimate) and, beyond :data:`TOLERANCE_S`, inserts silence or skips samples, so a node whose
clock estimate moved (a resync) or that lost frames comes back in step with every other cluster.
A lost frame is played as silence of its length; a frame that arrives after its time is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from speakers.clocksync import ClockSync
from speakers.protocol import CODEC_SILENCE, ProtocolError, StreamCommand, StreamFrame, Topics

_LOGGER = logging.getLogger(__name__)

# Start only on a frame at least this far ahead: the output must be opened before it.
JOIN_MARGIN_S = 0.08
# Hand each frame to the sink this long before it sounds (a sound card buffer is ahead too).
WRITE_AHEAD_S = 0.06
# Output and frame time may disagree this much before the output is corrected. Nodes correct their
# clock against the controller's to about a millisecond on a LAN; 2 ms is inaudible as an echo.
TOLERANCE_S = 0.002
# A stream job that gets no frame at all for this long fails (the controller fills a stalled
# source with silence frames, so silence on the wire means the link or the controller is gone).
NO_FRAMES_S = 15.0
# Frames kept behind the live point (a late join never needs more).
KEEP_BEHIND_S = 3.0
# Wake this long before the first frame's instant and spin to it (as for files, playout.py).
_SPIN_S = 0.003


@dataclass
class Chunk:
    """What a sink writes: ``count`` samples of ``frame`` from sample ``offset`` (``frame`` None:
    ``count`` samples of silence), sounding at ``at_mono`` (node monotonic) = ``at_true`` (this
    machine's wall time, for timelines) = ``t`` (controller time it was meant for)."""

    frame: StreamFrame | None
    offset: int
    count: int
    rate: int
    at_mono: float
    at_true: float
    t: float


class StreamSink(Protocol):
    """A player's output for one stream job (``speakers/streamsinks.py``)."""

    async def open(self, rate: int) -> None: ...

    async def write(self, chunk: Chunk) -> None: ...

    async def close(self) -> None: ...

    def level(self) -> float | None: ...


@dataclass
class _Buffer:
    frames: dict[int, StreamFrame] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    last_arrival: float = 0.0  # monotonic


class StreamFrames:
    """Frames of the streams this node plays, received on their topics (QoS 0: a frame is never
    queued for an offline node, so a node that comes back gets the live point, not the past)."""

    def __init__(self, name: str, link: Any, topics: Topics, clock: Any) -> None:
        self.name = name
        self.link = link
        self.topics = topics
        self.clock = clock
        self.buffers: dict[str, _Buffer] = {}
        self.users: dict[str, set[str]] = {}
        self.malformed = 0
        self.received = 0

    async def want(self, stream: str, key: str) -> _Buffer:
        users = self.users.setdefault(stream, set())
        users.add(key)
        buffer = self.buffers.setdefault(stream, _Buffer())
        if len(users) == 1:
            await self.link.subscribe(self.topics.stream(stream), qos=0)
        return buffer

    async def release(self, stream: str, key: str) -> None:
        users = self.users.get(stream)
        if users is None:
            return
        users.discard(key)
        if not users:
            del self.users[stream]
            self.buffers.pop(stream, None)
            await self.link.unsubscribe(self.topics.stream(stream))

    def on_frame(self, stream: str, payload: bytes) -> None:
        buffer = self.buffers.get(stream)
        if buffer is None:
            return  # a frame of a stream nobody plays here any more
        try:
            frame = StreamFrame.decode(payload)
        except ProtocolError as exc:
            self.malformed += 1
            _LOGGER.warning("%s: malformed frame on stream %s: %s", self.name, stream, exc)
            return
        self.received += 1
        buffer.frames[frame.seq] = frame
        buffer.last_arrival = self.clock.monotonic()
        buffer.arrived.set()
        if len(buffer.frames) > 64:
            newest = max(f.t for f in buffer.frames.values())
            for seq in [s for s, f in buffer.frames.items() if f.end < newest - KEEP_BEHIND_S - 10]:
                del buffer.frames[seq]


class StreamEnded(Exception):
    """The stream job cannot go on (no frames at all): ``reason`` says why."""


async def _wait_arrival(buffer: _Buffer, timeout: float) -> None:
    buffer.arrived.clear()
    if timeout > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(buffer.arrived.wait(), timeout)


@dataclass
class Progress:
    """How far a stream job got: read by the playout for receipts, also after a cut."""

    started_mono: float | None = None
    written_s: float = 0.0
    frames: int = 0
    lost: int = 0
    corrections: int = 0


async def play_stream(
    cmd: StreamCommand,
    buffer: _Buffer,
    sink: StreamSink,
    sync: ClockSync,
    progress: Progress,
    *,
    on_start: Callable[[float], None] | None = None,
    spin: bool = True,
) -> None:
    """Play ``cmd`` from ``buffer`` into ``sink`` until its end (see the module docstring).
    Raises StreamEnded when no frame arrives for :data:`NO_FRAMES_S`; cancel it to cut it."""
    clock = sync.clock
    end_at = cmd.end_at if cmd.end_at is not None else float("inf")
    since = clock.monotonic()
    # 1. The first frame that can still start on time, at or after start_at.
    while True:
        earliest = max(cmd.start_at, sync.controller_now() + JOIN_MARGIN_S)
        candidates = [f for f in buffer.frames.values() if f.t >= earliest - 1e-6]
        if candidates:
            first = min(candidates, key=lambda f: f.seq)
            break
        if any(f.last for f in buffer.frames.values()) or sync.controller_now() >= end_at:
            return  # ended before this node could join
        waited = clock.monotonic() - max(since, buffer.last_arrival)
        if waited > NO_FRAMES_S:
            raise StreamEnded(f"no audio frames for {NO_FRAMES_S:.0f} s")
        await _wait_arrival(buffer, min(1.0, NO_FRAMES_S - waited))
    if first.t >= end_at:
        return
    rate = first.rate
    await sink.open(rate)
    try:
        target = sync.to_mono(first.t)
        delay = target - clock.monotonic()
        if delay > _SPIN_S:
            await asyncio.sleep(delay - _SPIN_S)
        if spin:
            while clock.monotonic() < target:
                pass
        start_mono = clock.monotonic()
        progress.started_mono = start_mono
        if on_start is not None:
            on_start(sync.controller_now())
        written = 0  # samples given to the output since start_mono
        seq, expected_t = first.seq, first.t
        last_len = first.samples
        while expected_t < end_at:
            frame = buffer.frames.get(seq)
            position = start_mono + written / rate
            # 2. Wait for the frame until shortly before the output needs it.
            while frame is None:
                deadline = position - WRITE_AHEAD_S / 2
                remaining = deadline - clock.monotonic()
                if remaining <= 0:
                    break
                if clock.monotonic() - buffer.last_arrival > NO_FRAMES_S:
                    raise StreamEnded(f"no audio frames for {NO_FRAMES_S:.0f} s")
                await _wait_arrival(buffer, remaining)
                frame = buffer.frames.get(seq)
            if frame is not None and frame.rate != rate:
                frame = None  # a rate change mid-stream is not supported: played as silence
            t = frame.t if frame is not None else expected_t
            count = frame.samples if frame is not None else last_len
            if frame is None:
                progress.lost += 1
            # 3. Keep the output in step with the frame's controller time.
            error = sync.to_mono(t) - position
            offset = 0
            if error > TOLERANCE_S:
                gap = round(error * rate)
                await _write(sink, None, 0, gap, rate, position, t - error, clock)
                written += gap
                position = start_mono + written / rate
                progress.corrections += 1
            elif error < -TOLERANCE_S:
                offset = min(count, round(-error * rate))
                progress.corrections += 1
            keep = count - offset
            frame_end = t + count / rate
            if frame_end > end_at:
                keep = max(0, keep - round((frame_end - end_at) * rate))
            if keep > 0:
                # 4. Hand it over shortly before it sounds.
                ahead = position - WRITE_AHEAD_S - clock.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
                payload = frame if frame is not None and frame.codec != CODEC_SILENCE else None
                await _write(sink, payload, offset, keep, rate, position, t + offset / rate, clock)
                written += keep
                progress.written_s = written / rate
                progress.frames += 1
            last_len = count
            seq += 1
            expected_t = frame_end
            if frame is not None and frame.last:
                break
            for old in [s for s in buffer.frames if s < seq - 8]:
                del buffer.frames[old]
        # 5. Let the last samples play out.
        finish = start_mono + written / rate - clock.monotonic()
        if finish > 0:
            await asyncio.sleep(finish)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.shield(sink.close())


async def _write(
    sink: StreamSink,
    frame: StreamFrame | None,
    offset: int,
    count: int,
    rate: int,
    at_mono: float,
    t: float,
    clock: Any,
) -> None:
    at_true = time.time() + (at_mono - clock.monotonic())
    await sink.write(Chunk(frame, offset, count, rate, at_mono, at_true, t))


__all__ = [
    "JOIN_MARGIN_S",
    "NO_FRAMES_S",
    "TOLERANCE_S",
    "WRITE_AHEAD_S",
    "Chunk",
    "Progress",
    "StreamEnded",
    "StreamFrames",
    "StreamSink",
    "play_stream",
]

"""The playout's stream jobs (section 12): getting one ready and playing it (see ``stream.py``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speakers.player import PlayItem
from speakers.stream import Progress, StreamEnded, play_stream

if TYPE_CHECKING:
    from speakers.playout import Job, Playout

# A live item without a planned end is bounded by this on the node (the controller ends it sooner).
LIVE_MAX_S = 4 * 3600.0


async def ready(playout: Playout, job: Job) -> None:
    """Receive the job's frames from now on, then queue it (``scheduled``)."""
    stream = job.stream
    assert stream is not None
    if playout.streams is None or getattr(playout.player, "stream_sink", None) is None:
        playout.finish(job, "failed", reason=f"player {playout.player.name} cannot play live streams")
        return
    await playout.streams.want(stream.stream, job.key)
    if not playout.active(job):
        await playout.streams.release(stream.stream, job.key)
        return
    end = stream.end_at if stream.end_at is not None else stream.start_at + LIVE_MAX_S
    job.item = PlayItem(
        broadcast_id=job.key,
        audio_id="",
        path=Path(os.devnull),
        start_at=stream.start_at,
        duration_s=end - stream.start_at,
        volume=playout.volume(),
        tier=stream.tier,
        title=stream.title,
        speaker_id=playout.name,
    )
    job.progress = Progress()
    playout.queue.append(job)
    playout.event("scheduled", job, started_at=stream.start_at)
    playout.wake.set()


async def play(playout: Playout, job: Job) -> None:
    """Play the stream job into the player's stream sink until it ends (or is cut)."""
    assert job.item is not None and job.stream is not None and job.progress is not None
    buffer = playout.streams.buffers.get(job.stream.stream) if playout.streams is not None else None
    if buffer is None:
        raise StreamEnded("not receiving the stream")
    meta = {"speaker_id": playout.name, "broadcast_id": job.key, "stream": job.stream.stream}
    sink = playout.player.stream_sink(meta, job.item.volume)  # type: ignore[attr-defined]
    job.item.extra["sink"] = sink
    await play_stream(job.stream, buffer, sink, playout.sync, job.progress, spin=playout.spin)


def overall_level(item: PlayItem) -> float | None:
    """RMS (dBFS) of everything the sink played, when it measures it (None for the null player)."""
    meter: Any = getattr(item.extra.get("sink"), "level_meter", None)
    return None if meter is None else meter.overall()


__all__ = ["LIVE_MAX_S", "overall_level", "play", "ready"]

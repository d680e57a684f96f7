"""The stream hub: every source pulled once, however many airings play it.

A relay channel has one :class:`~broadcaster.live.pump.Pump` while at least one airing uses it
(two relays of VOV1 to two villages share it; a relay interrupted by an emergency keeps it, so it
resumes at the live point). A live item has its own pump, fed by the browser. The hub publishes
the frames on ``{prefix}/streams/{stream}/audio`` (QoS 0, docs/protocol.md section 12) and tells
its listener (the broadcast manager) when an airing's stream is ready, failed, had a gap or ended.
It never touches the database.
"""

from __future__ import annotations

import logging
import os
import resource
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from broadcaster.audio.config import AudioConfig
from broadcaster.live.config import LiveConfig
from broadcaster.live.pump import Pump, PumpEvents
from broadcaster.transport import Transport
from speakers.protocol import StreamFrame

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamInfo:
    """What an airing needs to know of its stream."""

    stream: str  # the id in the topic
    delay_s: float  # playout delay: frames are on the wire this long before they sound
    kind: str  # relay | live | speech (a streamed emergency)


class SourceListener(Protocol):
    """Told when a relay source stalls (silent past ``live.stall_s``, being reconnected) and when
    it is back or no longer pulled: the controller-level alert (``broadcaster/fleet/sources.py``)."""

    def stalled(self, key: str, name: str, detail: str) -> None: ...

    def resumed(self, key: str, name: str) -> None: ...


class HubListener(Protocol):
    """Told about the airings' streams (from the hub's threads; must not block for long)."""

    def stream_ready(self, broadcast_id: int, info: StreamInfo) -> None: ...

    def stream_failed(self, broadcast_id: int, reason: str) -> None: ...

    def stream_gap(self, broadcast_id: int, message: str) -> None: ...

    def stream_ended(self, broadcast_id: int, end_at: float, recording: Path | None) -> None: ...


@dataclass
class _Stream:
    info: StreamInfo
    pump: Pump
    users: set[int] = field(default_factory=set)
    ready: bool = False
    channel: int | None = None
    started: float = field(default_factory=time.monotonic)
    name: str = ""


# Streams fed through :meth:`StreamHub.feed` (not pulled from a URL).
_FED = frozenset({"live", "speech"})


class StreamHub:
    """See the module docstring."""

    def __init__(
        self,
        transport: Transport,
        config: LiveConfig | None = None,
        audio: AudioConfig | None = None,
        *,
        ffmpeg: str = "ffmpeg",
        workdir: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.transport = transport
        self.config = config or LiveConfig()
        self.audio = audio or AudioConfig()
        self.ffmpeg = ffmpeg
        self.workdir = workdir or Path(tempfile.gettempdir())
        self.clock = clock
        self.listener: HubListener | None = None
        self.source_listener: SourceListener | None = None
        self._lock = threading.Lock()
        self._streams: dict[str, _Stream] = {}
        self._by_airing: dict[int, str] = {}
        # Frames and bytes of the streams no longer pulled, by stream id (stats survive the stream).
        self._retired: dict[str, dict[str, int]] = {}

    # ------------------------------------------------------------------ relays

    def open_relay(self, broadcast_id: int, channel_id: int, name: str, url: str) -> StreamInfo:
        """Play channel ``channel_id`` for airing ``broadcast_id``: the listener hears
        ``stream_ready`` (at once when the channel is already pulled) or ``stream_failed``."""
        stream_id = f"ch{channel_id}"
        with self._lock:
            current = self._streams.get(stream_id)
            if current is None or not current.pump.alive:
                info = StreamInfo(stream_id, self.config.relay_delay_s, "relay")
                pump = self._pump(stream_id, name, url, info)
                current = self._streams[stream_id] = _Stream(info, pump, channel=channel_id, name=name)
                pump.start()
            current.users.add(broadcast_id)
            self._by_airing[broadcast_id] = stream_id
            ready = current.ready
        if ready:
            self._tell("stream_ready", broadcast_id, current.info)
        return current.info

    # ------------------------------------------------------------------ live speech

    def open_live(self, broadcast_id: int) -> StreamInfo:
        stream_id = f"live{broadcast_id}"
        info = StreamInfo(stream_id, self.config.live_delay_s, "live")
        record = self.workdir / f"live-{broadcast_id}-{os.getpid()}.wav"
        with self._lock:
            pump = self._pump(stream_id, f"trực tiếp #{broadcast_id}", None, info, record, anchored=True)
            self._streams[stream_id] = _Stream(info, pump, users={broadcast_id})
            self._by_airing[broadcast_id] = stream_id
        pump.start()
        return info

    # ------------------------------------------------------------------ streamed emergencies

    def open_speech(self, broadcast_id: int) -> StreamInfo:
        """An emergency streamed as it is synthesized (``broadcaster/speech_stream.py``): fed by the
        renderer with 16 kHz PCM faster than real time, conditioned like live speech, framed from
        the airing's start (:meth:`anchor`) and published one playout delay ahead of each frame."""
        stream_id = f"em{broadcast_id}"
        info = StreamInfo(stream_id, self.config.live_delay_s, "speech")
        with self._lock:
            pump = self._pump(stream_id, f"khẩn cấp #{broadcast_id}", None, info, anchored=True, paced=True)
            self._streams[stream_id] = _Stream(info, pump, users={broadcast_id})
            self._by_airing[broadcast_id] = stream_id
        pump.start()
        return info

    def anchor(self, broadcast_id: int, start: float) -> None:
        """The airing of a fed stream (live speech, a streamed emergency) starts at ``start``: its
        first sample sounds then."""
        stream = self._stream_of(broadcast_id)
        if stream is not None and stream.info.kind in _FED:
            stream.pump.anchor(start)

    # ------------------------------------------------------------------ fed streams (live, speech)

    def feed(self, broadcast_id: int, pcm: bytes) -> bool:
        """PCM for a live item (the browser's) or a streamed emergency (the renderer's); False when
        it is not fed any more."""
        stream = self._stream_of(broadcast_id)
        if stream is None or stream.info.kind not in _FED:
            return False
        return stream.pump.feed(pcm)

    def end_live(self, broadcast_id: int) -> bool:
        stream = self._stream_of(broadcast_id)
        if stream is None or stream.info.kind not in _FED:
            return False
        stream.pump.end()
        return True

    def is_live(self, broadcast_id: int) -> bool:
        stream = self._stream_of(broadcast_id)
        return stream is not None and stream.info.kind in _FED and stream.pump.alive

    # ------------------------------------------------------------------ both

    def release(self, broadcast_id: int) -> None:
        """Airing ``broadcast_id`` ended (or was cancelled): stop its source once nobody plays it."""
        with self._lock:
            stream_id = self._by_airing.pop(broadcast_id, None)
            stream = self._streams.get(stream_id) if stream_id else None
            if stream is None:
                return
            stream.users.discard(broadcast_id)
            if stream.users:
                return
            del self._streams[stream.info.stream]
        if stream.info.kind in _FED:
            stream.pump.end()
        else:
            stream.pump.stop(timeout=0)
        self._retire(stream)

    def stop(self) -> None:
        with self._lock:
            streams = list(self._streams.values())
            self._streams.clear()
            self._by_airing.clear()
        for stream in streams:
            stream.pump.stop()
            self._retire(stream)

    def _retire(self, stream: _Stream) -> None:
        """A stream is no longer pulled: its counters go to the totals; a stall alert it had ends."""
        with self._lock:
            total = self._retired.setdefault(stream.info.stream, {"frames": 0, "bytes": 0, "gaps": 0})
            total["frames"] += stream.pump.frames_published
            total["bytes"] += stream.pump.bytes_published
            total["gaps"] += stream.pump.gaps
        if stream.info.kind == "relay" and self.source_listener is not None:
            try:
                self.source_listener.resumed(stream.info.stream, stream.name)
            except Exception:
                _LOGGER.exception("live: source listener failed")

    def stats(self) -> dict[str, Any]:
        """Per active stream: frames and bytes published, gaps, reconnections; ``totals``: per
        stream id since the start, ended streams included; the process's CPU."""
        with self._lock:
            streams = dict(self._streams)
            totals = {sid: dict(t) for sid, t in self._retired.items()}
        for sid, s in streams.items():
            total = totals.setdefault(sid, {"frames": 0, "bytes": 0, "gaps": 0})
            total["frames"] += s.pump.frames_published
            total["bytes"] += s.pump.bytes_published
            total["gaps"] += s.pump.gaps
        usage = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {
            "streams": {
                sid: {
                    "kind": s.info.kind,
                    "airings": sorted(s.users),
                    "frames": s.pump.frames_published,
                    "bytes": s.pump.bytes_published,
                    "gaps": s.pump.gaps,
                    "reconnects": s.pump.reconnects,
                }
                for sid, s in streams.items()
            },
            "totals": totals,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "children_cpu_s": children.ru_utime + children.ru_stime,
        }

    # ------------------------------------------------------------------ helpers

    def _stream_of(self, broadcast_id: int) -> _Stream | None:
        with self._lock:
            stream_id = self._by_airing.get(broadcast_id)
            return self._streams.get(stream_id) if stream_id else None

    def _pump(
        self,
        stream_id: str,
        name: str,
        url: str | None,
        info: StreamInfo,
        record: Path | None = None,
        *,
        anchored: bool = False,
        paced: bool = False,
    ) -> Pump:
        topic = self.transport.topics.stream(stream_id)

        def publish(frame: StreamFrame) -> None:
            self.transport.publish(topic, frame.encode(), qos=0)

        def users() -> list[int]:
            with self._lock:
                stream = self._streams.get(stream_id)
                return sorted(stream.users) if stream is not None else []

        def ready() -> None:
            with self._lock:
                stream = self._streams.get(stream_id)
                if stream is not None:
                    stream.ready = True
            for bid in users():
                self._tell("stream_ready", bid, info)

        def failed(reason: str) -> None:
            bids = users()
            with self._lock:
                if self._streams.get(stream_id) is not None and self._streams[stream_id].pump is pump:
                    del self._streams[stream_id]
                for bid in bids:
                    self._by_airing.pop(bid, None)
            for bid in bids:
                self._tell("stream_failed", bid, reason)

        def gap(message: str) -> None:
            _LOGGER.warning("%s", message)
            for bid in users():
                self._tell("stream_gap", bid, message)

        def ended(end_at: float, recording: Path | None) -> None:
            for bid in users():
                self._tell("stream_ended", bid, end_at, recording)

        def source(stalled: bool, detail: str) -> None:
            listener = self.source_listener
            if listener is None or url is None:
                return
            if stalled:
                listener.stalled(stream_id, name, detail)
            else:
                listener.resumed(stream_id, name)

        pump = Pump(
            name,
            url,
            self.config,
            self.audio,
            PumpEvents(publish, ready, failed, gap, ended, source),
            delay_s=info.delay_s,
            ffmpeg=self.ffmpeg,
            record_to=record,
            clock=self.clock,
            anchored=anchored,
            paced=paced,
        )
        return pump

    def _tell(self, what: str, *args: Any) -> None:
        listener = self.listener
        if listener is None:
            return
        try:
            getattr(listener, what)(*args)
        except Exception:
            _LOGGER.exception("live: %s listener failed", what)


__all__ = ["HubListener", "SourceListener", "StreamHub", "StreamInfo"]

"""Stream items (relays, live speech) in the lifecycle, on the dispatcher thread.

A stream item is a broadcast like any other (approval, tiers, targets, deliveries, receipts,
arbitration); what differs is where its audio comes from and how long it lasts:

- when it is due, its source is opened on the stream hub (``broadcaster/live``) instead of
  rendering; "connecting" is the ``rendering`` state. The hub answers ``ready`` (the airing is
  queued for dispatch, like a rendered item), or ``failed`` with the reason in Vietnamese;
- its airing has a fixed end (``end_at``: the relay's planned end; a live item's end is set when
  the officer ends it or the browser goes away) and plays on the nodes with a ``stream`` command;
- a cluster that reconnects while it should be playing the stream gets the stream command again
  (the same id and start): a node that restarted joins at the live point, one that merely
  reconnected recognises a duplicate;
- when the airing ends, the hub releases the source (one pull per channel is kept while any airing
  plays it). A live item's recording is kept in the audio store, linked from its broadcast.

A third kind rides on the same machinery: an **emergency streamed as it is synthesized**
(``broadcaster/speech_stream.py``). It stays an announcement in the database; the renderer opens a
``speech`` stream on the hub (:class:`SpeechFeed`) and feeds it piece by piece; its airing is a
stream item of kind ``speech`` with no planned end (like a live item) whose frames are anchored at
the airing's start (:meth:`StreamItems.started`); once rendered, the whole recording is its audio.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.orm import Session

from broadcaster.broadcasts.ledger import Ledger, utc
from broadcaster.broadcasts.state import Airing
from broadcaster.domain import ALL_TARGETS, Tier
from broadcaster.live.conditioner import BROWSER_RATE
from broadcaster.models import Broadcast, BroadcastState, Channel, DeliveryState

_LOGGER = logging.getLogger(__name__)

KINDS = ("relay", "live")
# A node subscribes to a stream when its command arrives: the first frame it plays must be
# published after that, so a stream starts at least its playout delay plus this after dispatch.
SUBSCRIBE_MARGIN_S = 0.3
# Officer-facing name of the source of a live item (log, reports, CSV).
LIVE_SOURCE = "Phát trực tiếp"


class HubPort(Protocol):
    def open_relay(self, broadcast_id: int, channel_id: int, name: str, url: str) -> Any: ...

    def open_live(self, broadcast_id: int) -> Any: ...

    def open_speech(self, broadcast_id: int) -> Any: ...

    def anchor(self, broadcast_id: int, start: float) -> None: ...

    def feed(self, broadcast_id: int, pcm: bytes) -> bool: ...

    def end_live(self, broadcast_id: int) -> bool: ...

    def release(self, broadcast_id: int) -> None: ...


class StreamGone(Exception):
    """A streamed emergency's stream ended before its program did (cancelled, stopped)."""


class SpeechFeed:
    """The sink of a streamed emergency (``speech_stream.ProgramSink``): the renderer's PCM into the
    emergency's ``speech`` stream on the hub. Thread: the render worker's."""

    rate = BROWSER_RATE  # what the live conditioner takes

    def __init__(self, hub: HubPort, broadcast_id: int) -> None:
        self.hub = hub
        self.broadcast_id = broadcast_id
        self.opened = False

    def open(self) -> None:
        self.hub.open_speech(self.broadcast_id)
        self.opened = True

    def write(self, pcm: bytes) -> None:
        """Raises StreamGone when the emergency's stream is over (it was cancelled or stopped): the
        renderer stops synthesizing what nobody will hear."""
        if pcm and not self.hub.feed(self.broadcast_id, pcm):
            raise StreamGone(f"the stream of emergency {self.broadcast_id} is gone")

    def close(self) -> None:
        if self.opened:
            self.hub.end_live(self.broadcast_id)


class StreamItems:
    """See the module docstring. Owned by the lifecycle; only the dispatcher thread calls it."""

    def __init__(self, ledger: Ledger, hub: HubPort | None, clock: Callable[[], float]) -> None:
        self.ledger = ledger
        self.hub = hub
        self.clock = clock
        self.info: dict[int, Any] = {}  # broadcast id -> StreamInfo once ready
        self.streamed: set[int] = set()  # emergencies aired as synthesized, their recording to come

    @staticmethod
    def is_stream(bc: Broadcast) -> bool:
        return (bc.kind or "announcement") in KINDS

    def open(self, session: Session, bc: Broadcast) -> None:
        """The stream item is due (and approved): connect to its source."""
        now = self.clock()
        if self.hub is None:
            self.ledger.fail(
                session, bc, "Máy chủ này không bật chức năng tiếp sóng và phát trực tiếp.", now=now
            )
            return
        self.ledger.set_state(bc, BroadcastState.RENDERING)
        if bc.kind == "live":
            self.hub.open_live(bc.id)
            return
        channel = session.get(Channel, bc.channel_id) if bc.channel_id is not None else None
        if channel is None:
            self.ledger.fail(session, bc, f"Kênh tiếp sóng «{bc.source_name or ''}» không còn.", now=now)
            return
        if bc.end_at is not None and bc.end_at.timestamp() <= now:
            self.ledger.miss(session, bc, "Đã qua giờ kết thúc tiếp sóng.", now=now)
            return
        message = f"Tiếp sóng #{bc.id}: đang kết nối tới kênh «{channel.name}»"
        self.ledger.log(session, "connecting", message, bc.id, now=now)
        self.hub.open_relay(bc.id, channel.id, channel.name, channel.url)

    def airing(self, bc: Broadcast, info: Any, whole_zones: set[str], valid_until: float) -> Airing:
        """The airing of a stream item whose source is ready (a streamed emergency: its stream)."""
        end_at = bc.end_at.timestamp() if bc.end_at is not None else None
        title = bc.announcement.title or bc.source_name or LIVE_SOURCE
        kind = bc.kind
        if info.kind == "speech":
            self.streamed.add(bc.id)
            kind, title = "speech", bc.announcement.title or bc.announcement.text[:60]
            if bc.valid_until is not None:
                valid_until = bc.valid_until.timestamp()
        self.info[bc.id] = info
        return Airing(
            id=bc.id,
            tier=Tier(bc.tier),
            order=bc.id,
            title=title,
            audio_key="",
            audio=None,
            duration=0.0,
            valid_until=end_at if end_at is not None else valid_until,
            whole_zones=whole_zones,
            pending={d.speaker_id for d in bc.deliveries if d.state == DeliveryState.PENDING.value},
            stream=info.stream,
            kind=kind,
            end_at=end_at,
            min_lead=info.delay_s + SUBSCRIBE_MARGIN_S,
        )

    def failed(self, session: Session, bc: Broadcast, reason: str) -> None:
        if BroadcastState(bc.state).finished:
            return
        label = "Tiếp sóng" if bc.kind == "relay" else "Phát trực tiếp"
        self.ledger.fail(session, bc, f"{label} không bắt đầu được: {reason}", now=self.clock())

    def gap(self, session: Session, broadcast_id: int, message: str) -> None:
        self.ledger.log(session, "stream_gap", f"#{broadcast_id}: {message}", broadcast_id, now=self.clock())

    def ended(
        self, session: Session, airing: Airing | None, bc: Broadcast, end_at: float, recording: Any
    ) -> None:
        """A live item's stream ended (the officer ended it, or the browser went away): its end is
        fixed, and what was said is kept as its recording."""
        now = self.clock()
        if bc.end_at is None:
            bc.end_at = utc(end_at)
        if airing is not None:
            airing.end_at = end_at
            if airing.kind != "speech":  # a streamed emergency stays valid for those who missed it
                airing.valid_until = min(airing.valid_until, end_at)
            for speaker, (start, _) in list(airing.active.items()):
                airing.active[speaker] = (start, max(start, end_at))
            if airing.kind != "speech":
                # Clusters that never got it: nothing left to join. (Those that missed a streamed
                # emergency get its recording instead, see Lifecycle.stream_to_file.)
                airing.pending.clear()
        start = bc.start_at.timestamp() if bc.start_at else end_at
        if bc.kind == "live":
            bc.duration_s = max(0.0, end_at - start)
            self.ledger.log(session, "live_ended", f"Phát trực tiếp #{bc.id} kết thúc", bc.id, now=now)
        elif bc.kind == "relay":  # its pump broke off (a bug): the clusters play out what they have
            self.ledger.log(session, "stream_ended", f"Tiếp sóng #{bc.id}: nguồn dừng", bc.id, now=now)
        else:  # a streamed emergency: its recording gives the duration once stored
            message = f"Bản tin #{bc.id}: đã gửi hết âm thanh tới các cụm loa"
            self.ledger.log(session, "stream_ended", message, bc.id, now=now)
        if bc.state == BroadcastState.RENDERING.value:
            self.ledger.end_open_deliveries(
                bc, DeliveryState.MISSED, "buổi phát trực tiếp kết thúc trước khi gửi"
            )
            self.ledger.finish(session, bc, BroadcastState.MISSED, "Không có âm thanh nào được phát", now=now)

    def keep_recording(self, session: Session, bc: Broadcast, key: str, seconds: float) -> None:
        bc.audio_key = key
        bc.announcement.audio_key = key
        message = f"Phát trực tiếp #{bc.id}: đã lưu bản ghi {seconds:.0f} giây"
        self.ledger.log(session, "recorded", message, bc.id, now=self.clock())

    def started(self, airing: Airing, start: float) -> None:
        """An airing was sent: the frames of a fed stream (live speech, a streamed emergency) count
        from its start, so its first sample sounds then (none is lost before the clusters join)."""
        if airing.kind in ("live", "speech") and self.hub is not None:
            self.hub.anchor(airing.id, start)

    def release(self, broadcast_id: int) -> None:
        self.info.pop(broadcast_id, None)
        if self.hub is not None:
            self.hub.release(broadcast_id)

    @staticmethod
    def zones_of(bc: Broadcast, members: dict[str, Any]) -> set[str]:
        targets = set(bc.targets or [])
        return {z for z in members if ALL_TARGETS in targets or z in targets}


def remove_file(path: Path | None) -> None:
    if path is not None:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            _LOGGER.warning("could not remove %s", path)


__all__ = [
    "KINDS",
    "LIVE_SOURCE",
    "SUBSCRIBE_MARGIN_S",
    "HubPort",
    "SpeechFeed",
    "StreamItems",
    "remove_file",
]

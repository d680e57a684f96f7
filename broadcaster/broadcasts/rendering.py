"""Rendering broadcasts on worker pools, and pinning their audio until they end.

Synthesis is slow, so it never runs on the dispatcher thread, the MQTT network thread or a web
request: ``request()`` (dispatcher thread) starts a job on a pool (emergencies on a pool of their
own, never behind a long normal render) and the job posts its result back to the dispatcher's
inbox as a :class:`Rendered` item. The audio of a rendered broadcast is pinned in the store (owner
``broadcast:<id>``) so LRU eviction cannot take it before it airs; the ledger releases the pin when
the broadcast ends, however it ends.

An emergency due now whose audio is not stored yet is rendered *streamed* when a ``streamer`` is
given (``broadcasts.stream_emergencies``): its program goes to a live stream piece by piece as it is
synthesized (``broadcaster/speech_stream.py``), so it starts sounding after its first part instead
of after the whole render; the whole recording is stored and posted as usual afterwards.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from broadcaster.broadcasts.ports import SpeechPort, pin_owner
from broadcaster.broadcasts.state import Hold
from broadcaster.domain import Tier
from broadcaster.lexicon import overrides_in
from broadcaster.models import Broadcast

_LOGGER = logging.getLogger(__name__)

# Render workers for emergencies, apart from the others (see Renderer.request).
URGENT_WORKERS = 2


@dataclass(frozen=True)
class Rendered:
    """The result of one render job, posted to the dispatcher."""

    broadcast_id: int
    key: str | None = None
    engine: str = ""
    duration_s: float = 0.0
    normalized_text: str = ""
    error: str | None = None  # set when the render failed (Vietnamese, for the log)


class Renderer:
    """Render jobs and the bookkeeping the dispatcher needs while they run."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        speech: SpeechPort,
        post: Callable[[Rendered], None],
        workers: int,
        streamer: Callable[[int], Any] | None = None,
    ) -> None:
        """``streamer(broadcast_id)``: the sink a streamed emergency goes to (``streams.SpeechFeed``)."""
        self.streamer = streamer
        self.sessions = sessions
        self.speech = speech
        self.post = post
        self.workers = workers
        self.rendering: set[int] = set()  # broadcasts with a job running
        self.air_when_rendered: set[int] = set()  # due: air as soon as the audio is there
        self._holds: dict[int, Hold] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._urgent: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False
        # Held while a job reads its inputs: close() waits for that short read (not for synthesis),
        # so no job is inside the database when the controller disposes its engine after a stop.
        self._reading = threading.Lock()
        self._reads_closed = False

    def request(self, broadcast_id: int, tier: Tier, *, air: bool) -> None:
        """Dispatcher thread: start a render (once per broadcast at a time)."""
        if air:
            self.air_when_rendered.add(broadcast_id)
        if broadcast_id in self.rendering:
            return
        with self._lock:
            if self._closed:
                return
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="render")
                # Two: an emergency never waits for the render of the one before it (which may be
                # finishing its recording after it was cancelled or while it still plays).
                self._urgent = ThreadPoolExecutor(URGENT_WORKERS, thread_name_prefix="render-urgent")
            pool = self._urgent if tier is Tier.EMERGENCY else self._pool
            assert pool is not None
            self.rendering.add(broadcast_id)
            stream = air and tier is Tier.EMERGENCY and self.streamer is not None
            pool.submit(self._job, broadcast_id, stream)

    def finished(self, broadcast_id: int) -> bool:
        """Dispatcher thread, on a Rendered item: forget the job; True when it is due to air."""
        self.rendering.discard(broadcast_id)
        self._holds.pop(broadcast_id, None)
        air = broadcast_id in self.air_when_rendered
        self.air_when_rendered.discard(broadcast_id)
        return air

    def drop(self, broadcast_id: int) -> None:
        """The broadcast was cancelled: do not air it when its render comes back."""
        self.air_when_rendered.discard(broadcast_id)
        self._holds.pop(broadcast_id, None)

    def holds(self, session: Session) -> list[Hold]:
        """Items due but still rendering: they keep their place in the queue on their clusters."""
        for bid in self.air_when_rendered - set(self._holds):
            bc = session.get(Broadcast, bid)
            if bc is not None:
                targets = frozenset(d.speaker_id for d in bc.deliveries)
                self._holds[bid] = Hold(bid, Tier(bc.tier), targets)
        return list(self._holds.values())

    def reset(self) -> None:
        """After a rolled-back transaction: holds are re-read; running jobs stay recorded."""
        self._holds.clear()

    def pin(self, key: str, broadcast_id: int) -> None:
        try:
            self.speech.store.pin(key, pin_owner(broadcast_id))
        except Exception:
            _LOGGER.warning("could not pin %s for broadcast %s", key, broadcast_id, exc_info=True)

    def close(self) -> None:
        """No new jobs; running ones finish on their own and their results are dropped by the
        dispatcher (it is stopping). Does not wait for a hung engine."""
        with self._lock:
            self._closed = True
            pools = [p for p in (self._pool, self._urgent) if p is not None]
            self._pool = self._urgent = None
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)
        with self._reading:
            self._reads_closed = True

    def _job(self, broadcast_id: int, stream: bool = False) -> None:
        """On a render worker: synthesize (or look up an uploaded recording), then post the result.
        ``stream``: an emergency due now, played as it is synthesized when not stored yet."""
        try:
            with self._reading, self.sessions() as session:
                if self._reads_closed:
                    return  # closed while this job waited: its result would be dropped anyway
                bc = session.get(Broadcast, broadcast_id)
                if bc is None:
                    self.post(Rendered(broadcast_id, error="bản tin không còn"))
                    return
                ann = bc.announcement
                # Nothing to stream to when no cluster of ours hears it (an upper level's emergency
                # for the units below): rendered whole, as the bulletin's audio.
                stream = stream and bool(bc.deliveries)
                lexicon = overrides_in(session)
                text, engine, voice, repeat, key = ann.text, ann.engine, ann.voice, ann.repeat, ann.audio_key
            if key:
                meta = self.speech.store.meta(key) or {}
                result = Rendered(
                    broadcast_id,
                    key=key,
                    engine=str(meta.get("engine") or "recording"),
                    duration_s=float(meta.get("duration_s") or meta.get("duration") or 0.0),
                )
            elif stream and self.streamer is not None and hasattr(self.speech, "render_streamed"):
                audio = self.speech.render_streamed(
                    text,
                    sink=self.streamer(broadcast_id),
                    engine=engine,
                    voice=voice,
                    repeat=repeat,
                    chime=True,
                    lexicon=lexicon or None,
                )
            else:
                audio = self.speech.render(
                    text, engine=engine, voice=voice, repeat=repeat, chime=True, lexicon=lexicon or None
                )
            if not key:
                result = Rendered(
                    broadcast_id,
                    key=audio.key,
                    engine=audio.engine,
                    duration_s=float(audio.duration_s),
                    normalized_text=audio.normalized_text,
                )
        except Exception as exc:  # SpeechError and anything unexpected: the broadcast fails, with why
            _LOGGER.warning("render of broadcast %s failed: %s", broadcast_id, exc)
            message = getattr(exc, "message_vi", None) or str(exc) or type(exc).__name__
            result = Rendered(broadcast_id, error=message)
        self.post(result)


__all__ = ["Rendered", "Renderer"]

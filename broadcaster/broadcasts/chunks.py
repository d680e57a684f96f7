"""Serving audio chunks to the nodes that ask for them (``need_audio`` events).

Each chunk is published on its file's audio topic, which every node fetching the file reads: one
publish serves every node that subscribed before it, and costs one copy for each of them. So the
requests for a file are gathered, and how long depends on how many nodes fetch it, as
``scale = max(1, fetching / FANOUT_PER_SCALE)``. ``fetching`` is the number of requests of the last
``FANOUT_WINDOW_S``, or as many as the pace of the last ``RATE_WINDOW_S`` would bring in that
window when that is more (so the first requests of a burst already count the burst):

* a copy goes out once the requests pause for ``GATHER_S × scale``, or ``GATHER_MAX_S × scale``
  after the first of them: a zone of nodes asking at once costs one publish per chunk, after
  30 ms; 2,000 clusters asking one after the other for seconds get a copy once they paused for
  0.6 s or after 5 s, not one per request;
* a chunk is not published again sooner than ``dedupe_s × scale`` after its last copy.

Every limit is at most ``REPUBLISH_MAX_S``. A request is never dropped: one that comes too soon
is kept for the next copy (its node may have subscribed just after the last one went by, and would
otherwise wait for its own request timeout before asking again).

Why: at 2,000 clusters a copy of a 360 KB file is 720 MB for the broker to queue and the nodes to
read. Publishing again for each late request (the first design: 30 ms gathering, a copy at most
every ``dedupe_s`` = 0.5 s, requests inside that window dropped) sent 14 copies, took 63 s and
grew the broker to 5 GB, and in the per-cluster case it was killed for lack of memory
(bench/bench_delivery.py on the 2-core machine). While a copy is on its way to thousands of
nodes, their requests mostly mean "not here yet", and another copy would only queue behind it.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from broadcaster.broadcasts.ports import AudioStorePort
from broadcaster.transport import Transport
from speakers.protocol import DEFAULT_CHUNK_SIZE, Event, split_chunks

_LOGGER = logging.getLogger(__name__)

# Requests for a file are gathered until they pause this long (times the scale), so one publish
# serves a zone of nodes asking at once...
GATHER_S = 0.03
# ...but a burst that does not pause is served this long (times the scale) after it began.
GATHER_MAX_S = 0.25
# The scale of the gathering and of the interval between two copies of a chunk: one more per this
# many requests for the file in the last FANOUT_WINDOW_S (2,000 clusters: 20).
FANOUT_PER_SCALE = 100
FANOUT_WINDOW_S = 5.0
RATE_WINDOW_S = 0.5
# No wait is longer than this: below the agent's first request timeout (3 s) plus a copy's travel.
REPUBLISH_MAX_S = 5.0
# Chunks stay on the broker this long for nodes that are slow to read them.
CHUNK_EXPIRY_S = 600
# Bound of the "recently published" memory; older entries are forgotten first.
_SENT_MEMORY = 10_000


@dataclass
class _Gathering:
    """The requests for one file not served yet."""

    first: float  # when the oldest of them came
    last: float  # when the latest came
    indexes: set[int] = field(default_factory=set)
    not_before: float = 0.0  # chunks kept from a publish: not published again before this


class ChunkServer:
    """Dispatcher-thread object: ``want`` records a request, ``publish_due`` sends what is due."""

    def __init__(
        self,
        transport: Transport,
        store: AudioStorePort,
        recent_keys: Callable[[], list[str]],
        dedupe_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock  # monotonic seconds (tests drive it)
        self.transport = transport
        self.store = store
        self.recent_keys = recent_keys  # audio keys of recent broadcasts, newest first
        self.dedupe_s = dedupe_s
        self._audio: dict[str, bytes] = {}  # audio id (sha256 of the bytes) -> bytes
        self._gathering: dict[str, _Gathering] = {}
        self._asked: dict[str, collections.deque[float]] = {}  # audio id -> times of recent requests
        self._pace: dict[str, collections.deque[float]] = {}  # the same, RATE_WINDOW_S only
        self._sent: dict[tuple[str, int], float] = {}
        self.published = 0
        self.deduped = 0  # requests served by a copy that was already gathered or kept for later

    def offer(self, audio_id: str, data: bytes) -> None:
        """Keep the bytes of an airing in memory while it is in progress."""
        self._audio[audio_id] = data

    def forget(self, audio_id: str) -> None:
        self._audio.pop(audio_id, None)

    def want(self, event: Event) -> None:
        audio_id = event.audio_id
        if not audio_id:
            return
        data = self._bytes(audio_id)
        if data is None:
            _LOGGER.warning("a node asked for unknown audio %s", audio_id)
            return
        count = max(1, -(-len(data) // DEFAULT_CHUNK_SIZE))  # as split_chunks cuts it, without copying
        wanted = {i for i in event.missing if 0 <= i < count} if event.missing else set(range(count))
        now = self.clock()
        self._asked.setdefault(audio_id, collections.deque()).append(now)
        self._pace.setdefault(audio_id, collections.deque()).append(now)
        gathering = self._gathering.get(audio_id)
        if gathering is None:
            self._gathering[audio_id] = _Gathering(now, now, wanted)
            return
        self.deduped += len(wanted & gathering.indexes)
        gathering.indexes |= wanted
        gathering.last = now

    def scale(self, audio_id: str, now: float) -> float:
        """How many times longer than for a zone this file's requests are gathered and its
        copies spaced (module docstring)."""
        asked, pace = self._asked.get(audio_id), self._pace.get(audio_id)
        while asked and now - asked[0] > FANOUT_WINDOW_S:
            asked.popleft()
        while pace and now - pace[0] > RATE_WINDOW_S:
            pace.popleft()
        fetching = max(len(asked or ()), len(pace or ()) * FANOUT_WINDOW_S / RATE_WINDOW_S)
        return max(1.0, fetching / FANOUT_PER_SCALE)

    def _due(self, audio_id: str, gathering: _Gathering, now: float) -> float:
        scale = self.scale(audio_id, now)
        gathered = min(
            gathering.last + min(GATHER_S * scale, REPUBLISH_MAX_S),
            gathering.first + min(GATHER_MAX_S * scale, REPUBLISH_MAX_S),
        )
        return max(gathering.not_before, gathered)

    def wait_s(self, default: float) -> float:
        """How long the dispatcher may sleep before chunks are due."""
        if not self._gathering:
            return default
        now = self.clock()
        due = min(self._due(a, g, now) for a, g in self._gathering.items())
        return min(default, max(0.0, due - now))

    def publish_due(self) -> None:
        now = self.clock()
        for audio_id, gathering in list(self._gathering.items()):
            if now < self._due(audio_id, gathering, now):
                continue
            del self._gathering[audio_id]
            data = self._bytes(audio_id)
            if data is None:
                continue
            chunks = split_chunks(data)
            interval = min(self.dedupe_s * self.scale(audio_id, now), REPUBLISH_MAX_S)
            kept: set[int] = set()
            not_before = 0.0
            for index in sorted(gathering.indexes):
                last = self._sent.get((audio_id, index))
                if last is not None and now - last < interval:
                    kept.add(index)  # a copy is on its way, or its node subscribed just after it
                    not_before = max(not_before, last + interval)
                    continue
                self._sent[(audio_id, index)] = now
                self.transport.publish(
                    self.transport.topics.audio_chunk(audio_id, index),
                    chunks[index],
                    qos=1,
                    expiry_s=CHUNK_EXPIRY_S,
                )
                self.published += 1
            if kept:
                self.deduped += len(kept)
                self._gathering[audio_id] = _Gathering(gathering.first, gathering.last, kept, not_before)
        if len(self._sent) > _SENT_MEMORY:
            self._sent = {k: t for k, t in self._sent.items() if now - t < REPUBLISH_MAX_S}
        for audio_id in [
            a for a, times in self._asked.items() if not times or now - times[-1] > FANOUT_WINDOW_S
        ]:
            del self._asked[audio_id]

    def _bytes(self, audio_id: str) -> bytes | None:
        """The audio with this id: an airing's, or a recent broadcast's from the store (a node
        catching up on an item that already ended elsewhere)."""
        data = self._audio.get(audio_id)
        if data is not None:
            return data
        for key in dict.fromkeys(self.recent_keys()):
            meta = self.store.meta(key) or {}
            if meta.get("sha256") == audio_id:
                try:
                    data = self.store.read_bytes(key)
                except Exception:
                    return None
                self._audio[audio_id] = data
                return data
        return None


__all__ = ["GATHER_MAX_S", "GATHER_S", "ChunkServer"]

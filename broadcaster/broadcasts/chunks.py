"""Serving audio chunks to the nodes that ask for them (``need_audio`` events).

Requests are gathered for ``GATHER_S`` and each chunk is published once on its audio topic, which
every node missing it reads: a zone of nodes asking at once costs one publish per chunk. A chunk
published less than ``dedupe_s`` ago is not published again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from broadcaster.broadcasts.ports import AudioStorePort
from broadcaster.transport import Transport
from speakers.protocol import Event, split_chunks

_LOGGER = logging.getLogger(__name__)

# Requests for audio chunks are gathered this long before publishing, so one publish serves a zone.
GATHER_S = 0.03
# Chunks stay on the broker this long for nodes that are slow to read them.
CHUNK_EXPIRY_S = 600
# Bound of the "recently published" memory; older entries are forgotten first.
_SENT_MEMORY = 10_000


class ChunkServer:
    """Dispatcher-thread object: ``want`` records a request, ``publish_due`` sends what is due."""

    def __init__(
        self,
        transport: Transport,
        store: AudioStorePort,
        recent_keys: Callable[[], list[str]],
        dedupe_s: float,
    ) -> None:
        self.transport = transport
        self.store = store
        self.recent_keys = recent_keys  # audio keys of recent broadcasts, newest first
        self.dedupe_s = dedupe_s
        self._audio: dict[str, bytes] = {}  # audio id (sha256 of the bytes) -> bytes
        self._requests: dict[str, set[int]] = {}
        self._due: float | None = None
        self._sent: dict[tuple[str, int], float] = {}
        self.published = 0
        self.deduped = 0

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
        count = len(split_chunks(data))
        wanted = {i for i in event.missing if 0 <= i < count} if event.missing else set(range(count))
        self._requests.setdefault(audio_id, set()).update(wanted)
        if self._due is None:
            self._due = time.monotonic() + GATHER_S

    def wait_s(self, default: float) -> float:
        """How long the dispatcher may sleep before chunks are due."""
        if self._due is None:
            return default
        return min(default, max(0.0, self._due - time.monotonic()))

    def publish_due(self) -> None:
        if self._due is None or time.monotonic() < self._due:
            return
        requests, self._requests, self._due = self._requests, {}, None
        now = time.monotonic()
        for audio_id, indexes in requests.items():
            data = self._bytes(audio_id)
            if data is None:
                continue
            chunks = split_chunks(data)
            for index in sorted(indexes):
                last = self._sent.get((audio_id, index))
                if last is not None and now - last < self.dedupe_s:
                    self.deduped += 1
                    continue
                self._sent[(audio_id, index)] = now
                self.transport.publish(
                    self.transport.topics.audio_chunk(audio_id, index),
                    chunks[index],
                    qos=1,
                    expiry_s=CHUNK_EXPIRY_S,
                )
                self.published += 1
        if len(self._sent) > _SENT_MEMORY:
            self._sent = {k: t for k, t in self._sent.items() if now - t < self.dedupe_s}

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


__all__ = ["GATHER_S", "ChunkServer"]

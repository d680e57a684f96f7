"""Fetching audio chunk by chunk (docs/protocol.md section 5) for whoever needs a file.

A file is wanted by one or more *holders*: broadcasts waiting to play it, or scheduled slots
that the node holds ahead (section 11). One transfer per file serves them all. The fetcher
subscribes to the file's chunk topic first, then asks (``need_audio``) for every chunk, keeps
only chunks whose length and sha256 match, asks again for exactly what is missing when nothing
new came for a while (backing off, up to a cap), and stores the file in the cache once the whole
file verifies. It gives up on a holder whose ``valid_until`` passes (``expired``) and on all of
them after ``max_requests`` fruitless requests in a row (``failed``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from speakers.cache import AudioCache, CacheError, ChunkPool, Transfer
from speakers.config import AudioConfig
from speakers.protocol import AudioRef, Topics

_LOGGER = logging.getLogger(__name__)


@dataclass
class Holder:
    """Someone waiting for a file. ``request`` holds the receipt fields of its ``need_audio``
    (``broadcast_id``, ``tier``, ``slot``); ``give_up(state, reason)`` gets ``expired`` or
    ``failed``; ``alive()`` False drops the holder silently (stopped meanwhile)."""

    key: str
    valid_until: float | None
    ready: Callable[[], None]
    give_up: Callable[[str, str], None]
    alive: Callable[[], bool]
    request: dict[str, Any] = field(default_factory=dict)


class _Link(Protocol):
    async def subscribe(self, topic_filter: str, qos: int = 1) -> None: ...

    async def unsubscribe(self, topic_filter: str) -> None: ...


@dataclass
class _Fetch:
    transfer: Transfer
    holders: dict[str, Holder] = field(default_factory=dict)
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


# ask(audio, missing, request fields): send one need_audio receipt.
AskFor = Callable[[AudioRef, tuple[int, ...], dict[str, Any]], None]


class AudioFetcher:
    def __init__(
        self,
        name: str,
        link: _Link,
        topics: Topics,
        cache: AudioCache,
        config: AudioConfig,
        *,
        now: Callable[[], float],
        ask: AskFor,
        spawn: Callable[[Any, str], asyncio.Task[Any]],
        chunk_pool: ChunkPool | None = None,
    ) -> None:
        self.name = name
        self.link = link
        self.topics = topics
        self.cache = cache
        self.config = config
        self.now = now
        self.ask = ask
        self.spawn = spawn
        self.chunk_pool = chunk_pool
        self._fetches: dict[str, _Fetch] = {}
        self.unwanted: dict[str, float] = {}  # audio id -> when we last left its topic
        self.last_error: str | None = None

    def transfer(self, audio_id: str) -> Transfer | None:
        fetch = self._fetches.get(audio_id)
        return fetch.transfer if fetch is not None else None

    def fetching(self, audio_id: str) -> bool:
        return audio_id in self._fetches

    def fetch(self, ref: AudioRef, holder: Holder) -> None:
        """Get ``ref`` into the cache for ``holder`` (sharing a running transfer of the file)."""
        fetch = self._fetches.get(ref.id)
        if fetch is None:
            fetch = _Fetch(Transfer(ref, self.chunk_pool))
            self._fetches[ref.id] = fetch
            fetch.holders[holder.key] = holder
            fetch.task = self.spawn(self._run(ref, fetch), f"fetch-{ref.id[:8]}")
        else:
            fetch.holders[holder.key] = holder

    def drop(self, audio_id: str, key: str) -> None:
        """``key`` no longer needs the file; the transfer stops when nobody does."""
        fetch = self._fetches.get(audio_id)
        if fetch is None:
            return
        fetch.holders.pop(key, None)
        if not self._live(fetch) and fetch.task is not None:
            fetch.task.cancel()  # nobody needs the file any more: stop asking for it

    def cancel_all(self) -> None:
        for fetch in list(self._fetches.values()):
            if fetch.task is not None:
                fetch.task.cancel()

    @staticmethod
    def _live(fetch: _Fetch) -> list[Holder]:
        return [h for h in fetch.holders.values() if h.alive()]

    async def _run(self, ref: AudioRef, fetch: _Fetch) -> None:
        cfg = self.config
        transfer = fetch.transfer
        topic_filter = self.topics.audio_filter(ref.id)
        await self.link.subscribe(topic_filter)
        failures = 0
        try:
            while True:
                now = self.now()
                for holder in self._live(fetch):
                    if holder.valid_until is not None and now > holder.valid_until:
                        fetch.holders.pop(holder.key, None)
                        holder.give_up("expired", "audio did not arrive before valid_until")
                holders = self._live(fetch)
                if not holders:
                    return  # everybody who needed it was stopped or expired
                if failures >= cfg.max_requests:
                    reason = (
                        f"audio incomplete after {failures} requests "
                        f"({transfer.received}/{ref.chunk_count} chunks, {transfer.bad_chunks} bad)"
                    )
                    for holder in holders:
                        fetch.holders.pop(holder.key, None)
                        holder.give_up("failed", reason)
                    return
                self.ask(ref, tuple(transfer.missing), holders[0].request)
                transfer.requests += 1
                timeout = min(cfg.request_timeout_s * 2**failures, cfg.request_backoff_max_s)
                progressed = False
                while not transfer.complete:
                    fetch.progress.clear()
                    try:
                        await asyncio.wait_for(fetch.progress.wait(), timeout)
                        progressed = True
                    except TimeoutError:
                        break
                if transfer.complete:
                    data = transfer.assemble()
                    if data is not None:
                        self._store(ref, data, fetch)
                        return
                failures = 0 if progressed else failures + 1
        finally:
            await self.link.unsubscribe(topic_filter)
            transfer.close()
            if self._fetches.get(ref.id) is fetch:
                del self._fetches[ref.id]

    def _store(self, ref: AudioRef, data: bytes, fetch: _Fetch) -> None:
        try:
            self.cache.put(ref.id, data, ref.format)
        except CacheError as exc:
            self.last_error = str(exc)
            for holder in self._live(fetch):
                holder.give_up("failed", f"cannot store audio: {exc}")
            return
        for holder in self._live(fetch):
            holder.ready()

    def on_chunk(self, audio_id: str, index: int, payload: bytes) -> bool:
        """A chunk arrived; False when nobody fetches that file (then its topic is left)."""
        fetch = self._fetches.get(audio_id)
        if fetch is None:
            # Chunks of a file this node does not need (a subscription left over in the
            # persistent session from before a crash): drop it and the subscription.
            now = time.monotonic()
            if now - self.unwanted.get(audio_id, 0.0) > 1.0:
                self.unwanted[audio_id] = now
                self.spawn(self.link.unsubscribe(self.topics.audio_filter(audio_id)), "unsubscribe")
            return False
        if fetch.transfer.add(index, payload):
            fetch.progress.set()
        return True

"""The chunk server's gathering (broadcaster/broadcasts/chunks.py): a zone asking at once costs one
copy; a late request is kept for the next copy, never dropped; thousands of clusters asking one
after the other for seconds get a few copies, not one per request (which flooded the broker at
2,000 clusters: bench/bench_delivery.py). Driven by a fake clock, on the in-memory transport."""

from __future__ import annotations

import hashlib

from broadcaster.broadcasts.chunks import REPUBLISH_MAX_S, ChunkServer
from broadcaster.transport.memory import MemoryBroker, MemoryTransport
from speakers.protocol import Event

AUDIO = bytes(range(256)) * 1000  # 256 kB: 4 chunks of 64 KiB
AUDIO_ID = hashlib.sha256(AUDIO).hexdigest()
CHUNKS = 4


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _server(dedupe_s: float = 0.5) -> tuple[ChunkServer, MemoryTransport, Clock]:
    transport = MemoryTransport(MemoryBroker())
    transport.start()
    clock = Clock()
    server = ChunkServer(transport, _NoStore(), lambda: [], dedupe_s, clock=clock)
    server.offer(AUDIO_ID, AUDIO)
    return server, transport, clock


class _NoStore:
    def meta(self, key: str) -> None:
        return None

    def read_bytes(self, key: str) -> bytes:
        raise KeyError(key)


def _ask(server: ChunkServer, missing: tuple[int, ...] = ()) -> None:
    server.want(Event(state="need_audio", ts=0.0, broadcast_id="1", audio_id=AUDIO_ID, missing=missing))


def _copies(transport: MemoryTransport) -> dict[int, int]:
    counts: dict[int, int] = {}
    for topic, *_ in transport.sent:
        index = int(topic.rsplit("/", 1)[1])
        counts[index] = counts.get(index, 0) + 1
    return counts


def _run(server: ChunkServer, clock: Clock, seconds: float, step: float = 0.01) -> None:
    """What the dispatcher does: sleep until something is due (at most ``step``), publish it."""
    end = clock.now + seconds
    while clock.now < end:
        clock.advance(min(step, max(server.wait_s(step), 0.001)))
        server.publish_due()


def test_a_zone_asking_at_once_costs_one_copy_after_a_short_gathering() -> None:
    server, transport, clock = _server()
    for _ in range(9):
        _ask(server)
    server.publish_due()
    assert transport.sent == []  # gathering: more requests may come
    assert 0 < server.wait_s(1.0) <= 0.03
    _run(server, clock, 0.1)
    assert _copies(transport) == dict.fromkeys(range(CHUNKS), 1)
    assert server.published == CHUNKS and server.deduped == 8 * CHUNKS


def test_a_late_request_is_kept_for_the_next_copy_not_dropped() -> None:
    server, transport, clock = _server(dedupe_s=0.5)
    _ask(server)
    _run(server, clock, 0.1)
    assert _copies(transport) == dict.fromkeys(range(CHUNKS), 1)
    clock.advance(0.05)
    _ask(server, missing=(2,))  # its node subscribed just after the copy went by
    _run(server, clock, 0.2)
    assert _copies(transport)[2] == 1  # not yet: a copy was published less than 0.5 s ago
    _run(server, clock, 0.5)
    assert _copies(transport) == {0: 1, 1: 1, 2: 2, 3: 1}  # served, without asking again


def test_thousands_asking_for_seconds_get_a_few_copies() -> None:
    server, transport, clock = _server(dedupe_s=0.5)
    # 2,000 clusters asking one after the other over 4 s, with short pauses (a busy network).
    for n in range(2000):
        _ask(server)
        _run(server, clock, 0.002, step=0.002)
        if n % 50 == 49:
            _run(server, clock, 0.05)
    _run(server, clock, 3 * REPUBLISH_MAX_S)
    copies = _copies(transport)
    assert set(copies) == set(range(CHUNKS))
    assert max(copies.values()) <= 3, copies  # the first design sent a copy every 0.5 s: 9 here
    # Every request was served by a copy published after it came.
    assert server.published == sum(copies.values())

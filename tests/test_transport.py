"""The Transport contract: wildcard matching and the in-memory transport used by unit tests."""

from __future__ import annotations

import threading

import pytest

from broadcaster.transport import Transport, topic_matches
from broadcaster.transport.memory import MemoryBroker, MemoryTransport
from tests.fixtures_controller import wait_until


@pytest.mark.parametrize(
    ("flt", "topic", "expected"),
    [
        ("loa/speakers/+/status", "loa/speakers/loa-01/status", True),
        ("loa/speakers/+/status", "loa/speakers/loa-01/health", False),
        ("loa/speakers/+/status", "loa/speakers/a/b/status", False),
        ("loa/#", "loa/speakers/loa-01/status", True),
        ("loa/#", "loa", True),
        ("loa/audio/+/+", "loa/audio/abc/3", True),
        ("loa/zones/thon-1/cmd", "loa/zones/thon-1/cmd", True),
        ("loa/zones/thon-1/cmd", "loa/zones/thon-2/cmd", False),
        ("loa/+", "loa/x/y", False),
    ],
)
def test_topic_matches(flt: str, topic: str, expected: bool) -> None:
    assert topic_matches(flt, topic) is expected


def test_memory_transport_is_a_transport() -> None:
    assert isinstance(MemoryTransport(), Transport)


def test_memory_loopback_wildcards_and_retained() -> None:
    broker = MemoryBroker()
    a, b = MemoryTransport(broker), MemoryTransport(broker)
    got: list[tuple[str, bytes]] = []
    lock = threading.Lock()

    def handler(topic: str, payload: bytes) -> None:
        with lock:
            got.append((topic, payload))

    a.start()
    a.publish("loa/speakers/loa-01/status", b"retained", retain=True)
    b.subscribe("loa/speakers/+/status", handler)
    b.start()
    a.publish("loa/speakers/loa-02/status", "trực tuyến".encode())
    a.publish("loa/speakers/loa-02/health", b"ignored")
    broker.flush()
    assert ("loa/speakers/loa-01/status", b"retained") in got
    assert ("loa/speakers/loa-02/status", "trực tuyến".encode()) in got
    assert all(t.endswith("/status") for t, _ in got)


def test_memory_backlog_kept_while_offline_qos0_dropped() -> None:
    broker = MemoryBroker()
    pub, sub = MemoryTransport(broker), MemoryTransport(broker)
    received: list[bytes] = []
    sub.subscribe("t/#", lambda t, p: received.append(p))
    sub.start()
    pub.start()
    pub.set_online(False)
    assert not pub.connected
    pub.publish("t/1", b"one", qos=1)
    pub.publish("t/2", b"zero", qos=0)
    broker.flush()
    assert received == []
    pub.set_online(True)
    broker.flush()
    assert received == [b"one"]
    assert pub.dropped_qos0 == 1


def test_memory_handler_exception_does_not_break_delivery() -> None:
    t = MemoryTransport()
    seen: list[str] = []

    def bad(topic: str, payload: bytes) -> None:
        raise RuntimeError("boom")

    t.subscribe("x/#", bad)
    t.subscribe("x/#", lambda topic, p: seen.append(topic))
    t.start()
    t.publish("x/1", b"")
    t.publish("x/2", b"")
    wait_until(lambda: len(seen) == 2, what="both messages")
    assert seen == ["x/1", "x/2"]

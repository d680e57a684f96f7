"""The paho transport against a real mosquitto (the managed broker of tests/fixtures_broker.py):
subscriptions, reconnect, no silent loss, refused logins."""

from __future__ import annotations

import threading

import pytest

from broadcaster.transport import Transport, TransportError
from broadcaster.transport.mqtt import MqttTransport, parse_url
from tests.fixtures_controller import wait_until

pytestmark = pytest.mark.integration


def test_url_parsing() -> None:
    url = parse_url("mqtt://ctl:p%40ss@127.0.0.1:1999")
    assert (url.host, url.port, url.username, url.password, url.tls) == (
        "127.0.0.1",
        1999,
        "ctl",
        "p@ss",
        False,
    )
    assert parse_url("mqtts://h").port == 8883
    with pytest.raises(TransportError, match="mqtt://"):
        parse_url("http://h:1")
    with pytest.raises(TransportError, match="no host"):
        parse_url("mqtt://")


def _collector() -> tuple[list[tuple[str, bytes]], threading.Lock, object]:
    got: list[tuple[str, bytes]] = []
    lock = threading.Lock()

    def handler(topic: str, payload: bytes) -> None:
        with lock:
            got.append((topic, payload))

    return got, lock, handler


def _pair(mosquitto, name: str) -> tuple[MqttTransport, MqttTransport]:  # type: ignore[no-untyped-def]
    # Both log in as the controller user (full access below the prefix), with their own client ids.
    sub = MqttTransport(mosquitto.url, f"{name}-sub", reconnect_min_s=0.2, reconnect_max_s=1)
    pub = MqttTransport(mosquitto.url, f"{name}-pub", reconnect_min_s=0.2, reconnect_max_s=1)
    return sub, pub


def test_publish_subscribe_roundtrip_and_expiry(mosquitto) -> None:  # type: ignore[no-untyped-def]
    got, _, handler = _collector()
    sub, pub = _pair(mosquitto, "t1")
    assert isinstance(sub, Transport)
    sub.subscribe("loa/speakers/+/events", handler)  # type: ignore[arg-type]
    sub.start()
    pub.start()
    try:
        assert sub.wait_connected(10) and pub.wait_connected(10)
        # The subscription is made in on_connect: wait until it is effective by publishing until seen.
        wait_until(lambda: (pub.publish("loa/speakers/x/events", b"ping"), got)[1], timeout=10)
        pub.publish("loa/speakers/loa-01/events", "Thôn Đông".encode(), expiry_s=30)
        pub.publish("loa/speakers/loa-01/health", b"not subscribed")
        wait_until(lambda: ("loa/speakers/loa-01/events", "Thôn Đông".encode()) in got)
        assert all(t.endswith("/events") for t, _ in got)
    finally:
        pub.stop()
        sub.stop()


def test_qos1_publishes_survive_a_broker_outage(mosquitto) -> None:  # type: ignore[no-untyped-def]
    """Publishes made while the broker is down are sent after the reconnect, none lost; the
    subscriber's persistent session (saved by mosquitto on shutdown) gets them and its
    subscription is renewed."""
    got, lock, handler = _collector()
    reconnected = threading.Event()
    sub, pub = _pair(mosquitto, "t2")
    sub.subscribe("loa/q/#", handler)  # type: ignore[arg-type]
    sub.start()
    pub.start()
    try:
        assert sub.wait_connected(10) and pub.wait_connected(10)
        wait_until(lambda: (pub.publish("loa/q/warm", b"w"), got)[1], timeout=10)
        mosquitto.broker.stop()
        wait_until(lambda: not pub.connected and not sub.connected, what="disconnect noticed")
        pub.add_on_connect(reconnected.set)
        for i in range(50):  # more than the 20 in flight paho allows: the rest waits queued
            pub.publish(f"loa/q/{i}", str(i).encode())
        mosquitto.broker.start()
        assert reconnected.wait(15)
        wait_until(lambda: sum(1 for t, _ in got if t != "loa/q/warm") >= 50, timeout=15, what="50 messages")
        with lock:
            numbers = [int(p) for t, p in got if t != "loa/q/warm"]
        assert sorted(set(numbers)) == list(range(50))
        assert sub.stats["connects"] >= 2 and pub.stats["disconnects"] >= 1
    finally:
        pub.stop()
        sub.stop()


def test_refused_login_is_logged_not_connected(mosquitto, caplog) -> None:  # type: ignore[no-untyped-def]
    t = MqttTransport(f"mqtt://nobody:wrong@127.0.0.1:{mosquitto.port}", "t-bad", reconnect_min_s=0.2)
    with caplog.at_level("ERROR", logger="broadcaster.transport.mqtt"):
        t.start()
        try:
            wait_until(lambda: t.stats["connect_failures"] >= 1, timeout=10)
            assert not t.connected
        finally:
            t.stop()
    assert any("refused" in r.getMessage() for r in caplog.records)

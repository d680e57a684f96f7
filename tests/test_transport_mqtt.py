"""The paho transport against a real mosquitto: subscriptions, reconnect, no silent loss."""

from __future__ import annotations

import threading

import pytest

from broadcaster.transport import Transport, TransportError
from broadcaster.transport.mqtt import MqttTransport, MqttUrl
from tests.fixtures_controller import PlainMosquitto, wait_until

pytestmark = pytest.mark.integration


def test_url_parsing() -> None:
    url = MqttUrl.parse("mqtt://ctl:p%40ss@127.0.0.1:1999")
    assert (url.host, url.port, url.username, url.password, url.tls) == ("127.0.0.1", 1999, "ctl", "p@ss", False)
    assert MqttUrl.parse("mqtts://h").port == 8883
    with pytest.raises(TransportError, match="mqtt://"):
        MqttUrl.parse("http://h:1")
    with pytest.raises(TransportError, match="no host"):
        MqttUrl.parse("mqtt://")


def _collector() -> tuple[list[tuple[str, bytes]], threading.Lock, object]:
    got: list[tuple[str, bytes]] = []
    lock = threading.Lock()

    def handler(topic: str, payload: bytes) -> None:
        with lock:
            got.append((topic, payload))

    return got, lock, handler


def test_publish_subscribe_roundtrip_and_expiry(plain_mosquitto: PlainMosquitto) -> None:
    got, _, handler = _collector()
    sub = MqttTransport(plain_mosquitto.url, "t-sub", reconnect_min_s=0.2, reconnect_max_s=1)
    pub = MqttTransport(plain_mosquitto.url, "t-pub", reconnect_min_s=0.2, reconnect_max_s=1)
    assert isinstance(sub, Transport)
    sub.subscribe("loa/speakers/+/events", handler)  # type: ignore[arg-type]
    sub.start()
    pub.start()
    try:
        assert sub.wait_connected(10) and pub.wait_connected(10)
        wait_until(lambda: sub.stats["connects"] >= 1)
        # The subscription is made in on_connect: wait until it is effective by publishing until seen.
        wait_until(lambda: (pub.publish("loa/speakers/x/events", b"ping"), got)[1], timeout=10)
        pub.publish("loa/speakers/loa-01/events", "Thôn Đông".encode(), expiry_s=30)
        pub.publish("loa/speakers/loa-01/health", b"not subscribed")
        wait_until(lambda: ("loa/speakers/loa-01/events", "Thôn Đông".encode()) in got)
        assert all(t.endswith("/events") for t, _ in got)
    finally:
        pub.stop()
        sub.stop()


def test_qos1_publishes_survive_a_broker_outage(plain_mosquitto: PlainMosquitto) -> None:
    """Publishes made while the broker is down are sent after the reconnect, none lost, in order;
    the subscriber's persistent session gets them and its subscription is renewed."""
    got, lock, handler = _collector()
    reconnected = threading.Event()
    sub = MqttTransport(plain_mosquitto.url, "t-sub2", reconnect_min_s=0.2, reconnect_max_s=1)
    pub = MqttTransport(plain_mosquitto.url, "t-pub2", reconnect_min_s=0.2, reconnect_max_s=1)
    sub.subscribe("q/#", handler)  # type: ignore[arg-type]
    sub.start()
    pub.start()
    try:
        assert sub.wait_connected(10) and pub.wait_connected(10)
        wait_until(lambda: (pub.publish("q/warm", b"w"), got)[1], timeout=10)
        plain_mosquitto.stop()
        wait_until(lambda: not pub.connected and not sub.connected, what="disconnect noticed")
        pub.add_on_connect(reconnected.set)
        for i in range(50):
            pub.publish(f"q/{i}", str(i).encode())
        plain_mosquitto.start()
        assert reconnected.wait(15)
        wait_until(lambda: sum(1 for t, _ in got if t != "q/warm") >= 50, timeout=15, what="50 messages")
        with lock:
            numbers = [int(p) for t, p in got if t != "q/warm"]
        assert sorted(set(numbers)) == list(range(50))
        assert sub.stats["connects"] >= 2 and pub.stats["disconnects"] >= 1
    finally:
        pub.stop()
        sub.stop()


def test_refused_login_is_logged_not_connected(plain_mosquitto: PlainMosquitto, tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    # A broker that requires passwords refuses us; the transport logs the reason and stays down.
    conf = plain_mosquitto.conf
    pwfile = tmp_path / "pw"
    pwfile.write_text("")
    plain_mosquitto.stop()
    conf.write_text(conf.read_text().replace("allow_anonymous true", f"allow_anonymous false\npassword_file {pwfile}"))
    plain_mosquitto.start()
    t = MqttTransport(f"mqtt://nobody:wrong@127.0.0.1:{plain_mosquitto.port}", "t-bad", reconnect_min_s=0.2)
    with caplog.at_level("ERROR", logger="broadcaster.transport.mqtt"):
        t.start()
        try:
            wait_until(lambda: t.stats["connect_failures"] >= 1, timeout=10)
            assert not t.connected
        finally:
            t.stop()
    assert any("refused" in r.getMessage() for r in caplog.records)

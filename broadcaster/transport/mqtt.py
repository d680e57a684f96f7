"""MQTT 5 transport of the controller: the only module of the controller that imports paho.

Habits (see ``transport/__init__.py`` for the contract):

- MQTT 5 with ``clean_start`` false and a session expiry, and a client id that is stable for an
  instance, so commands and receipts queued by the broker while the controller restarts are kept.
- Reconnect with exponential backoff (paho's ``loop_start`` thread retries forever).
- Subscriptions are made in ``on_connect``, so every reconnect renews them.
- ``on_connect`` checks ``reason_code.is_failure`` and logs the broker's reason (bad password,
  not authorised) instead of silently looping.
- QoS 1 publishes made while disconnected stay in paho's outgoing store (``max_queued_messages`` 0 =
  unbounded) and are sent after the reconnect; ``tests/test_transport_mqtt.py`` proves it against a
  real mosquitto.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from broadcaster.transport import Handler, TransportError, topic_matches
from speakers.mqtturl import MqttUrl, MqttUrlError, parse_mqtt_url
from speakers.protocol import Topics

_LOGGER = logging.getLogger(__name__)

# A day: long enough for a controller upgrade or a night-long outage, after which the broker may forget
# what it queued for us.
DEFAULT_SESSION_EXPIRY_S = 24 * 3600
# Short enough to notice a dead broker in well under a minute, long enough for a busy 2-core box.
DEFAULT_KEEPALIVE_S = 15
# paho ignores the broker's Receive Maximum and cannot change its window once connected, and
# mosquitto disconnects a client that exceeds it; 20 is mosquitto's default (and paho's).
MAX_INFLIGHT = 20
# How long stop() waits for unacknowledged QoS 1 publishes before disconnecting.
STOP_FLUSH_S = 2.0


class _RedundantPahoErrors(logging.Filter):
    """paho logs "Client is not connected" at ERROR while its loop winds down after a disconnect
    (ours on stop, or the broker's); the transport reports link changes itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Client is not connected")


_PAHO_LOGGER = logging.getLogger(__name__ + ".paho")
_PAHO_LOGGER.addFilter(_RedundantPahoErrors())


def parse_url(url: str) -> MqttUrl:
    """The shared URL parser (``speakers.mqtturl``), raising the transport's own error."""
    try:
        return parse_mqtt_url(url)
    except MqttUrlError as exc:
        raise TransportError(str(exc)) from exc


class MqttTransport:
    """paho-mqtt 2.x client with the Transport contract. ``url`` may be set until ``start()``."""

    def __init__(
        self,
        url: str | None,
        client_id: str,
        topics: Topics | None = None,
        *,
        session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S,
        keepalive_s: int = DEFAULT_KEEPALIVE_S,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 10.0,
        will: tuple[str, bytes] | None = None,
    ) -> None:
        self.url = url
        self.client_id = client_id
        self.topics = topics or Topics()
        self.session_expiry_s = session_expiry_s
        self.keepalive_s = keepalive_s
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self.will = will
        self._handlers: list[tuple[str, Handler]] = []
        self._on_connect: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._client: paho.Client | None = None
        self._stopping = False
        self.stats = {
            "connects": 0,
            "connect_failures": 0,
            "disconnects": 0,
            "dropped_qos0": 0,
            "received": 0,
        }

    # ----------------------------------------------------------------- contract

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def add_on_connect(self, callback: Callable[[], None]) -> None:
        self._on_connect.append(callback)

    def subscribe(self, topic_filter: str, handler: Handler) -> None:
        with self._lock:
            self._handlers.append((topic_filter, handler))
            client = self._client
        if client is not None and self.connected:
            client.subscribe(topic_filter, options=SubscribeOptions(qos=1))

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, expiry_s: float | None = None
    ) -> None:
        client = self._client
        if client is None:
            raise TransportError("publish before start()")
        if qos == 0 and not self.connected:
            self.stats["dropped_qos0"] += 1
            _LOGGER.debug("not connected: dropped QoS 0 publish to %s", topic)
            return
        props = None
        if expiry_s is not None:
            props = Properties(PacketTypes.PUBLISH)
            props.MessageExpiryInterval = max(1, int(expiry_s))
        info = client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            # QUEUE_SIZE cannot happen with an unbounded queue; anything else is a real error.
            raise TransportError(f"publish to {topic} failed: {paho.error_string(info.rc)}")

    def start(self) -> None:
        if self._client is not None:
            return
        if not self.url:
            raise TransportError("no MQTT URL configured")
        url = parse_url(self.url)
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=paho.MQTTv5,
            reconnect_on_failure=True,
        )
        client.enable_logger(_PAHO_LOGGER)
        if url.username:
            client.username_pw_set(url.username, url.password)
        if url.tls:
            client.tls_set()
        client.max_queued_messages_set(0)  # unbounded: never drop a QoS 1 publish
        client.max_inflight_messages_set(MAX_INFLIGHT)
        client.reconnect_delay_set(self.reconnect_min_s, self.reconnect_max_s)  # type: ignore[arg-type]
        if self.will is not None:
            client.will_set(self.will[0], self.will[1], qos=1, retain=True)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        self._client = client
        client.connect_async(
            url.host, url.port, keepalive=self.keepalive_s, clean_start=False, properties=props
        )
        client.loop_start()
        _LOGGER.info("MQTT: connecting to %s:%s as %s", url.host, url.port, self.client_id)

    def stop(self) -> None:
        client = self._client
        if client is None:
            return
        self._stopping = True
        # Give QoS 1 publishes still in flight (a last receipt, a stop command) a moment to go out.
        deadline = time.monotonic() + STOP_FLUSH_S
        while self.connected and self._unacked(client) and time.monotonic() < deadline:
            time.sleep(0.01)
        try:
            client.disconnect()
        finally:
            client.loop_stop()
            self._connected.clear()
            self._client = None
            self._stopping = False

    # ------------------------------------------------------------ paho callbacks

    def _handle_connect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        if reason_code.is_failure:
            self.stats["connect_failures"] += 1
            _LOGGER.error("MQTT: broker refused the connection: %s", reason_code)
            return
        self.stats["connects"] += 1
        with self._lock:
            filters = list(dict.fromkeys(f for f, _ in self._handlers))
        if filters:
            client.subscribe([(f, SubscribeOptions(qos=1)) for f in filters])
        self._connected.set()
        _LOGGER.info("MQTT: connected (session present: %s)", flags.session_present)
        for callback in list(self._on_connect):
            try:
                callback()
            except Exception:
                _LOGGER.exception("MQTT: on_connect callback failed")

    def _handle_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        was = self._connected.is_set()
        self._connected.clear()
        if self._stopping:
            _LOGGER.info("MQTT: disconnected")
        elif was:
            self.stats["disconnects"] += 1
            _LOGGER.warning("MQTT: disconnected (%s); reconnecting", reason_code)

    @staticmethod
    def _unacked(client: paho.Client) -> int:
        """QoS 1 publishes the broker has not acknowledged yet (paho keeps them until PUBACK)."""
        return len(getattr(client, "_out_messages", ()))

    def _handle_message(self, client, userdata, message) -> None:  # type: ignore[no-untyped-def]
        self.stats["received"] += 1
        topic = message.topic
        with self._lock:
            handlers = [h for f, h in self._handlers if topic_matches(f, topic)]
        for handler in handlers:
            try:
                handler(topic, message.payload)
            except Exception:
                _LOGGER.exception("MQTT: handler for %s failed", topic)


__all__ = ["MqttTransport", "MqttUrl", "parse_url"]

"""In-memory transport for unit tests: publishes loop back to every subscribed client.

A :class:`MemoryBroker` stands in for mosquitto; each :class:`MemoryTransport` is one client on it.
Messages are delivered on the broker's own delivery thread (like paho's network thread), in publish
order, with MQTT wildcard matching and retained messages. ``set_online(False)`` simulates a dropped
link: QoS 1 publishes made meanwhile are delivered after ``set_online(True)``; QoS 0 ones are dropped.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from broadcaster.transport import Handler, topic_matches
from speakers.protocol import Topics

_LOGGER = logging.getLogger(__name__)


class MemoryBroker:
    """A tiny in-process broker shared by several :class:`MemoryTransport` clients."""

    def __init__(self) -> None:
        self._clients: list[MemoryTransport] = []
        self._retained: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[str, bytes, MemoryTransport | None] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.published: list[tuple[str, bytes]] = []  # every publish, for assertions

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="memory-broker", daemon=True)
                self._thread.start()

    def attach(self, client: MemoryTransport) -> None:
        with self._lock:
            if client not in self._clients:
                self._clients.append(client)
        self._ensure_thread()

    def detach(self, client: MemoryTransport) -> None:
        with self._lock:
            if client in self._clients:
                self._clients.remove(client)

    def publish(self, topic: str, payload: bytes, retain: bool) -> None:
        with self._lock:
            self.published.append((topic, payload))
            if retain:
                if payload:
                    self._retained[topic] = payload
                else:
                    self._retained.pop(topic, None)
        self._queue.put((topic, payload, None))

    def send_retained(self, client: MemoryTransport, topic_filter: str) -> None:
        with self._lock:
            matches = [(t, p) for t, p in self._retained.items() if topic_matches(topic_filter, t)]
        for topic, payload in matches:
            self._queue.put((topic, payload, client))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every message published so far has been handed to subscribers."""
        done = threading.Event()
        self._queue.put(("", b"", _Marker(done)))  # type: ignore[arg-type]
        self._ensure_thread()
        return done.wait(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            topic, payload, only = item
            if isinstance(only, _Marker):
                only.done.set()
                continue
            with self._lock:
                clients = [only] if only is not None else list(self._clients)
            for client in clients:
                client._deliver(topic, payload)


class _Marker:
    def __init__(self, done: threading.Event) -> None:
        self.done = done


class MemoryTransport:
    """One client on a :class:`MemoryBroker` (a private one when none is given)."""

    def __init__(self, broker: MemoryBroker | None = None, topics: Topics | None = None) -> None:
        self.broker = broker or MemoryBroker()
        self.topics = topics or Topics()
        self._handlers: list[tuple[str, Handler]] = []
        self._on_connect: list[Callable[[], None]] = []
        self._online = False
        self._started = False
        self._backlog: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.sent: list[tuple[str, bytes, int, bool, float | None]] = []  # this client's publishes
        self.dropped_qos0 = 0

    @property
    def connected(self) -> bool:
        return self._started and self._online

    def add_on_connect(self, callback: Callable[[], None]) -> None:
        self._on_connect.append(callback)

    def subscribe(self, topic_filter: str, handler: Handler) -> None:
        with self._lock:
            self._handlers.append((topic_filter, handler))
        if self.connected:
            self.broker.send_retained(self, topic_filter)

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, expiry_s: float | None = None
    ) -> None:
        with self._lock:
            self.sent.append((topic, payload, qos, retain, expiry_s))
            if not self.connected:
                if qos == 0:
                    self.dropped_qos0 += 1
                else:
                    self._backlog.append((topic, payload, retain))
                return
        self.broker.publish(topic, payload, retain)

    def start(self) -> None:
        self._started = True
        self.set_online(True)

    def stop(self) -> None:
        self._started = False
        self._online = False
        self.broker.detach(self)

    def set_online(self, online: bool) -> None:
        """Simulate the link going down or coming back (replays the QoS 1 backlog)."""
        self._online = online
        if not online:
            self.broker.detach(self)
            return
        if not self._started:
            return
        self.broker.attach(self)
        with self._lock:
            backlog, self._backlog = self._backlog, []
            filters = list(dict.fromkeys(f for f, _ in self._handlers))
        for topic_filter in filters:
            self.broker.send_retained(self, topic_filter)
        for topic, payload, retain in backlog:
            self.broker.publish(topic, payload, retain)
        for callback in list(self._on_connect):
            try:
                callback()
            except Exception:
                _LOGGER.exception("on_connect callback failed")

    def _deliver(self, topic: str, payload: bytes) -> None:
        with self._lock:
            handlers = [h for f, h in self._handlers if topic_matches(f, topic)]
        for handler in handlers:
            try:
                handler(topic, payload)
            except Exception:
                _LOGGER.exception("handler for %s failed", topic)


__all__ = ["MemoryBroker", "MemoryTransport"]

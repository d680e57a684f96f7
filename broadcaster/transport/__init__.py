"""The link between the controller and the speaker nodes.

:class:`Transport` is the seam: the real one speaks MQTT 5 through paho (``transport/mqtt.py``, the
only paho import of the controller); ``transport/memory.py`` loops publishes back to subscribers
in-process for unit tests.

Contract of every transport:

- Topics are full topics (``loa/speakers/loa-01/cmd``); build them with ``transport.topics``
  (:class:`speakers.protocol.Topics`, which knows the configured prefix).
- ``publish`` never blocks on the network and never drops a QoS 1 message silently: while the link is
  down, QoS 1 publishes are kept and sent after the reconnect. QoS 0 publishes made while disconnected
  are dropped and counted (only time-sync answers use QoS 0; a stale one is useless anyway).
- ``subscribe(filter, handler)`` registers ``handler(topic, payload)``; subscriptions are (re)made on
  every connect. Handlers run on the transport's network thread: they must only decode and enqueue
  (the one exception is answering a time request, which must be immediate). An exception in a handler
  is logged and never breaks the link.
- ``add_on_connect(callback)`` is called (network thread) after each successful (re)connect.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from speakers.protocol import Topics

Handler = Callable[[str, bytes], None]


class TransportError(Exception):
    """A transport that cannot be set up (bad URL, missing credentials)."""


@runtime_checkable
class Transport(Protocol):
    topics: Topics

    @property
    def connected(self) -> bool: ...

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, expiry_s: float | None = None
    ) -> None: ...

    def subscribe(self, topic_filter: str, handler: Handler) -> None: ...

    def add_on_connect(self, callback: Callable[[], None]) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT wildcard matching: ``+`` one level, ``#`` the rest (also the parent level itself)."""
    fparts = topic_filter.split("/")
    tparts = topic.split("/")
    for i, fp in enumerate(fparts):
        if fp == "#":
            return True
        if i >= len(tparts):
            return False
        if fp != "+" and fp != tparts[i]:
            return False
    return len(fparts) == len(tparts)


__all__ = ["Handler", "Transport", "TransportError", "topic_matches"]

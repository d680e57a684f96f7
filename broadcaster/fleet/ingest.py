"""Everything nodes publish enters the controller here, on the transport's network thread.

The router only decodes, counts and hands messages on (to a queue of the fleet worker, to event
listeners that enqueue for the broadcast worker). The one piece of real work done on the network
thread is answering a node's time request: the answer carries the controller clock, and any queueing
delay before it would become clock error on every node. Those answers are rate-limited per node
(a token bucket): a broken or hostile node asking without pause gets what a healthy one needs,
and the rest is dropped and counted (``time_dropped``), never answered.

A payload that is not a valid protocol message is logged (rate-limited per speaker) and counted; it
never reaches the workers and never raises. So is a message carrying a non-finite number (NaN, inf:
JSON from a broken node may hold them) and any other failure while handling one message: ingest
goes on with the next.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from broadcaster.transport import Transport
from speakers.protocol import (
    Event,
    Health,
    ProtocolError,
    Status,
    TimeRequest,
    TimeSync,
    decode_node_message,
)

_LOGGER = logging.getLogger(__name__)

# One log line per speaker and minute is enough to find a broken node without flooding the log.
_MALFORMED_LOG_INTERVAL_S = 60.0
_EXPECTED = {"status": Status, "health": Health, "events": Event, "time": TimeRequest}

# A node asks for the time in bursts of 5 requests: at connect, after each reconnect and every
# 300 s (docs/protocol.md, section 6). A bucket of 10 refilled at one request per 2 s lets two
# bursts through at once and a flapping link resync, and holds a runaway node to 30 answers a minute.
TIME_BURST = 10
TIME_REFILL_PER_S = 0.5
# Buckets kept at most (one per node that asked lately); full buckets are forgotten first.
_MAX_TIME_BUCKETS = 10_000

# Nested values of a message are checked this deep for non-finite numbers (the protocol caps nesting).
_MAX_CHECK_DEPTH = 8

EventListener = Callable[[str, Event], None]
Sink = Callable[[str, str, Any, float], None]  # (kind, speaker, message, received_at)


class Ingest:
    """Subscribes to every node topic and routes decoded messages.

    ``sink(kind, speaker_id, message, received_at)`` receives status and health (and events, so the
    fleet knows what plays); ``event_listeners`` also receive every event.
    """

    def __init__(
        self,
        transport: Transport,
        sink: Sink,
        clock: Callable[[], float] = time.time,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = transport
        self.sink = sink
        self.clock = clock
        self.monotonic = monotonic
        self.event_listeners: list[EventListener] = []
        self.counts: Counter[str] = Counter()
        self.malformed_by_speaker: Counter[str] = Counter()
        self.time_dropped_by_speaker: Counter[str] = Counter()
        self._last_log: dict[str, float] = {}
        self._time_buckets: dict[str, tuple[float, float]] = {}  # speaker -> (tokens, at)
        self._lock = threading.Lock()

    def install(self) -> None:
        for topic_filter in self.transport.topics.controller_filters():
            self.transport.subscribe(topic_filter, self.handle)

    def metrics(self) -> dict[str, Any]:
        with self._lock:
            return {
                "messages": dict(self.counts),
                "malformed": self.counts["malformed"],
                "malformed_by_speaker": dict(self.malformed_by_speaker),
                "time_dropped": self.counts["time_dropped"],
                "time_dropped_by_speaker": dict(self.time_dropped_by_speaker),
            }

    # Runs on the network thread.
    def handle(self, topic: str, payload: bytes) -> None:
        """Decode, check and route one node message. Never raises: whatever goes wrong with one
        message (not only a ProtocolError) is logged and counted as malformed."""
        speaker = "?"
        try:
            received_at = self.clock()
            kind, speaker, _ = self.transport.topics.parse(topic)
            expected = _EXPECTED.get(kind)
            if expected is None:
                raise ProtocolError(f"unexpected topic for the controller: {topic!r}")
            if kind == "status" and not payload:
                return  # a retained status being cleared (speaker deleted)
            message = decode_node_message(payload)
            if not isinstance(message, expected):
                raise ProtocolError(f"{type(message).__name__} published on a {kind} topic")
            _check_finite(message)
        except Exception as exc:  # ProtocolError, and anything a hostile payload may trigger
            self._malformed(speaker, topic, exc)
            return
        with self._lock:
            self.counts[kind] += 1
        try:
            if isinstance(message, TimeRequest):
                self._answer_time(speaker, message)
                return
            self.sink(kind, speaker, message, received_at)
        except Exception as exc:
            _LOGGER.exception("handling a %s message from %s failed", kind, speaker)
            self._malformed(speaker, topic, exc, logged=True)
            return
        if isinstance(message, Event):
            for listener in list(self.event_listeners):
                try:
                    listener(speaker, message)
                except Exception:
                    _LOGGER.exception("event listener failed for %s", speaker)

    def _time_allowed(self, speaker: str) -> bool:
        """Take one token from ``speaker``'s bucket; False (counted, logged once a minute) when empty."""
        now = self.monotonic()
        with self._lock:
            tokens, at = self._time_buckets.get(speaker, (float(TIME_BURST), now))
            tokens = min(float(TIME_BURST), tokens + (now - at) * TIME_REFILL_PER_S)
            if tokens >= 1.0:
                if speaker not in self._time_buckets and len(self._time_buckets) >= _MAX_TIME_BUCKETS:
                    self._forget_full_buckets(now)
                self._time_buckets[speaker] = (tokens - 1.0, now)
                return True
            self._time_buckets[speaker] = (tokens, now)
            self.counts["time_dropped"] += 1
            self.time_dropped_by_speaker[speaker] += 1
            key = f"time:{speaker}"
            log_it = now - self._last_log.get(key, -1e9) >= _MALFORMED_LOG_INTERVAL_S
            if log_it:
                self._last_log[key] = now
        if log_it:
            _LOGGER.warning(
                "time requests from %s over %s/s: excess dropped (%s so far)",
                speaker,
                TIME_REFILL_PER_S,
                self.time_dropped_by_speaker[speaker],
            )
        return False

    def _forget_full_buckets(self, now: float) -> None:
        """Under the lock: drop the buckets that have refilled (their nodes are quiet)."""
        for key, (tokens, at) in list(self._time_buckets.items()):
            if tokens + (now - at) * TIME_REFILL_PER_S >= TIME_BURST:
                del self._time_buckets[key]
        while len(self._time_buckets) >= _MAX_TIME_BUCKETS:  # still full: forget the oldest
            del self._time_buckets[min(self._time_buckets, key=lambda k: self._time_buckets[k][1])]

    def _answer_time(self, speaker: str, request: TimeRequest) -> None:
        if not self._time_allowed(speaker):
            return
        answer = TimeSync(seq=request.seq, t_node=request.t_node, t_controller=self.clock())
        # QoS 0: a late answer is worse than none (the node simply asks again).
        self.transport.publish(self.transport.topics.cmd(speaker), answer.encode(), qos=0)

    def _malformed(self, speaker: str, topic: str, exc: Exception, logged: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            self.counts["malformed"] += 1
            self.malformed_by_speaker[speaker] += 1
            last = self._last_log.get(speaker, -1e9)
            log_it = now - last >= _MALFORMED_LOG_INTERVAL_S
            if log_it:
                self._last_log[speaker] = now
        if log_it and not logged:
            _LOGGER.warning("malformed message on %s ignored: %s: %s", topic, type(exc).__name__, exc)


def _check_finite(message: Any) -> None:
    """ProtocolError when any number in ``message`` (nested values included) is NaN or infinite:
    such a figure would poison averages, reports and the database (seconds played, RMS level)."""

    def walk(value: Any, name: str, depth: int) -> None:
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ProtocolError(f"{name} is not a finite number")
        elif depth >= _MAX_CHECK_DEPTH:
            if isinstance(value, (dict, list, tuple)) and value:
                raise ProtocolError(f"{name} is nested too deeply")
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{name}.{key}", depth + 1)
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                walk(item, f"{name}[{index}]", depth + 1)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            for f in dataclasses.fields(value):
                walk(getattr(value, f.name), f.name, depth + 1)

    walk(message, type(message).__name__, 0)

"""A controller-side stand-in for the agent tests and benchmarks (the real controller lives in
``broadcaster``): answers time requests, serves ``need_audio`` with chunks, records what the
nodes say, and can corrupt or withhold chunks on purpose.

It speaks only ``speakers.protocol`` over the agent's own MQTT link class, as a controller user.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from typing import Any

from speakers.mqtt import Incoming, Link, parse_mqtt_url
from speakers.protocol import (
    AudioRef,
    Event,
    Health,
    Message,
    ProtocolError,
    Status,
    TimeRequest,
    TimeSync,
    Topics,
    decode_node_message,
)


class MiniController:
    """``await start()`` / ``await close()`` on the test's event loop."""

    def __init__(self, url: str, prefix: str = "loa", *, client_id: str = "mini-controller") -> None:
        self.topics = Topics(prefix)
        self.link = Link(client_id, parse_mqtt_url(url), on_message=self._on_message, keepalive_s=10)
        for topic_filter in self.topics.controller_filters():
            self.link.want(topic_filter)
        self.audio: dict[str, tuple[AudioRef, bytes]] = {}
        self.events: list[tuple[str, Event]] = []
        self.status: dict[str, Status] = {}
        self.health: dict[str, list[Health]] = collections.defaultdict(list)
        self.time_requests = 0
        self.chunks_sent: collections.Counter[tuple[str, int]] = collections.Counter()
        self.need_audio: list[tuple[str, Event]] = []
        # (audio id, chunk index) -> list of "corrupt" / "drop", consumed one per publish.
        self.faults: dict[tuple[str, int], list[str]] = collections.defaultdict(list)
        self.serve_audio = True
        self.answer_time = True
        self.clock: Callable[[], float] = time.time
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 10.0) -> None:
        self._task = asyncio.create_task(self.link.run())
        await asyncio.wait_for(self.link.connected.wait(), timeout)

    async def close(self) -> None:
        await self.link.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # ------------------------------------------------------------------------- sending

    def add_audio(self, data: bytes, chunk_size: int = 64 * 1024, duration_s: float = 0.0) -> AudioRef:
        ref = AudioRef.for_bytes(data, chunk_size=chunk_size, duration_s=duration_s)
        self.audio[ref.id] = (ref, data)
        return ref

    def send(self, topic: str, message: Message | bytes, *, expiry_s: int | None = None) -> None:
        payload = message if isinstance(message, bytes) else message.encode()
        self.link.publish(topic, payload, qos=1, expiry_s=expiry_s)

    def send_to(self, speaker_id: str, message: Message | bytes, **kw: Any) -> None:
        self.send(self.topics.cmd(speaker_id), message, **kw)

    def send_zone(self, zone: str, message: Message | bytes, **kw: Any) -> None:
        self.send(self.topics.zone_cmd(zone), message, **kw)

    def publish_chunks(self, audio_id: str, indexes: list[int] | None = None) -> None:
        ref, data = self.audio[audio_id]
        for index in range(ref.chunk_count) if indexes is None else indexes:
            chunk = ref.chunk_of(data, index)
            faults = self.faults.get((audio_id, index))
            action = faults.pop(0) if faults else None
            if action == "drop":
                continue
            if action == "corrupt":
                chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
            self.chunks_sent[(audio_id, index)] += 1
            self.link.publish(self.topics.audio_chunk(audio_id, index), chunk, qos=1)

    def now(self) -> float:
        return self.clock()

    # ------------------------------------------------------------------------ receiving

    def _on_message(self, msg: Incoming) -> None:
        try:
            kind, speaker, _ = self.topics.parse(msg.topic)
            decoded = decode_node_message(msg.payload)
        except ProtocolError:
            return
        if isinstance(decoded, TimeRequest):
            self.time_requests += 1
            if self.answer_time:
                answer = TimeSync(seq=decoded.seq, t_node=decoded.t_node, t_controller=self.clock())
                self.link.publish(self.topics.cmd(speaker), answer.encode(), qos=0)
            return
        if isinstance(decoded, Status):
            self.status[speaker] = decoded
        elif isinstance(decoded, Health):
            self.health[speaker].append(decoded)
        elif isinstance(decoded, Event):
            self.events.append((speaker, decoded))
            if decoded.state == "need_audio":
                self.need_audio.append((speaker, decoded))
                if self.serve_audio and decoded.audio_id in self.audio:
                    self.publish_chunks(decoded.audio_id, list(decoded.missing))
        self._changed.set()

    # -------------------------------------------------------------------------- waiting

    async def wait_for(
        self, predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition"
    ) -> Any:
        """Wait (on received messages, not on a fixed sleep) until ``predicate()`` is truthy."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}; events: {self.event_log()[-30:]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.2))
            except TimeoutError:
                pass

    def states(self, speaker: str, broadcast_id: str | None = None) -> list[str]:
        return [
            e.state
            for s, e in self.events
            if s == speaker and (broadcast_id is None or e.broadcast_id == broadcast_id)
        ]

    def event(self, speaker: str, broadcast_id: str | None, state: str) -> Event | None:
        for s, e in self.events:
            if s == speaker and e.broadcast_id == broadcast_id and e.state == state:
                return e
        return None

    async def wait_state(
        self, speaker: str, broadcast_id: str | None, state: str, timeout: float = 15.0
    ) -> Event:
        return await self.wait_for(
            lambda: self.event(speaker, broadcast_id, state), timeout, f"{speaker} {broadcast_id} {state}"
        )

    def event_log(self) -> list[str]:
        return [f"{s}:{e.broadcast_id}:{e.state}:{e.reason or ''}" for s, e in self.events]

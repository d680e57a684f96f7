"""A controller-side stand-in for the agent tests and benchmarks (the real controller lives in
``broadcaster``): answers time requests, serves ``need_audio`` with chunks, records what the
nodes say, and can corrupt or withhold chunks on purpose.

It speaks only ``speakers.protocol`` over the agent's own MQTT link class, as a controller user.
The end of the module holds the helpers of the speaker tests: test audio made with real ffmpeg
and agents with short timeouts.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import subprocess
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speakers.agent import Agent, Clock
from speakers.config import AgentConfig
from speakers.mqtt import Incoming, Link, parse_mqtt_url
from speakers.player import NullPlayer, Player
from speakers.protocol import (
    AudioRef,
    Event,
    Health,
    Lookahead,
    Message,
    ProtocolError,
    Status,
    TimeRequest,
    TimeSync,
    Topics,
    decode_node_message,
)
from tests.fixtures_broker import BrokerFixture

if TYPE_CHECKING:  # imported by pytest as a plugin (pytest_plugins), not here
    from tests.fixtures_tls import TlsBroker


class MiniController:
    """``await start()`` / ``await close()`` on the test's event loop."""

    def __init__(self, url: str, prefix: str = "loa", *, client_id: str = "mini-controller") -> None:
        self.topics = Topics(prefix)
        self.link = Link(
            client_id, parse_mqtt_url(url), on_message=self._on_message, keepalive_s=10, outbox_limit=10**7
        )
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
        # > 0: gather need_audio requests for this long and publish the union of the missing
        # chunks once (what a controller serving a zone of many nodes does).
        self.batch_s = 0.0
        self._batch: dict[str, set[int]] = {}
        self._batch_timer: asyncio.TimerHandle | None = None
        self._batch_first = self._batch_last = 0.0
        self.batches = 0
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

    def send_lookahead(self, speaker_id: str, lookahead: Lookahead | bytes) -> None:
        """Publish a node's lookahead retained (docs/protocol.md section 11)."""
        payload = lookahead if isinstance(lookahead, bytes) else lookahead.encode()
        self.link.publish(self.topics.lookahead(speaker_id), payload, qos=1, retain=True)

    def slot_events(self, speaker: str, slot: str) -> list[Event]:
        return [e for s, e in self.events if s == speaker and e.slot == slot]

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

    def _gather(self, audio_id: str, missing: tuple[int, ...]) -> None:
        # Publish once requests have stopped coming for batch_s (the zone's nodes have all
        # subscribed), or after 10 x batch_s at the latest.
        loop = asyncio.get_running_loop()
        if not self._batch:
            self._batch_first = loop.time()
        self._batch_last = loop.time()
        self._batch.setdefault(audio_id, set()).update(missing)
        if self._batch_timer is None:
            self._batch_timer = loop.call_later(self.batch_s, self._maybe_flush)

    def _maybe_flush(self) -> None:
        loop = asyncio.get_running_loop()
        quiet_since = loop.time() - self._batch_last
        if quiet_since < self.batch_s and loop.time() - self._batch_first < 10 * self.batch_s:
            self._batch_timer = loop.call_later(self.batch_s - quiet_since, self._maybe_flush)
            return
        self._batch_timer = None
        self._flush_batch()

    def _flush_batch(self) -> None:
        batch, self._batch = self._batch, {}
        self.batches += 1
        for audio_id, indexes in batch.items():
            self.publish_chunks(audio_id, sorted(indexes))

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
                    if self.batch_s > 0:
                        self._gather(decoded.audio_id, decoded.missing)
                    else:
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


# ------------------------------------------------------------------ speaker test helpers

# ffmpeg's sine source has amplitude 1/8: RMS = 0.125 / sqrt(2) = -21.07 dBFS at full volume.
SINE_DBFS = -21.07


def make_tone_mp3(path: Path, seconds: float, freq: int = 440) -> bytes:
    subprocess.run(
        [
            "ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", f"sine=frequency={freq}:duration={seconds}",
            "-ac", "1", "-ar", "22050", "-b:a", "48k", "-y", str(path),
        ],
        check=True,
    )  # fmt: skip
    return path.read_bytes()


async def until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``predicate`` on the running loop until it is truthy (returned) or fail after ``timeout``
    (the async twin of tests.fixtures_controller.wait_until, for state that sends no message)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def run(coro: Coroutine[Any, Any, Any], timeout: float = 60.0) -> Any:
    """Run one async scenario with an overall deadline."""

    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def fast_config(
    fx: BrokerFixture | TlsBroker, speaker_id: str, zone: str | None, cache_dir: Path, **sections: Any
) -> AgentConfig:
    """An agent config with the node's real credentials and short timeouts for tests (over TLS
    with the pinned CA when ``fx`` is a :class:`TlsBroker`, as an enrolled node has it)."""
    node_mqtt = getattr(fx, "node_mqtt", None)
    enrolled = node_mqtt(speaker_id) if node_mqtt is not None else {"mqtt_url": fx.node_url(speaker_id)}
    data: dict[str, Any] = {
        "id": speaker_id,
        "zone": zone,
        **enrolled,
        "mqtt": {
            "keepalive_s": 5,
            "reconnect_min_s": 0.05,
            "reconnect_max_s": 0.5,
        },
        "player": {"kind": "null", "prepare_lead_s": 0.2},
        "amplifier": {"kind": "none", "lead_s": 0.1, "idle_off_s": 0.2},
        "audio": {
            "cache_dir": str(cache_dir),
            "request_timeout_s": 0.3,
            "request_backoff_max_s": 1.0,
            "max_requests": 6,
        },
        "time_sync": {"samples": 3, "timeout_s": 0.5, "interval_s": 60, "retry_s": 0.2},
        "health": {"interval_s": 60},
    }
    for key, value in sections.items():
        if isinstance(value, dict):
            data[key] = {**data.get(key, {}), **value}
        else:
            data[key] = value
    return AgentConfig.model_validate(data)


class Node:
    """An agent running as a task on the test's loop."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.task: asyncio.Task[None] | None = None

    @property
    def id(self) -> str:
        return self.agent.id

    @property
    def timeline(self) -> list[dict[str, Any]]:
        player = self.agent.player
        return player.timeline if isinstance(player, NullPlayer) else []

    async def start(self, synced: bool = True, timeout: float = 10.0) -> Node:
        self.task = asyncio.create_task(self.agent.run())
        await asyncio.wait_for(self.agent.connected.wait(), timeout)
        if synced:
            deadline = asyncio.get_running_loop().time() + timeout
            while not self.agent.synced:
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"{self.id} did not sync its clock")
                await asyncio.sleep(0.01)
        return self

    async def stop(self) -> None:
        await self.agent.stop()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    def kill(self) -> None:
        self.agent.kill()


def make_node(
    fx: BrokerFixture | TlsBroker,
    speaker_id: str,
    zone: str | None,
    cache_dir: Path,
    *,
    clock: Clock | None = None,
    player: Player | None = None,
    **kwargs: Any,
) -> Node:
    config = fast_config(fx, speaker_id, zone, cache_dir, **kwargs.pop("sections", {}))
    return Node(Agent(config, clock=clock, player=player or NullPlayer(), **kwargs))

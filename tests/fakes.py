"""Fakes of our seams (Engine, Store, Transport, Player, Amplifier): real modules that implement
each protocol in the simplest way possible, for unit tests. Integration tests use the real parts.
"""

# --- speech fakes (TtsEngine, Store) ---
# (H2) Engines that need no binary and no network, a normalizer stand-in and an in-memory store.
# Each counts its calls (thread-safe) so tests can prove "no synthesis on a cache hit".

import hashlib as _hashlib
import math as _math
import threading as _threading
from array import array as _array
from pathlib import Path as _Path
from typing import Any as _Any

from broadcaster.tts.base import AudioClip as _AudioClip
from broadcaster.tts.base import EngineUnavailable as _EngineUnavailable
from broadcaster.tts.base import TtsError as _TtsError


def tone_pcm16(duration_s: float, rate: int = 16_000, freq: float = 220.0, amp: float = 0.5) -> bytes:
    """A sine with 10 ms fades, as mono 16-bit PCM (speech stand-in, no silence to trim)."""
    n = int(duration_s * rate)
    fade = max(1, int(0.01 * rate))
    out = _array("h")
    for i in range(n):
        env = min(1.0, i / fade, (n - 1 - i) / fade)
        out.append(int(32767 * amp * env * _math.sin(2 * _math.pi * freq * i / rate)))
    return out.tobytes()


class FakeEngine:
    """A TtsEngine that "speaks" a tone whose length grows with the text: 0.2 s + 30 ms per
    character. ``gate`` (an Event), when given, holds every call until it is set."""

    def __init__(
        self,
        name: str = "fake",
        voices: tuple[str, ...] = ("giong-a", "giong-b"),
        *,
        per_char_s: float = 0.03,
        rate: int = 16_000,
        gate: _threading.Event | None = None,
        available: bool = True,
    ) -> None:
        self.name = name
        self._voices = list(voices)
        self.per_char_s = per_char_s
        self.rate = rate
        self.gate = gate
        self.is_available = available
        self.calls: list[tuple[str, str | None]] = []
        self.started = _threading.Event()
        self._lock = _threading.Lock()

    @property
    def call_count(self) -> int:
        with self._lock:
            return len(self.calls)

    def available(self) -> bool:
        return self.is_available

    def voices(self) -> list[str]:
        return list(self._voices)

    def default_voice(self) -> str:
        return self._voices[0]

    def options(self) -> dict[str, _Any]:
        return {"per_char_s": self.per_char_s}

    def synthesize(self, text: str, voice: str | None = None) -> _AudioClip:
        with self._lock:
            self.calls.append((text, voice))
        self.started.set()
        if voice is not None and voice not in self._voices:
            raise _EngineUnavailable(f"{self.name} has no voice {voice!r}")
        if self.gate is not None and not self.gate.wait(30):
            raise _TtsError(f"{self.name}: gate never opened")
        duration = 0.2 + self.per_char_s * len(text)
        return _AudioClip.from_pcm16(tone_pcm16(duration, self.rate), self.rate)


class FailingEngine(FakeEngine):
    """Raises ``error`` (a TtsError by default: "network unreachable"); set ``error = None`` and
    it recovers (speaks like FakeEngine)."""

    def __init__(self, name: str = "failing", error: Exception | None = None, **kwargs: _Any) -> None:
        super().__init__(name, **kwargs)
        self.error: Exception | None = error or _TtsError(f"{name}: network unreachable")

    def synthesize(self, text: str, voice: str | None = None) -> _AudioClip:
        if self.error is None:
            return super().synthesize(text, voice)
        with self._lock:
            self.calls.append((text, voice))
        raise self.error


class HangingEngine(FakeEngine):
    """Never answers until ``release`` is set (tests set it at teardown so no thread lingers)."""

    def __init__(self, name: str = "hanging", **kwargs: _Any) -> None:
        super().__init__(name, **kwargs)
        self.release = _threading.Event()

    def synthesize(self, text: str, voice: str | None = None) -> _AudioClip:
        with self._lock:
            self.calls.append((text, voice))
        self.started.set()
        self.release.wait(60)
        raise _TtsError(f"{self.name}: released")


class GarbledEngine(FakeEngine):
    """Answers with bytes that are not audio (a broken engine build); rendering must reject them."""

    def synthesize(self, text: str, voice: str | None = None) -> _AudioClip:
        with self._lock:
            self.calls.append((text, voice))
        return _AudioClip(b"RIFF\x00\x00\x00\x00WAVEgarbage", "wav")


class FakeNormalizer:
    """The textnorm API in the simplest way: lower-case, overrides replaced word by word,
    sentence punctuation kept. Records the overrides it was given."""

    def __init__(self, overrides: dict[str, str] | None = None) -> None:
        self.overrides = dict(overrides or {})
        self.calls = 0

    def with_overrides(self, mapping: dict[str, str]) -> "FakeNormalizer":
        return FakeNormalizer({**self.overrides, **mapping})

    def normalize(self, text: str) -> str:
        self.calls += 1
        for written, spoken in self.overrides.items():
            text = text.replace(written, spoken)
        return text.lower()


class MemoryStore:
    """The AudioStore API kept in memory (``path`` points into ``root`` but nothing is written).
    ``put`` stores audio directly, for tests of code that only sends stored audio."""

    def __init__(self, root: _Path = _Path("/nonexistent-audio-store"), max_bytes: int = 1 << 40) -> None:
        self.root = _Path(root)
        self.max_bytes = max_bytes
        self._data: dict[str, bytes] = {}
        self._meta: dict[str, dict[str, _Any]] = {}
        self.pinned: dict[str, set[str]] = {}  # key -> owners
        self._lock = _threading.Lock()
        self.builds = 0

    def put(self, key: str, data: bytes, meta: dict[str, _Any] | None = None) -> dict[str, _Any]:
        full = {**(meta or {}), "key": key, "sha256": _hashlib.sha256(data).hexdigest(), "size": len(data)}
        with self._lock:
            self._data[key], self._meta[key] = data, full
        return full

    def has(self, key: str) -> bool:
        return key in self._data

    def path(self, key: str) -> _Path:
        return self.root / f"{key}.mp3"

    def read_bytes(self, key: str) -> bytes:
        return self._data[key]

    def meta(self, key: str) -> dict[str, _Any] | None:
        return self._meta.get(key)

    def touch(self, key: str) -> None:
        pass

    def get_or_create(self, key: str, build: _Any) -> tuple[_Path, dict[str, _Any], bool]:
        with self._lock:
            if key in self._data:
                return self.path(key), self._meta[key], True
            data, fields = build()
            self.builds += 1
        return self.path(key), self.put(key, data, fields), False

    def pin(self, key: str, owner: str = "") -> None:
        with self._lock:
            self.pinned.setdefault(key, set()).add(owner)

    def unpin(self, key: str, owner: str = "") -> None:
        with self._lock:
            self.pinned.setdefault(key, set()).discard(owner)

    def is_pinned(self, key: str) -> bool:
        return bool(self.pinned.get(key))

    def total_bytes(self) -> int:
        return sum(len(d) for d in self._data.values())


# --- speaker fakes (Player, Amplifier) ---
# (H3) A Player and an Amplifier for the agent's unit tests: they record what they were asked
# and can be told to fail, so the agent's failure paths (``failed`` receipts, a broken relay
# that must not stop the announcement) can be checked without a sound card or GPIO.

import asyncio as _sp_asyncio  # noqa: E402  (sections share one module; imports stay in their section)
import time as _sp_time  # noqa: E402


class FakeAmplifier:
    """An Amplifier that records every switch as ``(monotonic time, on)``; ``fail`` raises."""

    name = "fake"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.switches: list[tuple[float, bool]] = []
        self._on = False

    @property
    def is_on(self) -> bool:
        return self._on

    async def set(self, on: bool) -> None:
        from speakers.amplifier import AmplifierError

        if self.fail:
            raise AmplifierError("relay does not answer")
        self.switches.append((_sp_time.monotonic(), on))
        self._on = on

    async def close(self) -> None:
        self._on = False


class FakePlayer:
    """A Player that plays nothing for the item's duration. ``fail_prepare`` / ``fail_play``
    (messages) make it raise PlayerError; ``played`` lists broadcast ids in start order."""

    name = "fake"

    def __init__(self, fail_prepare: str | None = None, fail_play: str | None = None) -> None:
        self.fail_prepare = fail_prepare
        self.fail_play = fail_play
        self.prepared: list[str] = []
        self.played: list[str] = []
        self.released: list[str] = []

    async def prepare(self, item: _Any) -> None:
        from speakers.player import PlayerError

        self.prepared.append(item.broadcast_id)
        if self.fail_prepare:
            raise PlayerError(self.fail_prepare)

    async def play(self, item: _Any) -> None:
        from speakers.player import PlayerError

        self.played.append(item.broadcast_id)
        if self.fail_play:
            raise PlayerError(self.fail_play)
        await _sp_asyncio.sleep(item.duration_s)

    async def release(self, item: _Any) -> None:
        self.released.append(item.broadcast_id)


# --- controller fakes ---
# (H4a) A speech service stand-in (no synthesis, deterministic "mp3" bytes) and a fake speaker node
# on the in-memory transport that follows docs/protocol.md in the simplest way: it asks for missing
# audio, verifies it, starts at ``start_at``, lets an emergency interrupt, never overlaps two items,
# and sends receipts. Both are for unit tests of the controller; end-to-end tests use the real
# speech pipeline and the real simulator.

import json as _json  # noqa: E402  (sections share one module; imports stay in their section)
import time as _time  # noqa: E402
from dataclasses import dataclass as _dataclass  # noqa: E402

from broadcaster.transport import TransportError as _TransportError  # noqa: E402
from broadcaster.transport.memory import MemoryTransport as _MemoryTransport  # noqa: E402
from speakers import protocol as _proto  # noqa: E402


class ControllerSpeechError(Exception):
    """What ControllerSpeech.render raises when told to fail."""


@_dataclass(frozen=True)
class ControllerRenderResult:
    key: str
    path: _Path
    text: str
    normalized_text: str
    engine: str
    voice: str | None
    duration_s: float
    loudness_lufs: float = -16.0
    true_peak_dbtp: float = -2.0
    cache_hit: bool = False


class ControllerSpeech:
    """SpeechService stand-in: ``render`` returns ``duration_s`` seconds of fake audio whose bytes
    (``size`` of them, so several chunks) depend on the text. ``gate`` holds renders until set;
    ``fail`` makes renders raise; ``durations`` overrides the duration per text."""

    def __init__(self, root: _Path, duration_s: float = 0.6, size: int = 150_000) -> None:
        self.store = MemoryStore(root)
        self.duration_s = duration_s
        self.durations: dict[str, float] = {}
        self.size = size
        self.gate: _threading.Event | None = None
        self.fail: str | None = None
        self.renders: list[dict[str, _Any]] = []
        self._lock = _threading.Lock()

    def render(self, text: str, engine=None, voice=None, repeat=1, chime=True, lexicon=None):  # type: ignore[no-untyped-def]
        if self.gate is not None:
            self.gate.wait(30)
        with self._lock:
            self.renders.append({"text": text, "engine": engine, "repeat": repeat, "lexicon": lexicon})
        if self.fail:
            raise ControllerSpeechError(self.fail)
        duration = self.durations.get(text, self.duration_s) * repeat
        key = _hashlib.sha256(f"{engine}|{voice}|{repeat}|{text}".encode()).hexdigest()
        hit = self.store.has(key)
        if not hit:
            seed = _hashlib.sha256(key.encode()).digest()
            data = (seed * (self.size // len(seed) + 1))[: self.size]
            self.store.put(key, data, {"duration_s": duration, "engine": "fake", "text": text})
        return ControllerRenderResult(
            key=key,
            path=self.store.path(key),
            text=text,
            normalized_text=text.lower(),
            engine="fake",
            voice=voice,
            duration_s=duration,
            cache_hit=hit,
        )

    def engines(self) -> list[str]:
        return ["fake"]


class FakeNode:
    """One speaker node on a MemoryBroker. ``timeline`` holds what it (virtually) played:
    dicts with broadcast_id, tier, start, end, seconds, outcome ("done"/"preempted"/"stopped").
    ``mute`` nodes receive but never answer. ``online=False`` keeps it disconnected.
    ``start_skew_s`` shifts the ``started_at`` it reports (a node whose clock is off);
    ``drop_states`` lists receipt states it never sends (a lost "done")."""

    def __init__(
        self,
        broker: _Any,
        speaker_id: str,
        zone: str | None,
        *,
        prefix: str = "loa",
        mute: bool = False,
        health: bool = False,
    ) -> None:
        from broadcaster.transport.memory import MemoryTransport

        self.id = speaker_id
        self.zone = zone
        self.mute = mute
        self.start_skew_s = 0.0
        self.drop_states: set[str] = set()
        self.topics = _proto.Topics(prefix)
        self.transport = MemoryTransport(broker, self.topics)
        self.timeline: list[dict[str, _Any]] = []
        self.events: list[_proto.Event] = []
        self.audio: dict[str, bytes] = {}
        self._partial: dict[str, dict[int, bytes]] = {}
        self._waiting: dict[str, list[_proto.PlayCommand]] = {}
        self._current: dict[str, _Any] | None = None
        self._queue: list[_proto.PlayCommand] = []
        self._scheduled: dict[str, object] = {}  # broadcast id -> token of its pending start
        self._lock = _threading.RLock()
        self._timers: list[_threading.Timer] = []
        self.transport.subscribe(self.topics.cmd(speaker_id), self._on_cmd)
        if zone:
            self.transport.subscribe(self.topics.zone_cmd(zone), self._on_cmd)
        self.transport.subscribe(f"{prefix}/audio/+/+", self._on_chunk)

    # -- link
    def connect(self) -> None:
        self.transport.start()
        self.publish_status(True)

    def disconnect(self) -> None:
        """Abrupt: the broker publishes the last will (status online false, retained)."""
        self.transport.set_online(False)
        self.transport.broker.publish(self.topics.status(self.id), _proto.Status(online=False).encode(), True)

    def reconnect(self) -> None:
        self.transport.set_online(True)
        self.publish_status(True)

    def publish_status(self, online: bool) -> None:
        self.transport.publish(
            self.topics.status(self.id), _proto.Status(online=online, zone=self.zone).encode(), retain=True
        )

    def send_health(self, **fields: _Any) -> None:
        data = {"ts": _time.time(), "uptime_s": 1.0, "volume": 80, "amplifier_on": True, **fields}
        self.transport.publish(self.topics.health(self.id), _proto.Health(**data).encode())

    def stop(self) -> None:
        with self._lock:
            for t in self._timers:
                t.cancel()
        self.transport.stop()

    # -- receipts
    def _event(self, state: str, **fields: _Any) -> None:
        if fields.get("started_at") is not None:
            fields["started_at"] += self.start_skew_s
        event = _proto.Event(state=state, ts=_time.time(), **fields)  # type: ignore[arg-type]
        self.events.append(event)
        if not self.mute and state not in self.drop_states:
            self.transport.publish(self.topics.events(self.id), event.encode())

    def states(self, broadcast_id: int | str) -> list[str]:
        return [e.state for e in self.events if e.broadcast_id == str(broadcast_id)]

    # -- commands
    def _on_cmd(self, topic: str, payload: bytes) -> None:
        try:
            command = _proto.decode_command(payload)
        except _proto.ProtocolError as exc:
            self._event("error", reason=str(exc))
            return
        if isinstance(command, _proto.PlayCommand):
            if command.targets and self.id not in command.targets:
                return
            self._event("received", broadcast_id=command.broadcast_id, audio_id=command.audio.id)
            with self._lock:
                if command.audio.id in self.audio:
                    self._ready(command)
                    return
                self._waiting.setdefault(command.audio.id, []).append(command)
            self._event(
                "need_audio",
                broadcast_id=command.broadcast_id,
                audio_id=command.audio.id,
                missing=tuple(range(command.audio.chunk_count)),
            )
        elif isinstance(command, _proto.StopCommand):
            self._stop(command.broadcast_id)

    def _on_chunk(self, topic: str, payload: bytes) -> None:
        _, audio_id, index = self.topics.parse(topic)
        with self._lock:
            commands = self._waiting.get(audio_id)
            if not commands:
                return
            ref = commands[0].audio
            if not ref.chunk_ok(int(index or 0), payload):
                return
            parts = self._partial.setdefault(audio_id, {})
            parts[int(index or 0)] = payload
            if len(parts) < ref.chunk_count:
                return
            data = b"".join(parts[i] for i in range(ref.chunk_count))
            if _hashlib.sha256(data).hexdigest() != audio_id:
                return
            self.audio[audio_id] = data
            del self._waiting[audio_id]
            del self._partial[audio_id]
        for command in commands:
            self._ready(command)

    def _ready(self, command: _proto.PlayCommand) -> None:
        if command.valid_until is not None and _time.time() > command.valid_until:
            self._event("expired", broadcast_id=command.broadcast_id)
            return
        token = object()
        with self._lock:
            self._scheduled[command.broadcast_id] = token
        self._event("scheduled", broadcast_id=command.broadcast_id)
        self._timer(max(0.0, command.start_at - _time.time()), self._start, command, token)

    def _timer(self, delay: float, fn: _Any, *args: _Any) -> None:
        t = _threading.Timer(delay, fn, args)
        t.daemon = True
        with self._lock:
            self._timers.append(t)
        t.start()

    def _start(self, command: _proto.PlayCommand, token: object = None) -> None:
        with self._lock:
            if token is not None:
                if self._scheduled.get(command.broadcast_id) is not token:
                    return  # stopped (or superseded) before it started
                del self._scheduled[command.broadcast_id]
            current = self._current
            if current is not None:
                if command.tier == "emergency" and current["command"].tier != "emergency":
                    self._end_current("preempted")
                else:
                    self._queue.append(command)
                    self._queue.sort(key=lambda c: -_proto.TIER_RANK[c.tier])
                    return
            now = _time.time()
            end_timer = _threading.Timer(command.audio.duration_s, self._finish, (command.broadcast_id, now))
            end_timer.daemon = True
            self._current = {"command": command, "start": now, "timer": end_timer}
            self._timers.append(end_timer)
        self._event("playing", broadcast_id=command.broadcast_id, started_at=now)
        end_timer.start()

    def _end_current(self, outcome: str) -> None:
        current = self._current
        if current is None:
            return
        current["timer"].cancel()
        self._current = None
        now = _time.time()
        cmd = current["command"]
        played = now - current["start"]
        self.timeline.append(
            {
                "broadcast_id": cmd.broadcast_id,
                "tier": cmd.tier,
                "start": current["start"],
                "end": now,
                "seconds": played,
                "outcome": outcome,
            }
        )
        self._event(outcome, broadcast_id=cmd.broadcast_id, seconds_played=played)

    def _finish(self, broadcast_id: str, started: float) -> None:
        with self._lock:
            current = self._current
            if (
                current is None
                or current["command"].broadcast_id != broadcast_id
                or current["start"] != started
            ):
                return
            current["timer"].cancel()
            self._current = None
            now = _time.time()
            cmd = current["command"]
            self.timeline.append(
                {
                    "broadcast_id": broadcast_id,
                    "tier": cmd.tier,
                    "start": started,
                    "end": now,
                    "seconds": now - started,
                    "outcome": "done",
                }
            )
            nxt = self._queue.pop(0) if self._queue else None
        self._event("done", broadcast_id=broadcast_id, seconds_played=now - started, rms_dbfs=-20.0)
        if nxt is not None:
            self._start(nxt)

    def _stop(self, broadcast_id: str | None) -> None:
        with self._lock:
            scheduled = [b for b in self._scheduled if broadcast_id is None or b == broadcast_id]
            for b in scheduled:
                del self._scheduled[b]
            queued = [q for q in self._queue if broadcast_id is None or q.broadcast_id == broadcast_id]
            self._queue = [q for q in self._queue if q not in queued]
            current = self._current
            if current is not None and (
                broadcast_id is None or current["command"].broadcast_id == broadcast_id
            ):
                self._end_current("stopped")
        for b in [*scheduled, *(q.broadcast_id for q in queued)]:
            self._event("stopped", broadcast_id=b)


class FlakyTransport(_MemoryTransport):
    """A MemoryTransport client whose next ``fail_publishes`` publishes to topics containing
    ``fail_topic`` raise TransportError, as the paho transport does on a publish error. ``failed``
    counts the raised ones."""

    def __init__(self, broker: _Any) -> None:
        super().__init__(broker)
        self.fail_publishes = 0
        self.fail_topic = "/cmd"
        self.failed = 0

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, expiry_s: float | None = None
    ) -> None:
        if self.fail_publishes > 0 and self.fail_topic in topic:
            self.fail_publishes -= 1
            self.failed += 1
            raise _TransportError(f"publish to {topic} failed: injected")
        super().publish(topic, payload, qos, retain, expiry_s)


class FlakyCommitSessions:
    """A ``sessionmaker`` stand-in over a real one. ``fail_commits = n`` makes the next n write
    transactions (``begin()`` blocks that flushed or executed a write) opened on ``thread`` roll back at
    commit and raise ``OperationalError('database is locked')``, as SQLite does under contention.
    Plain ``sessions()`` and read-only transactions are passed through."""

    def __init__(self, sessions: _Any, thread: str = "broadcasts-dispatcher") -> None:
        self._sessions = sessions
        self.thread = thread
        self.fail_commits = 0
        self.failed = 0
        self._lock = _threading.Lock()

    def __call__(self, **kwargs: _Any) -> _Any:
        return self._sessions(**kwargs)

    def begin(self) -> _Any:
        import contextlib
        import sqlite3

        from sqlalchemy import event
        from sqlalchemy.exc import OperationalError

        @contextlib.contextmanager
        def transaction() -> _Any:
            session = self._sessions()
            wrote: list[bool] = []
            event.listen(session, "after_flush", lambda *_: wrote.append(True))
            event.listen(
                session,
                "do_orm_execute",
                lambda state: (
                    wrote.append(True) if state.is_insert or state.is_update or state.is_delete else None
                ),
            )
            try:
                session.begin()
                yield session
                session.flush()
                with self._lock:
                    fail = (
                        bool(wrote)
                        and self.fail_commits > 0
                        and _threading.current_thread().name == self.thread
                    )
                    if fail:
                        self.fail_commits -= 1
                        self.failed += 1
                if fail:
                    raise OperationalError("COMMIT", {}, sqlite3.OperationalError("database is locked"))
                session.commit()
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()

        return transaction()


def payloads(transport: _Any, topic_part: str) -> list[dict[str, _Any]]:
    """Decoded JSON payloads a MemoryTransport published on topics containing ``topic_part``."""
    return [
        _json.loads(p) for t, p, *_ in transport.sent if topic_part in t and not t.split("/")[1] == "audio"
    ]


# --- scheduling/api fakes ---
# (H4b) A broadcast manager, a speech service and a fleet reduced to what the scheduler and the
# REST API call, for unit tests on a real SQLite file. Integration tests use the real parts.

# No module-level imports here: this section sits below the others (ruff E402).


class FakeBroadcastManager:
    """Records submissions; writes the Announcement and Broadcast rows like the real manager
    (so the unique (schedule_id, fire_time) constraint and the reports see them)."""

    def __init__(self, sessions: object = None) -> None:
        self.sessions = sessions
        self.submitted: list[tuple[object, dict[str, object]]] = []
        self.aired: list[int] = []
        self.cancelled: list[int] = []
        self.stopped: list[tuple[str | None, str]] = []
        self.fail_with: Exception | None = None
        import threading

        self.changed = threading.Condition()
        self.defer = None
        self.undefer = None
        self._next_id = 1

    def submit(
        self,
        ann: object,
        *,
        approved: bool = True,
        schedule_id: int | None = None,
        fire_time: object = None,
        valid_until: object = None,
    ) -> int:
        if self.fail_with is not None:
            raise self.fail_with
        kwargs = {
            "approved": approved,
            "schedule_id": schedule_id,
            "fire_time": fire_time,
            "valid_until": valid_until,
        }
        broadcast_id = self._persist(ann, kwargs) if self.sessions is not None else self._count()
        with self.changed:
            self.submitted.append((ann, {**kwargs, "id": broadcast_id}))
            self.changed.notify_all()
        from datetime import UTC, datetime

        if ann.at is not None and ann.at > datetime.now(UTC) and self.defer is not None:
            self.defer(broadcast_id, ann.at)
        return broadcast_id

    def _count(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _persist(self, ann: object, kwargs: dict[str, object]) -> int:
        from datetime import UTC, datetime

        from sqlalchemy import select
        from sqlalchemy.exc import IntegrityError

        from broadcaster.models import Announcement, Broadcast

        schedule_id, fire_time = kwargs["schedule_id"], kwargs["fire_time"]
        future = ann.at is not None and ann.at > datetime.now(UTC)
        state = "scheduled" if future else ("sending" if kwargs["approved"] else "pending_approval")
        try:
            with self.sessions.begin() as session:
                row = Announcement(
                    title=ann.title,
                    text=ann.text,
                    tier=str(ann.tier),
                    targets=list(ann.targets),
                    repeat=ann.repeat,
                    engine=ann.engine,
                    voice=ann.voice,
                    author=ann.author,
                    source=str(ann.source),
                    audio_key=ann.audio_key,
                )
                broadcast = Broadcast(
                    announcement=row,
                    tier=str(ann.tier),
                    targets=list(ann.targets),
                    state=state,
                    scheduled_at=ann.at or fire_time,
                    schedule_id=schedule_id,
                    fire_time=fire_time,
                    audio_key=ann.audio_key,
                    created_by=ann.author,
                )
                session.add(broadcast)
                session.flush()
                return broadcast.id
        except IntegrityError:
            with self.sessions() as session:
                return session.scalar(
                    select(Broadcast.id).where(
                        Broadcast.schedule_id == schedule_id, Broadcast.fire_time == fire_time
                    )
                )

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until ``count`` submissions were made."""
        with self.changed:
            return self.changed.wait_for(lambda: len(self.submitted) >= count, timeout)

    def air(self, broadcast_id: int) -> None:
        with self.changed:
            self.aired.append(broadcast_id)
            self.changed.notify_all()

    def approve(self, announcement_id: int, by: str) -> None:
        pass

    def reject(self, announcement_id: int, by: str, reason: str = "") -> None:
        pass

    def cancel(self, broadcast_id: int, by: str | None = None) -> bool:
        self.cancelled.append(broadcast_id)
        return self.get(broadcast_id) is not None

    def stop_all(self, by: str | None = None, reason: str = "") -> None:
        self.stopped.append((by, reason))

    def get(self, broadcast_id: int) -> dict[str, object] | None:
        if self.sessions is None:
            return None
        from broadcaster.models import Broadcast

        with self.sessions() as session:
            row = session.get(Broadcast, broadcast_id)
            if row is None:
                return None
            return {
                "id": row.id,
                "state": row.state,
                "tier": row.tier,
                "targets": list(row.targets),
                "title": row.announcement.title,
                "text": row.announcement.text,
                "deliveries": [{"speaker": d.speaker_id, "state": d.state} for d in row.deliveries],
            }

    def list(self, *, limit: int = 50, offset: int = 0, state: str | None = None) -> list[dict[str, object]]:
        if self.sessions is None:
            return []
        from sqlalchemy import select

        from broadcaster.models import Broadcast

        with self.sessions() as session:
            query = select(Broadcast.id).order_by(Broadcast.id.desc()).limit(limit).offset(offset)
            if state:
                query = query.where(Broadcast.state == state)
            ids = list(session.scalars(query))
        return [self.get(i) for i in ids]


class FakeRenderResult:
    def __init__(self, key: str, text: str) -> None:
        self.key, self.text = key, text
        self.engine = self.voice = "fake"
        self.duration_s = 1.0
        self.cache_hit = False


class FakeAudioStore:
    """Keys and pins (per owner, like AudioStore) in memory."""

    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.owners: dict[str, set[str]] = {}

    @property
    def pinned(self) -> set[str]:
        return {key for key, owners in self.owners.items() if owners}

    def has(self, key: str) -> bool:
        return key in self.keys

    def pin(self, key: str, owner: str = "") -> None:
        self.owners.setdefault(key, set()).add(owner)

    def unpin(self, key: str, owner: str = "") -> None:
        self.owners.get(key, set()).discard(owner)


class FakeSpeechService:
    """``render`` returns a key derived from its inputs; ``fail_with`` makes it raise (an outage)."""

    def __init__(self) -> None:
        self.store = FakeAudioStore()
        self.calls: list[dict[str, object]] = []
        self.fail_with: Exception | None = None

    def engines(self) -> list[str]:
        return ["gtts", "espeak-ng"]

    def render(
        self,
        text: str,
        engine: str | None = None,
        voice: str | None = None,
        repeat: int = 1,
        chime: bool = True,
        lexicon: dict[str, str] | None = None,
    ) -> FakeRenderResult:
        self.calls.append(
            {"text": text, "engine": engine, "voice": voice, "repeat": repeat, "lexicon": lexicon}
        )
        if self.fail_with is not None:
            raise self.fail_with
        import hashlib

        key = hashlib.sha256(repr((text, engine, voice, repeat, sorted((lexicon or {}).items()))).encode())
        result = FakeRenderResult(key=key.hexdigest(), text=text)
        self.store.keys.add(result.key)
        return result


class FakeFleet:
    """``snapshot()`` lists the registry's speakers; ``online`` holds the ids reported online."""

    def __init__(self, sessions: object) -> None:
        self.sessions = sessions
        self.online: set[str] = set()
        self.health: dict[str, dict[str, object]] = {}
        self.fail_with: Exception | None = None

    def snapshot(self) -> list[dict[str, object]]:
        if self.fail_with is not None:
            raise self.fail_with
        from sqlalchemy import select

        from broadcaster.models import Speaker

        with self.sessions() as session:
            rows = list(session.scalars(select(Speaker).order_by(Speaker.id)))
            return [
                {
                    "id": s.id,
                    "name": s.name,
                    "zone": s.zone_id,
                    "online": s.id in self.online,
                    "last_seen": None,
                    "health": self.health.get(s.id),
                    "playing": None,
                    "alerts": [],
                }
                for s in rows
            ]

    def speaker(self, speaker_id: str) -> dict[str, object] | None:
        return next((s for s in self.snapshot() if s["id"] == speaker_id), None)

    def alerts(self, active_only: bool = True) -> list[dict[str, object]]:
        return []


# --- web fakes ---
# (H5) For the web UI's Flask test-client tests: a normalizer with ``analyze``, a fleet whose live
# state a test sets, and a broadcast manager whose approve/reject/cancel change the stored state.
# The browser tests use the real controller instead.


class FakeToken:
    def __init__(self, original: str, spoken: str, changed: bool) -> None:
        self.original, self.spoken, self.changed = original, spoken, changed


class FakeNormalized:
    def __init__(self, text: str, tokens: tuple[FakeToken, ...]) -> None:
        self.text, self.tokens = text, tokens


class FakeAnalyzingNormalizer(FakeNormalizer):
    """Word by word: an override (or a built-in "UBND") is read out, everything else kept."""

    BUILT_IN = {"UBND": "ủy ban nhân dân"}

    def with_overrides(self, mapping: dict[str, str]) -> "FakeAnalyzingNormalizer":
        return FakeAnalyzingNormalizer({**self.overrides, **mapping})

    def analyze(self, text: str) -> FakeNormalized:
        import re

        words = {**self.BUILT_IN, **self.overrides}
        tokens = []
        for piece in re.split(r"(\s+)", text):
            if not piece:
                continue
            spoken = words.get(piece, piece)
            tokens.append(FakeToken(piece, spoken, spoken != piece))
        return FakeNormalized("".join(t.spoken for t in tokens), tuple(tokens))

    def normalize(self, text: str) -> str:
        return self.analyze(text).text


class FakeLiveFleet:
    """``snapshot()`` lists the registry's speakers merged with ``live[speaker_id]`` (a test sets
    online, playing, volume, amplifier_on, alerts, health_at there)."""

    def __init__(self, sessions: object) -> None:
        self.sessions = sessions
        self.live: dict[str, dict[str, object]] = {}

    def snapshot(self) -> list[dict[str, object]]:
        from sqlalchemy import select

        from broadcaster.models import Speaker

        with self.sessions() as session:
            rows = list(session.scalars(select(Speaker).order_by(Speaker.id)))
            base = [
                {
                    "id": s.id,
                    "name": s.name,
                    "zone": s.zone_id,
                    "online": False,
                    "last_seen": None,
                    "health": None,
                    "health_at": None,
                    "playing": None,
                    "volume": None,
                    "amplifier_on": None,
                    "alerts": [],
                }
                for s in rows
            ]
        return [{**item, **self.live.get(str(item["id"]), {})} for item in base]

    def speaker(self, speaker_id: str) -> dict[str, object] | None:
        return next((s for s in self.snapshot() if s["id"] == speaker_id), None)

    def alerts(self, active_only: bool = True) -> list[dict[str, object]]:
        return []


class RenderAllRecorder:
    """A SchedulerService seen through a window: ``render_all`` calls are recorded (with the name of
    the thread they ran on) and passed on; everything else goes straight to the real service."""

    def __init__(self, inner: object) -> None:
        import threading

        self.inner = inner
        self.threads: list[str] = []
        self.called = threading.Condition()

    def render_all(self) -> None:
        import threading

        with self.called:
            self.threads.append(threading.current_thread().name)
            self.called.notify_all()
        self.inner.render_all()

    def wait_calls(self, count: int, timeout: float = 10.0) -> bool:
        with self.called:
            return self.called.wait_for(lambda: len(self.threads) >= count, timeout)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


class WebFakeBroadcasts(FakeBroadcastManager):
    """H4b's recording manager plus state changes for approve/reject/cancel and the fields the
    web pages show (announcement_id, normalized_text, delivery details)."""

    def _set_state(self, announcement_id: int, state: str, approval: str) -> None:
        from sqlalchemy import select

        from broadcaster.models import Announcement, Broadcast

        with self.sessions.begin() as session:
            session.get(Announcement, announcement_id).approval = approval
            for row in session.scalars(select(Broadcast).where(Broadcast.announcement_id == announcement_id)):
                row.state = state

    def approve(self, announcement_id: int, by: str) -> None:
        self._set_state(announcement_id, "sending", "approved")

    def reject(self, announcement_id: int, by: str, reason: str = "") -> None:
        self._set_state(announcement_id, "cancelled", "rejected")

    def cancel(self, broadcast_id: int, by: str | None = None) -> bool:
        from broadcaster.models import Broadcast

        self.cancelled.append(broadcast_id)
        with self.sessions.begin() as session:
            row = session.get(Broadcast, broadcast_id)
            if row is None or row.state in ("done", "cancelled", "failed"):
                return False
            row.state = "cancelled"
            return True

    def get(self, broadcast_id: int) -> dict[str, object] | None:
        from broadcaster.models import Broadcast

        with self.sessions() as session:
            row = session.get(Broadcast, broadcast_id)
            if row is None:
                return None
            ann = row.announcement
            return {
                "id": row.id,
                "announcement_id": row.announcement_id,
                "state": row.state,
                "tier": row.tier,
                "targets": list(row.targets),
                "title": ann.title,
                "text": ann.text,
                "normalized_text": ann.normalized_text,
                "scheduled_at": row.scheduled_at,
                "start_at": row.start_at,
                "finished_at": row.finished_at,
                "engine": row.engine_used,
                "duration_s": row.duration_s,
                "reason": row.reason,
                "author": ann.author,
                "deliveries": [
                    {
                        "speaker": d.speaker_id,
                        "state": d.state,
                        "started_at": d.started_at,
                        "finished_at": d.finished_at,
                        "seconds_played": d.seconds_played,
                        "rms_dbfs": d.rms_dbfs,
                        "reason": d.reason,
                    }
                    for d in row.deliveries
                ],
            }

    # Volume: the real manager's contract without MQTT: resolves targets on the registry tables,
    # refuses a bad volume or target with the real BroadcastError, records each call.

    def __init__(self, sessions: object = None) -> None:
        super().__init__(sessions)
        self.volume_calls: list[tuple[list[str], int, str | None]] = []
        self.volume_broker_down = False  # set_volume fails as when the broker refuses the command

    def set_volume(self, targets: list[str], volume: int, by: str | None = None) -> list[str]:
        from sqlalchemy import select

        from broadcaster.broadcasts import BroadcastError
        from broadcaster.models import Speaker, Zone

        if isinstance(volume, bool) or not isinstance(volume, int) or not 0 <= volume <= 100:
            raise BroadcastError(f"Âm lượng phải là số nguyên từ 0 đến 100 (nhận {volume!r}).")
        with self.sessions() as session:
            rows = list(session.execute(select(Speaker.id, Speaker.zone_id, Speaker.enabled)))
            zones = set(session.scalars(select(Zone.id)))
        unknown = [t for t in targets if t != "all" and t not in zones and t not in {r[0] for r in rows}]
        if unknown:
            raise BroadcastError(f"Không có khu vực hay cụm loa: {', '.join(unknown)}.")
        chosen = sorted(
            sid
            for sid, zone, enabled in rows
            if enabled and ("all" in targets or sid in targets or zone in targets)
        )
        if not chosen:
            raise BroadcastError("Không có cụm loa nào đang hoạt động ở nơi đã chọn.")
        if self.volume_broker_down:
            from broadcaster.transport import TransportError

            raise BroadcastError(
                "Không gửi được lệnh âm lượng tới cụm loa: not connected"
            ) from TransportError("not connected")
        self.volume_calls.append((list(targets), volume, by))
        return chosen

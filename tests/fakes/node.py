"""A fake speaker node on the in-memory transport that follows docs/protocol.md in the simplest way:
it asks for missing audio, verifies it, starts at ``start_at``, lets an emergency interrupt, never
overlaps two items, and sends receipts. For unit tests of the controller; end-to-end tests use the
real agent through the simulator."""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any

from speakers import protocol as proto


class FakeNode:
    """One speaker node on a MemoryBroker. ``timeline`` holds what it (virtually) played:
    dicts with broadcast_id, tier, start, end, seconds, outcome ("done"/"preempted"/"stopped").
    ``mute`` nodes receive but never answer. ``online=False`` keeps it disconnected.
    ``start_skew_s`` shifts the ``started_at`` it reports (a node whose clock is off);
    ``drop_states`` lists receipt states it never sends (a lost "done")."""

    def __init__(
        self,
        broker: Any,
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
        self.topics = proto.Topics(prefix)
        self.transport = MemoryTransport(broker, self.topics)
        self.timeline: list[dict[str, Any]] = []
        self.events: list[proto.Event] = []
        self.audio: dict[str, bytes] = {}
        self._partial: dict[str, dict[int, bytes]] = {}
        self._waiting: dict[str, list[proto.PlayCommand]] = {}
        self._current: dict[str, Any] | None = None
        self._queue: list[proto.PlayCommand] = []
        self._scheduled: dict[str, object] = {}  # broadcast id -> token of its pending start
        self._lock = threading.RLock()
        self._timers: list[threading.Timer] = []
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
        self.transport.broker.publish(self.topics.status(self.id), proto.Status(online=False).encode(), True)

    def reconnect(self) -> None:
        self.transport.set_online(True)
        self.publish_status(True)

    def publish_status(self, online: bool) -> None:
        self.transport.publish(
            self.topics.status(self.id), proto.Status(online=online, zone=self.zone).encode(), retain=True
        )

    def send_health(self, **fields: Any) -> None:
        data = {"ts": time.time(), "uptime_s": 1.0, "volume": 80, "amplifier_on": True, **fields}
        self.transport.publish(self.topics.health(self.id), proto.Health(**data).encode())

    def stop(self) -> None:
        with self._lock:
            for t in self._timers:
                t.cancel()
        self.transport.stop()

    # -- receipts
    def _event(self, state: str, **fields: Any) -> None:
        if fields.get("started_at") is not None:
            fields["started_at"] += self.start_skew_s
        event = proto.Event(state=state, ts=time.time(), **fields)  # type: ignore[arg-type]
        self.events.append(event)
        if not self.mute and state not in self.drop_states:
            self.transport.publish(self.topics.events(self.id), event.encode())

    def states(self, broadcast_id: int | str) -> list[str]:
        return [e.state for e in self.events if e.broadcast_id == str(broadcast_id)]

    # -- commands
    def _on_cmd(self, topic: str, payload: bytes) -> None:
        try:
            command = proto.decode_command(payload)
        except proto.ProtocolError as exc:
            self._event("error", reason=str(exc))
            return
        if isinstance(command, proto.PlayCommand):
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
        elif isinstance(command, proto.StopCommand):
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
            if hashlib.sha256(data).hexdigest() != audio_id:
                return
            self.audio[audio_id] = data
            del self._waiting[audio_id]
            del self._partial[audio_id]
        for command in commands:
            self._ready(command)

    def _ready(self, command: proto.PlayCommand) -> None:
        if command.valid_until is not None and time.time() > command.valid_until:
            self._event("expired", broadcast_id=command.broadcast_id)
            return
        token = object()
        with self._lock:
            self._scheduled[command.broadcast_id] = token
        self._event("scheduled", broadcast_id=command.broadcast_id)
        self._timer(max(0.0, command.start_at - time.time()), self._start, command, token)

    def _timer(self, delay: float, fn: Any, *args: Any) -> None:
        t = threading.Timer(delay, fn, args)
        t.daemon = True
        with self._lock:
            self._timers.append(t)
        t.start()

    def _start(self, command: proto.PlayCommand, token: object = None) -> None:
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
                    self._queue.sort(key=lambda c: -proto.TIER_RANK[c.tier])
                    return
            now = time.time()
            end_timer = threading.Timer(command.audio.duration_s, self._finish, (command.broadcast_id, now))
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
        now = time.time()
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
            now = time.time()
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

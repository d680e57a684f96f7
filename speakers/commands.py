"""The controller's commands to a node: ``play``, ``stop`` and ``volume`` (docs/protocol.md 4.2-4.4, 8).

A play becomes a :class:`~speakers.playout.Job`: checked (zone targets, duplicates, a reused
broadcast id, lateness, the slot it airs), then its audio is taken from the cache or fetched, and
the playout queues it. The volume is remembered across restarts (``agent-state.json``) and a
hardware mixer command, when configured, is run by one worker: in order, the latest volume winning.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shlex
from collections.abc import Callable
from typing import Any, Protocol

from speakers.cache import AudioCache
from speakers.clocksync import ClockSync
from speakers.config import AgentConfig
from speakers.fetcher import AudioFetcher, Holder
from speakers.playout import TERMINAL_STATES, Job, Playout
from speakers.protocol import (
    Event,
    PlayCommand,
    ProtocolError,
    StopCommand,
    StreamCommand,
    TimeSync,
    VolumeCommand,
    decode_command,
)
from speakers.receipts import Receipts

_LOGGER = logging.getLogger(__name__)


def same_item(a: PlayCommand, b: PlayCommand) -> bool:
    """Two play commands are one broadcast (a redelivery) only when id, audio and start match."""
    return a.broadcast_id == b.broadcast_id and a.audio.id == b.audio.id and a.start_at == b.start_at


class SlotKeeper(Protocol):
    """The node's scheduled slots (section 11), asked about every play that names a slot."""

    def answer_play(self, cmd: PlayCommand) -> bool: ...

    def claim(self, job: Job) -> None: ...


class Commands:
    def __init__(
        self,
        name: str,
        config: AgentConfig,
        *,
        sync: ClockSync,
        playout: Playout,
        fetcher: AudioFetcher,
        cache: AudioCache,
        slots: SlotKeeper,
        receipts: Receipts,
        connected: Callable[[], bool],
        spawn: Callable[[Any, str], asyncio.Task[Any]],
    ) -> None:
        self.name = name
        self.config = config
        self.sync = sync
        self.playout = playout
        self.fetcher = fetcher
        self.cache = cache
        self.slots = slots
        self.receipts = receipts
        self.connected = connected
        self.spawn = spawn
        self.last_error: str | None = None
        self.malformed_count = 0
        self.malformed_error: str | None = None
        self._state_file = config.cache_dir() / "agent-state.json"
        self.volume = self._load_volume()
        self._mixer_wanted: int | None = None  # the volume the mixer worker applies next
        self._mixer_task: asyncio.Task[Any] | None = None

    # -------------------------------------------------------------------------- messages

    def on_message(self, payload: bytes, via_zone: bool, expiry_s: float | None) -> None:
        """A message on the node's or its zone's cmd topic."""
        try:
            cmd = decode_command(payload)
        except ProtocolError as exc:
            self.malformed("cmd", payload, exc)
            return
        if isinstance(cmd, PlayCommand):
            self.on_play(cmd, via_zone, expiry_s)
        elif isinstance(cmd, StreamCommand):
            self.on_stream(cmd, via_zone, expiry_s)
        elif isinstance(cmd, StopCommand):
            self.on_stop(cmd)
        elif isinstance(cmd, VolumeCommand):
            self.on_volume(cmd)
        elif isinstance(cmd, TimeSync):
            self.sync.on_answer(cmd)

    def malformed(self, topic: str, payload: bytes, exc: ProtocolError) -> None:
        """Count and log a message that cannot be understood and answer it with an ``error``."""
        self.malformed_count += 1
        preview = payload[:120].decode("utf-8", "replace")
        self.malformed_error = f"malformed command: {exc}"
        _LOGGER.warning("%s: malformed message on %s (%s): %r", self.name, topic, exc, preview)
        bid = None
        with contextlib.suppress(Exception):
            data = json.loads(payload)
            if isinstance(data, dict) and isinstance(data.get("broadcast_id"), str):
                bid = data["broadcast_id"][:128]
        self.event("error", reason=str(exc)[:300], broadcast_id=bid)

    def event(self, state: str, **fields: Any) -> None:
        """A receipt about no job in particular (``error``)."""
        event = Event(state=state, ts=self.sync.controller_now(), **fields)  # type: ignore[arg-type]
        self.receipts.send(event, persist=not self.connected())

    # ------------------------------------------------------------------------------ play

    def on_play(self, cmd: PlayCommand, via_zone: bool, expiry_s: float | None) -> None:
        playout = self.playout
        if via_zone and cmd.targets and self.name not in cmd.targets:
            return  # a zone play meant for other members
        if cmd.slot is not None and self.slots.answer_play(cmd):
            return  # the slot was (or is being) aired: answered with its receipts
        known = playout.jobs.get(cmd.broadcast_id) or playout.known.get(cmd.broadcast_id)
        if known is not None and not same_item(known.cmd, cmd):
            # The same id for another item: the controller's ids were reused (its database
            # was recreated). The id now means the new item; forget the old one silently, a
            # receipt under this id would be read as about the new item.
            _LOGGER.warning(
                "%s: broadcast %s reused for other audio/start; treating it as a new item",
                self.name,
                cmd.broadcast_id,
            )
            playout.known.pop(cmd.broadcast_id, None)
            if playout.active(known):
                playout.drop(known, "broadcast id reused")
            known = None
        if known is not None:
            # A duplicate (QoS 1 redelivery, or both the zone and the node topic): say again
            # how it ended, so a controller that missed the receipt learns it.
            if known.state in TERMINAL_STATES and known.last_event is not None:
                playout.receipts.send(known.last_event, count=False)
            return
        now = self.sync.controller_now()
        valid_until = (
            cmd.valid_until if cmd.valid_until is not None else cmd.start_at + self.config.player.max_late_s
        )
        if expiry_s is not None:
            valid_until = min(valid_until, now + expiry_s)
        job = Job(cmd=cmd, seq=playout.next_seq(), valid_until=valid_until, via_zone=via_zone)
        if cmd.slot is not None:
            self.slots.claim(job)
        if playout.add(job):
            self.get_audio(job)

    def on_stream(self, cmd: StreamCommand, via_zone: bool, expiry_s: float | None) -> None:
        """A live stream (section 12): a job like a play, whose audio arrives as frames. One that
        arrives after ``start_at`` joins at the live point; a duplicate is answered as for a play."""
        playout = self.playout
        if via_zone and cmd.targets and self.name not in cmd.targets:
            return
        known = playout.jobs.get(cmd.broadcast_id) or playout.known.get(cmd.broadcast_id)
        if known is not None and not (known.cmd == cmd):
            playout.known.pop(cmd.broadcast_id, None)
            if playout.active(known):
                playout.drop(known, "broadcast id reused")
            known = None
        if known is not None:
            if known.state in TERMINAL_STATES and known.last_event is not None:
                playout.receipts.send(known.last_event, count=False)
            return
        now = self.sync.controller_now()
        valid_until = cmd.valid_until if cmd.valid_until is not None else cmd.end_at
        if valid_until is None:
            valid_until = cmd.start_at + self.config.player.max_late_s
        if expiry_s is not None and cmd.end_at is None:
            valid_until = min(valid_until, now + expiry_s)
        job = Job(cmd=cmd, seq=playout.next_seq(), valid_until=valid_until, via_zone=via_zone)
        if playout.add(job):
            self.spawn(playout.ready_stream(job), f"stream-{job.key}")

    def get_audio(self, job: Job) -> None:
        """Queue ``job`` now if its audio is cached (and verifies), else fetch it first."""
        audio = job.cmd.audio
        if self.cache.has(audio.id) and self.cache.verify(audio.id):
            self.spawn(self.playout.ready(job), f"ready-{job.key}")
        else:
            self.need_audio(job)

    def need_audio(self, job: Job) -> None:
        playout = self.playout

        def give_up(state: str, reason: str) -> None:
            if playout.active(job):
                playout.finish(job, state, reason=reason)

        def ready() -> None:
            self.spawn(playout.ready(job), f"ready-{job.key}")

        holder = Holder(
            key=job.key,
            valid_until=job.valid_until,
            ready=ready,
            give_up=give_up,
            alive=lambda: playout.active(job),
            request={"broadcast_id": job.broadcast_id, "tier": job.cmd.tier, "slot": job.slot},
        )
        self.fetcher.fetch(job.cmd.audio, holder)

    # ------------------------------------------------------------------------------ stop

    def on_stop(self, cmd: StopCommand) -> None:
        reason = cmd.reason or None
        if cmd.broadcast_id is None:
            self.playout.cut_all("stopped", reason)
            return
        job = self.playout.find(cmd.broadcast_id)
        if job is not None:
            self.playout.cut(job, "stopped", reason)

    # ---------------------------------------------------------------------------- volume

    def on_volume(self, cmd: VolumeCommand) -> None:
        self.volume = cmd.volume
        self._save_state()
        mixer = self.config.volume.mixer_command
        if not mixer:
            return
        # One mixer process at a time, in order, the latest volume winning: two quick commands
        # must never apply out of order (each used to start its own process, racing the other).
        self._mixer_wanted = cmd.volume
        if self._mixer_task is None or self._mixer_task.done():
            self._mixer_task = self.spawn(self._mixer_worker(mixer), "mixer")

    @property
    def mixer_busy(self) -> bool:
        """True while the mixer command runs (or is about to)."""
        return self._mixer_task is not None and not self._mixer_task.done()

    async def _mixer_worker(self, mixer: str) -> None:
        """Apply the wanted volume until it stops changing (commands arriving meanwhile collapse
        into the latest one)."""
        while self._mixer_wanted is not None:
            volume, self._mixer_wanted = self._mixer_wanted, None
            await self._run_mixer(mixer.replace("{volume}", str(volume)))

    async def _run_mixer(self, command: str) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                *shlex.split(command), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
            )
            _, err = await proc.communicate()
        except OSError as exc:
            self.last_error = f"mixer command failed: {exc}"
            return
        if proc.returncode != 0:
            self.last_error = f"mixer command failed: {err.decode('utf-8', 'replace').strip()[:200]}"

    def _load_volume(self) -> int:
        try:
            data = json.loads(self._state_file.read_text(encoding="utf-8"))
            volume = int(data["volume"])
            if 0 <= volume <= 100:
                return volume
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return self.config.volume.default

    def _save_state(self) -> None:
        tmp = self._state_file.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps({"volume": self.volume}), encoding="utf-8")
            tmp.replace(self._state_file)
        except OSError as exc:
            _LOGGER.warning("%s: cannot save state: %s", self.name, exc)

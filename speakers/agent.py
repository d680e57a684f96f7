"""The speaker node agent: one loudspeaker cluster, as an asyncio object.

Many :class:`Agent` instances can share one event loop (the simulator); the real agent is the
same code with one instance (``speaker-agent run``). The wire protocol is ``docs/protocol.md``.

What one agent does:

* keeps one persistent MQTT 5 session (:class:`speakers.mqtt.Link`) with a retained birth
  status, a retained ``online: false`` will, and its cmd and zone cmd subscriptions;
* estimates the controller's clock (several request/answer samples, the shortest round trip
  wins, periodic resync, ``seq = -1`` asks for an immediate resync) and plays at ``start_at`` in
  controller time, on its monotonic clock, whatever its own wall clock says;
* fetches missing audio chunk by chunk (verified one by one and as a whole), asks again for what
  is missing with backoff and a cap, never plays a corrupt or partial file, and keeps a bounded
  cache on disk that survives restarts;
* arbitrates tiers: an emergency cuts whatever non-emergency item plays at its start instant
  (``preempted``), priority items go before queued normal ones, a normal item waits for the
  current one, two items never overlap;
* answers every broadcast with receipts (received, need_audio, scheduled, playing, done with
  the seconds actually played and the RMS of what was played, failed, preempted, stopped,
  expired) and every malformed command with an ``error`` event, never dying of one;
* switches the amplifier on before playback and off after an idle time; applies the volume,
  the quiet-hours volume and stop commands; sends health telemetry every N seconds.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import itertools
import json
import logging
import math
import random
import shlex
import time
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from speakers import __version__
from speakers.amplifier import Amplifier, AmplifierControl, make_amplifier
from speakers.cache import AudioCache, CacheError, ChunkPool, Transfer
from speakers.config import AgentConfig
from speakers.health import HostProbe
from speakers.mqtt import Incoming, Link, Outgoing, parse_mqtt_url
from speakers.player import Analysis, Analyzer, Player, PlayerError, PlayItem, make_player
from speakers.protocol import (
    EVENT_EXPIRY_S,
    TIER_RANK,
    TIME_EXPIRY_S,
    AudioRef,
    Event,
    Health,
    PlayCommand,
    ProtocolError,
    Status,
    StopCommand,
    TimeRequest,
    TimeSync,
    Topics,
    VolumeCommand,
    decode_command,
)

_LOGGER = logging.getLogger(__name__)

# Wake this long before the start instant and spin to the exact moment: asyncio timers are
# only millisecond-accurate, and a few spinning milliseconds cost nothing next to an echo.
_SPIN_S = 0.003
# Keep this many finished broadcasts to recognise duplicates (QoS 1 redelivery, zone + node).
_KNOWN_BROADCASTS = 500
TERMINAL_STATES = frozenset({"done", "failed", "preempted", "stopped", "expired"})


class Clock(Protocol):
    def time(self) -> float: ...

    def monotonic(self) -> float: ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class SkewedClock:
    """A clock that is ``offset_s`` off the host's (the simulator's per-node clock error)."""

    def __init__(self, offset_s: float) -> None:
        self.offset_s = offset_s

    def time(self) -> float:
        return time.time() + self.offset_s

    def monotonic(self) -> float:
        return time.monotonic() + self.offset_s


class AgentCrashed(RuntimeError):
    """One of the agent's runners died: the process must end non-zero (systemd restarts it)."""


def _same_item(a: PlayCommand, b: PlayCommand) -> bool:
    """Two play commands are one broadcast (a redelivery) only when id, audio and start match."""
    return a.broadcast_id == b.broadcast_id and a.audio.id == b.audio.id and a.start_at == b.start_at


@dataclass
class Job:
    """One broadcast on this node, from ``received`` to a terminal state."""

    cmd: PlayCommand
    seq: int
    valid_until: float
    via_zone: bool
    state: str = "received"
    item: PlayItem | None = None
    analysis: Analysis | None = None
    prepare_task: asyncio.Task[None] | None = None
    play_task: asyncio.Task[None] | None = None
    started_mono: float | None = None
    cut_reason: str | None = None
    cut_detail: str | None = None
    last_event: Event | None = None
    pinned: bool = False

    @property
    def bid(self) -> str:
        return self.cmd.broadcast_id

    @property
    def rank(self) -> int:
        return TIER_RANK.get(self.cmd.tier, 0)


@dataclass
class _Fetch:
    transfer: Transfer
    jobs: set[str] = field(default_factory=set)
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class Agent:
    """One speaker node. ``await run()`` until ``await stop()`` (clean) or ``kill()`` (power cut).

    Everything the simulator varies is injectable: ``clock`` (skew), ``player``, ``amplifier``,
    a shared ``analyzer`` and ``chunk_pool`` (one decode and one copy of each chunk for thousands
    of nodes), ``cache_pool`` (hard-linked cache blobs), ``latency_s`` (slow link) and a
    ``connect_gate`` semaphore (bounded concurrent connects).
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        player: Player | None = None,
        amplifier: Amplifier | None = None,
        clock: Clock | None = None,
        analyzer: Analyzer | None = None,
        chunk_pool: ChunkPool | None = None,
        cache_pool: Path | None = None,
        latency_s: float = 0.0,
        connect_gate: asyncio.Semaphore | None = None,
        host_probe: HostProbe | None = None,
        spin: bool = True,
        health_jitter: bool = False,
    ) -> None:
        self.config = config
        self.id = config.id
        self.zone = config.zone
        self.topics = Topics(config.mqtt.prefix)
        self.clock: Clock = clock or SystemClock()
        self.player: Player = player or make_player(
            config.player.kind, output_dir=config.player.output_dir, command=config.player.command
        )
        amp = amplifier or make_amplifier(
            config.amplifier.kind,
            line=config.amplifier.line,
            chip=config.amplifier.chip,
            active_low=config.amplifier.active_low,
            sysfs_root=config.amplifier.sysfs_root,
        )
        self.amp = AmplifierControl(amp, config.amplifier.lead_s, config.amplifier.idle_off_s)
        self.cache = AudioCache(
            config.cache_dir(), int(config.audio.cache_max_mb * 1024 * 1024), pool=cache_pool
        )
        self.analyzer = analyzer or Analyzer()
        self.chunk_pool = chunk_pool
        self.host = host_probe or HostProbe(
            config.cache_dir(),
            signal_command=config.health.signal_command,
            signal_file=config.health.signal_file,
        )
        self.spin = spin
        self.health_jitter = health_jitter
        url = parse_mqtt_url(config.mqtt.url)
        self.link = Link(
            self.id,
            url,
            on_message=self._on_message,
            on_connect=self._on_connect,
            will=Outgoing(
                self.topics.status(self.id), Status(online=False, zone=self.zone).encode(), qos=1, retain=True
            ),
            birth=self._birth,
            keepalive_s=config.mqtt.keepalive_s,
            session_expiry_s=config.mqtt.session_expiry_s,
            reconnect_min_s=config.mqtt.reconnect_min_s,
            reconnect_max_s=config.mqtt.reconnect_max_s,
            latency_s=latency_s,
            connect_gate=connect_gate,
        )
        for topic_filter in self.topics.node_filters(self.id, self.zone):
            self.link.want(topic_filter)
        self._state_file = config.cache_dir() / "agent-state.json"
        self.volume = self._load_volume()
        self.started_mono = self.clock.monotonic()
        self.malformed_count = 0
        self.last_error: str | None = None
        # Clock: controller time = monotonic + _mono_offset.
        self._mono_offset: float | None = None
        self.wall_offset_s: float | None = None  # controller clock - this node's wall clock
        self.sync_rtt_s: float | None = None
        self.syncs = 0
        self._sync_seq = itertools.count()
        self._sync_pending: dict[int, list[Any]] = {}
        self._resync = asyncio.Event()
        # Broadcasts.
        self._job_seq = itertools.count()
        self._jobs: dict[str, Job] = {}
        self._known: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self._queue: list[Job] = []
        self._current: Job | None = None
        self._fetches: dict[str, _Fetch] = {}
        self._unwanted_audio: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopping = False
        self.events_sent: collections.Counter[str] = collections.Counter()
        self.health_sent = 0

    # ------------------------------------------------------------------------ lifecycle

    @property
    def connected(self) -> asyncio.Event:
        return self.link.connected

    async def run(self) -> None:
        """Connect and serve until stopped."""
        self._tasks = [
            asyncio.create_task(self.link.run(), name=f"{self.id}-link"),
            asyncio.create_task(self._guarded(self._scheduler), name=f"{self.id}-scheduler"),
            asyncio.create_task(self._guarded(self._time_sync_loop), name=f"{self.id}-timesync"),
            asyncio.create_task(self._guarded(self._health_loop), name=f"{self.id}-health"),
        ]
        try:
            await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
            if self._stopping:
                return
            # One of the runners ended while nobody asked the agent to stop: a bug. Do not live
            # on as a silent process; die like a power cut (the broker publishes the will, the
            # retained status says offline) and let the caller end the process non-zero.
            ended = next(t for t in self._tasks if t.done())
            cause = None if ended.cancelled() else ended.exception()
            self.last_error = f"internal error: {ended.get_name()} ended ({cause!r})"
            _LOGGER.critical(
                "%s: %s ended unexpectedly; going down", self.id, ended.get_name(), exc_info=cause
            )
            self._stopping = True
            self.link.kill()
            raise AgentCrashed(f"{ended.get_name()} ended unexpectedly: {cause!r}") from cause
        except asyncio.CancelledError:
            pass
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            # No task of ours outlives run() (a pending amplifier switch-off after a kill).
            await self.amp.cancel_pending()

    async def _guarded(self, loop_fn: Any) -> None:
        """Run one of the agent's loops for ever: a bug in it is logged and the loop restarted,
        the node does not go deaf."""
        while True:
            try:
                await loop_fn()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = f"internal error: {exc!r}"
                _LOGGER.exception("%s: %s failed; restarting it", self.id, loop_fn.__name__)
                await asyncio.sleep(1.0)

    async def stop(self, timeout: float = 5.0) -> None:
        """Clean shutdown: stop playback (``stopped``), send ``online: false``, disconnect."""
        if self._stopping:
            return
        self._stopping = True
        self._cut_all("stopped", "agent stopping")
        for job in list(self._jobs.values()):
            if job.play_task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await job.play_task
        for fetch in list(self._fetches.values()):
            if fetch.task is not None:
                fetch.task.cancel()
        final = Outgoing(
            self.topics.status(self.id),
            Status(
                online=False, ts=self.controller_now(), zone=self.zone, agent_version=__version__
            ).encode(),
            qos=1,
            retain=True,
        )
        await self.link.close(final, timeout=timeout)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.amp.close()

    def kill(self) -> None:
        """Abrupt death (power cut): the TCP connection is cut, the broker sends the last will,
        nothing is said; queued work is lost, the disk cache stays."""
        self._stopping = True
        self.link.kill()
        for job in list(self._jobs.values()):
            for task in (job.play_task, job.prepare_task):
                if task is not None:
                    task.cancel()
        for fetch in self._fetches.values():
            if fetch.task is not None:
                fetch.task.cancel()
        for task in self._tasks:
            if not task.get_name().endswith("-link"):
                task.cancel()

    def _birth(self) -> Outgoing:
        status = Status(online=True, ts=self.controller_now(), zone=self.zone, agent_version=__version__)
        return Outgoing(self.topics.status(self.id), status.encode(), qos=1, retain=True)

    async def _on_connect(self, session_present: bool) -> None:
        _LOGGER.info("%s: connected (session %s)", self.id, "resumed" if session_present else "new")
        self._resync.set()  # a reconnect may mean a new path: measure the clock again

    # ------------------------------------------------------------------------- clocks

    @property
    def synced(self) -> bool:
        return self._mono_offset is not None

    def controller_now(self) -> float:
        """Controller time now (the node's own wall clock until the first sync)."""
        if self._mono_offset is None:
            return self.clock.time()
        return self.clock.monotonic() + self._mono_offset

    def _to_mono(self, controller_time: float) -> float:
        if self._mono_offset is None:
            return self.clock.monotonic() + (controller_time - self.clock.time())
        return controller_time - self._mono_offset

    async def _time_sync_loop(self) -> None:
        await self.link.connected.wait()
        cfg = self.config.time_sync
        failures = 0
        while True:
            self._resync.clear()
            ok = await self._sync_burst()
            failures = 0 if ok else failures + 1
            wait = cfg.interval_s if ok else min(cfg.interval_s, cfg.retry_s * 2 ** min(failures - 1, 6))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._resync.wait(), wait)
            await self.link.connected.wait()

    async def _sync_burst(self) -> bool:
        cfg = self.config.time_sync
        best: tuple[float, float, float] | None = None  # rtt, mono offset, wall offset
        loop = asyncio.get_running_loop()
        for _ in range(cfg.samples):
            seq = next(self._sync_seq)
            fut: asyncio.Future[tuple[float, float]] = loop.create_future()
            w_asked = self.clock.time()
            # [future, t_node as sent (echoed back), monotonic and wall time when really sent]
            pending: list[Any] = [fut, w_asked, self.clock.monotonic(), w_asked]
            self._sync_pending[seq] = pending

            def sent(p: list[Any] = pending) -> None:
                p[2], p[3] = self.clock.monotonic(), self.clock.time()

            self.link.publish(
                self.topics.time_request(self.id),
                TimeRequest(seq=seq, t_node=w_asked).encode(),
                qos=0,
                expiry_s=TIME_EXPIRY_S,
                on_send=sent,
            )
            try:
                t_controller, m3 = await asyncio.wait_for(fut, cfg.timeout_s)
            except TimeoutError:
                continue
            finally:
                self._sync_pending.pop(seq, None)
            m0, w0 = pending[2], pending[3]
            rtt = m3 - m0
            mono_offset = t_controller - (m0 + m3) / 2
            wall_offset = t_controller - (w0 + rtt / 2)
            if best is None or rtt < best[0]:
                best = (rtt, mono_offset, wall_offset)
        if best is None:
            level = logging.INFO if self.syncs == 0 else logging.WARNING
            _LOGGER.log(level, "%s: no answer to time requests; keeping the previous clock estimate", self.id)
            return False
        self.sync_rtt_s, self._mono_offset, self.wall_offset_s = best
        self.syncs += 1
        _LOGGER.debug("%s: clock offset %.1f ms (rtt %.1f ms)", self.id, best[2] * 1000, best[0] * 1000)
        return True

    def _on_time(self, msg: TimeSync) -> None:
        if msg.seq == -1:
            self._resync.set()
            return
        pending = self._sync_pending.get(msg.seq)
        if pending is None:
            return  # late answer to a request we gave up on
        fut, w_asked = pending[0], pending[1]
        if abs(msg.t_node - w_asked) > 1e-6:
            return  # not our request (t_node must be echoed)
        if not fut.done():
            fut.set_result((msg.t_controller, self.clock.monotonic()))

    # ------------------------------------------------------------------------ receipts

    def _event(self, state: str, job: Job | None = None, *, track: bool = True, **fields: Any) -> None:
        event = Event(
            state=state,  # type: ignore[arg-type]
            ts=self.controller_now(),
            broadcast_id=job.bid if job else fields.pop("broadcast_id", None),
            audio_id=job.cmd.audio.id if job else fields.pop("audio_id", None),
            tier=job.cmd.tier if job else None,
            **fields,
        )
        if job is not None and track:
            job.state = state
            job.last_event = event
        self.events_sent[state] += 1
        self.link.publish(self.topics.events(self.id), event.encode(), qos=1, expiry_s=EVENT_EXPIRY_S)

    # ------------------------------------------------------------------------ messages

    def _on_message(self, msg: Incoming) -> None:
        if self._stopping:
            return
        try:
            kind, ident, extra = self.topics.parse(msg.topic)
        except ProtocolError:
            _LOGGER.debug("%s: ignoring message on %s", self.id, msg.topic)
            return
        if kind == "audio":
            self._on_chunk(ident, int(extra or 0), msg.payload)
            return
        if kind not in ("cmd", "zone_cmd"):
            return
        via_zone = kind == "zone_cmd"
        try:
            cmd = decode_command(msg.payload)
        except ProtocolError as exc:
            self._malformed(msg, exc)
            return
        if isinstance(cmd, PlayCommand):
            self._on_play(cmd, via_zone, msg.expiry_s)
        elif isinstance(cmd, StopCommand):
            self._on_stop(cmd)
        elif isinstance(cmd, VolumeCommand):
            self._on_volume(cmd)
        elif isinstance(cmd, TimeSync):
            self._on_time(cmd)

    def _malformed(self, msg: Incoming, exc: ProtocolError) -> None:
        self.malformed_count += 1
        preview = msg.payload[:120].decode("utf-8", "replace")
        self.last_error = f"malformed command: {exc}"
        _LOGGER.warning("%s: malformed command on %s (%s): %r", self.id, msg.topic, exc, preview)
        bid = None
        with contextlib.suppress(Exception):
            data = json.loads(msg.payload)
            if isinstance(data, dict) and isinstance(data.get("broadcast_id"), str):
                bid = data["broadcast_id"][:128]
        self._event("error", reason=str(exc)[:300], broadcast_id=bid)

    # -------------------------------------------------------------------------- play

    def _on_play(self, cmd: PlayCommand, via_zone: bool, expiry_s: float | None) -> None:
        if via_zone and cmd.targets and self.id not in cmd.targets:
            return  # a zone play meant for other members
        known = self._jobs.get(cmd.broadcast_id) or self._known.get(cmd.broadcast_id)
        if known is not None and not _same_item(known.cmd, cmd):
            # The same id for another item: the controller's ids were reused (its database
            # was recreated). The id now means the new item; forget the old one silently, a
            # receipt under this id would be read as about the new item.
            _LOGGER.warning(
                "%s: broadcast %s reused for other audio/start; treating it as a new item",
                self.id,
                cmd.broadcast_id,
            )
            self._known.pop(cmd.broadcast_id, None)
            if self._active(known):
                self._drop(known)
            known = None
        if known is not None:
            # A duplicate (QoS 1 redelivery, or both the zone and the node topic): say again
            # how it ended, so a controller that missed the receipt learns it.
            if known.state in TERMINAL_STATES and known.last_event is not None:
                self.link.publish(
                    self.topics.events(self.id), known.last_event.encode(), qos=1, expiry_s=EVENT_EXPIRY_S
                )
            return
        now = self.controller_now()
        valid_until = (
            cmd.valid_until if cmd.valid_until is not None else cmd.start_at + self.config.player.max_late_s
        )
        if expiry_s is not None:
            valid_until = min(valid_until, now + expiry_s)
        job = Job(cmd=cmd, seq=next(self._job_seq), valid_until=valid_until, via_zone=via_zone)
        self._jobs[cmd.broadcast_id] = job
        if now > valid_until:
            self._finish(
                job,
                "expired",
                reason=f"arrived {now - cmd.start_at:.1f} s after start_at; valid until passed",
            )
            return
        self._event("received", job)
        audio = cmd.audio
        if self.cache.has(audio.id) and self.cache.verify(audio.id):
            self._spawn(self._ready(job), f"ready-{job.bid}")
        else:
            self._need_audio(job)

    def _active(self, job: Job) -> bool:
        """True while ``job`` is the live job for its broadcast id (not finished or replaced)."""
        return self._jobs.get(job.bid) is job

    def _drop(self, job: Job) -> None:
        """Forget a live job without any receipt (its id now belongs to another item)."""
        del self._jobs[job.bid]
        if job in self._queue:
            self._queue.remove(job)
        job.cut_reason, job.cut_detail = "stopped", "broadcast id reused"
        for task in (job.prepare_task, job.play_task):
            if task is not None and not task.done():
                task.cancel()
        if job.item is not None and job.prepare_task is not None and job is not self._current:
            self._spawn(self.player.release(job.item), f"release-{job.bid}")
        if job.pinned:
            self.cache.unpin(job.cmd.audio.id)
            job.pinned = False
        fetch = self._fetches.get(job.cmd.audio.id)
        if fetch is not None:
            fetch.jobs.discard(job.bid)
        self._wake.set()

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"{self.id}-{name}")
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.last_error = f"internal error: {exc!r}"
            _LOGGER.error("%s: task %s failed", self.id, task.get_name(), exc_info=exc)

    def _finish(self, job: Job, state: str, **fields: Any) -> None:
        """Terminal state: receipt, forget the job (remember it as known)."""
        self._event(state, job, **fields)
        if self._active(job):
            del self._jobs[job.bid]
        if job in self._queue:
            self._queue.remove(job)
        if job.pinned:
            self.cache.unpin(job.cmd.audio.id)
            job.pinned = False
        self._known[job.bid] = job
        self._known.move_to_end(job.bid)
        while len(self._known) > _KNOWN_BROADCASTS:
            self._known.popitem(last=False)
        self._wake.set()

    # ------------------------------------------------------------------------- audio

    def _need_audio(self, job: Job) -> None:
        audio = job.cmd.audio
        fetch = self._fetches.get(audio.id)
        if fetch is None:
            fetch = _Fetch(Transfer(audio, self.chunk_pool))
            self._fetches[audio.id] = fetch
            fetch.jobs.add(job.bid)
            fetch.task = self._spawn(self._fetch(audio), f"fetch-{audio.id[:8]}")
        else:
            fetch.jobs.add(job.bid)

    async def _fetch(self, ref: AudioRef) -> None:
        cfg = self.config.audio
        fetch = self._fetches[ref.id]
        transfer = fetch.transfer
        topic_filter = self.topics.audio_filter(ref.id)
        await self.link.subscribe(topic_filter)
        failures = 0
        try:
            while True:
                jobs = [self._jobs[b] for b in fetch.jobs if b in self._jobs]
                if not jobs:
                    return  # every broadcast that needed it was stopped or expired
                now = self.controller_now()
                for job in jobs:
                    if now > job.valid_until:
                        fetch.jobs.discard(job.bid)
                        self._finish(job, "expired", reason="audio did not arrive before valid_until")
                if not any(b in self._jobs for b in fetch.jobs):
                    return
                if failures >= cfg.max_requests:
                    for bid in list(fetch.jobs):
                        if bid in self._jobs:
                            self._finish(
                                self._jobs[bid],
                                "failed",
                                reason=f"audio incomplete after {failures} requests "
                                f"({transfer.received}/{ref.chunk_count} chunks, {transfer.bad_chunks} bad)",
                            )
                    return
                first = min((self._jobs[b] for b in fetch.jobs if b in self._jobs), key=lambda j: j.seq)
                # need_audio is a request, not a state of the broadcast: do not track it.
                self._event("need_audio", first, track=False, missing=tuple(transfer.missing))
                transfer.requests += 1
                timeout = min(cfg.request_timeout_s * 2**failures, cfg.request_backoff_max_s)
                progressed = False
                while not transfer.complete:
                    fetch.progress.clear()
                    try:
                        await asyncio.wait_for(fetch.progress.wait(), timeout)
                        progressed = True
                    except TimeoutError:
                        break
                if transfer.complete:
                    data = transfer.assemble()
                    if data is not None:
                        self._store(ref, data, fetch)
                        return
                failures = 0 if progressed else failures + 1
        finally:
            await self.link.unsubscribe(topic_filter)
            transfer.close()
            if self._fetches.get(ref.id) is fetch:
                del self._fetches[ref.id]

    def _store(self, ref: AudioRef, data: bytes, fetch: _Fetch) -> None:
        try:
            self.cache.put(ref.id, data, ref.format)
        except CacheError as exc:
            self.last_error = str(exc)
            for bid in list(fetch.jobs):
                if bid in self._jobs:
                    self._finish(self._jobs[bid], "failed", reason=f"cannot store audio: {exc}")
            return
        for bid in list(fetch.jobs):
            job = self._jobs.get(bid)
            if job is not None:
                self._spawn(self._ready(job), f"ready-{bid}")

    def _on_chunk(self, audio_id: str, index: int, payload: bytes) -> None:
        fetch = self._fetches.get(audio_id)
        if fetch is None:
            # Chunks of a file this node does not need (a subscription left over in the
            # persistent session from before a crash): drop it and the subscription.
            now = time.monotonic()
            if now - self._unwanted_audio.get(audio_id, 0.0) > 1.0:
                self._unwanted_audio[audio_id] = now
                self._spawn(self.link.unsubscribe(self.topics.audio_filter(audio_id)), "unsubscribe")
            return
        if fetch.transfer.add(index, payload):
            fetch.progress.set()

    async def _ready(self, job: Job) -> None:
        """The audio is here and verified: measure it, then queue the job."""
        audio = job.cmd.audio
        cached = self.cache.get(audio.id)
        if cached is None:
            self._need_audio(job)
            return
        analysis = self.analyzer.known(audio.id)
        if analysis is None:
            meta = self.cache.meta(audio.id)
            if meta and "analysis" in meta:
                with contextlib.suppress(KeyError, ValueError, TypeError):
                    analysis = Analysis.from_json(meta["analysis"])
                    self.analyzer.remember(audio.id, analysis)
        if analysis is None:
            try:
                analysis = await self.analyzer.get(audio.id, cached.path)
            except PlayerError as exc:
                if self._active(job):
                    self._finish(job, "failed", reason=str(exc))
                return
            self.cache.set_meta(audio.id, {"analysis": analysis.to_json()})
        if not self._active(job):
            return  # stopped meanwhile
        job.analysis = analysis
        job.item = PlayItem(
            broadcast_id=job.bid,
            audio_id=audio.id,
            path=cached.path,
            start_at=job.cmd.start_at,
            duration_s=analysis.duration_s,
            volume=self.volume,
            tier=job.cmd.tier,
            title=job.cmd.title,
            speaker_id=self.id,
        )
        self.cache.pin(audio.id)
        job.pinned = True
        self._queue.append(job)
        self._event("scheduled", job, started_at=job.cmd.start_at)
        self._wake.set()

    # --------------------------------------------------------------------- scheduling

    def _effective_volume(self, job: Job) -> int:
        volume = job.cmd.volume if job.cmd.volume is not None else self.volume
        quiet = self.config.volume.quiet_hours
        if quiet is not None and job.cmd.tier != "emergency":
            tz = zoneinfo.ZoneInfo(self.config.volume.timezone)
            local = dt.datetime.fromtimestamp(self.controller_now(), tz).time()
            if quiet.contains(local):
                volume = min(volume, quiet.volume)
        return volume

    def _next_candidate(self) -> Job | None:
        """The job that will start next if nothing else arrives."""
        current = self._current
        pool = self._queue
        if current is not None:
            if current.cmd.tier == "emergency":
                return None
            pool = [j for j in pool if j.cmd.tier == "emergency"]
        if not pool:
            return None
        now = self.controller_now()
        due = [j for j in pool if j.cmd.start_at <= now]
        if due:
            return min(due, key=lambda j: (-j.rank, j.cmd.start_at, j.seq))
        return min(pool, key=lambda j: (j.cmd.start_at, -j.rank, j.seq))

    def _ensure_prepared(self, job: Job) -> None:
        if job.prepare_task is None and job.item is not None:
            job.prepare_task = self._spawn(self._prepare(job), f"prepare-{job.bid}")

    async def _prepare(self, job: Job) -> None:
        await self.amp.ensure_on()
        assert job.item is not None
        job.item.volume = self._effective_volume(job)
        await self.player.prepare(job.item)

    async def _scheduler(self) -> None:
        lead = max(self.config.player.prepare_lead_s, self.config.amplifier.lead_s)
        # Hand over to _start this close to the instant; it sleeps and spins the rest.
        handover = 0.02
        while True:
            self._wake.clear()
            now = self.controller_now()
            for job in list(self._queue):
                if now > job.valid_until:
                    self._finish(job, "expired", reason="could not start before valid_until")
            candidate = self._next_candidate()
            timeout: float | None = None
            if candidate is not None:
                until_start = candidate.cmd.start_at - now
                if until_start <= lead:
                    self._ensure_prepared(candidate)
                if until_start <= handover:
                    await self._start(candidate)
                    continue
                timeout = until_start - lead if until_start > lead else until_start - handover
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _start(self, job: Job) -> None:
        current = self._current
        if current is not None:
            # Only an emergency is ever started over something else: cut it now.
            current.cut_reason = "preempted"
            current.cut_detail = f"preempted by {job.bid} ({job.cmd.tier})"
            if current.play_task is not None:
                current.play_task.cancel()
                await asyncio.wait([current.play_task])
        if job not in self._queue or not self._active(job):
            return
        self._queue.remove(job)
        self._current = job
        self._ensure_prepared(job)
        assert job.prepare_task is not None and job.item is not None
        await asyncio.wait([job.prepare_task])  # its outcome is read below, never raised here
        error: str | None = None
        if job.prepare_task.cancelled():
            error = job.cut_detail or "stopped while preparing"
        elif job.prepare_task.exception() is not None:
            error = str(job.prepare_task.exception())
        if error is not None or not self._active(job):
            self._current = None
            if self._active(job):
                self._finish(job, "failed", reason=error)
            self._spawn(self.player.release(job.item), f"release-{job.bid}")
            if not self._queue:
                self.amp.idle()
            return
        # On the dot: wake a few ms early (asyncio timers are coarse) and spin to the instant.
        target = self._to_mono(job.cmd.start_at)
        delay = target - self.clock.monotonic()
        if delay > _SPIN_S:
            await asyncio.sleep(delay - _SPIN_S)
        if self.spin:
            while self.clock.monotonic() < target:
                pass
        if not self._active(job):  # stopped during the last milliseconds
            self._current = None
            self._spawn(self.player.release(job.item), f"release-{job.bid}")
            return
        job.started_mono = self.clock.monotonic()
        job.item.started_controller = self.controller_now()
        self._event("playing", job, started_at=job.item.started_controller)
        job.play_task = self._spawn(self._play(job), f"play-{job.bid}")

    async def _play(self, job: Job) -> None:
        assert job.item is not None and job.analysis is not None
        item = job.item
        state, reason = "done", None
        try:
            await self.player.play(item)
        except asyncio.CancelledError:
            state, reason = job.cut_reason or "stopped", job.cut_detail
        except PlayerError as exc:
            state, reason = "failed", str(exc)
            self.last_error = str(exc)
        except Exception as exc:  # a player bug must not kill the node
            state, reason = "failed", f"player error: {exc!r}"
            self.last_error = reason
            _LOGGER.exception("%s: player failed", self.id)
        played = max(0.0, min(item.duration_s, self.clock.monotonic() - (job.started_mono or 0.0)))
        rms = job.analysis.rms_dbfs(played, item.volume)
        with contextlib.suppress(Exception):
            await asyncio.shield(self.player.release(item))
        entry = item.extra.get("timeline")
        if entry is not None:
            entry.update(end=time.time(), seconds_played=round(played, 3), rms_dbfs=rms, outcome=state)
        if self._current is job:
            self._current = None
        if self._active(job):
            self._finish(job, state, seconds_played=round(played, 3), rms_dbfs=rms, reason=reason)
        if self._current is None and not self._queue:
            self.amp.idle()
        self._wake.set()

    # -------------------------------------------------------------------- stop, volume

    def _cut(self, job: Job, state: str, detail: str | None) -> None:
        if job is self._current and job.play_task is not None:
            job.cut_reason, job.cut_detail = state, detail
            job.play_task.cancel()
            return
        if job.prepare_task is not None and not job.prepare_task.done():
            job.prepare_task.cancel()
        if job.item is not None and job.prepare_task is not None and job is not self._current:
            self._spawn(self.player.release(job.item), f"release-{job.bid}")
        if self._active(job):
            self._finish(job, state, reason=detail, seconds_played=0.0)
        fetch = self._fetches.get(job.cmd.audio.id)
        if fetch is not None:
            fetch.jobs.discard(job.bid)
            if not any(b in self._jobs for b in fetch.jobs) and fetch.task is not None:
                fetch.task.cancel()  # nobody needs the file any more: stop asking for it

    def _cut_all(self, state: str, detail: str | None) -> None:
        for job in list(self._jobs.values()):
            self._cut(job, state, detail)

    def _on_stop(self, cmd: StopCommand) -> None:
        reason = cmd.reason or None
        if cmd.broadcast_id is None:
            self._cut_all("stopped", reason)
            return
        job = self._jobs.get(cmd.broadcast_id)
        if job is not None:
            self._cut(job, "stopped", reason)

    def _on_volume(self, cmd: VolumeCommand) -> None:
        self.volume = cmd.volume
        self._save_state()
        mixer = self.config.volume.mixer_command
        if mixer:
            self._spawn(self._run_mixer(mixer.replace("{volume}", str(cmd.volume))), "mixer")

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
            _LOGGER.warning("%s: cannot save state: %s", self.id, exc)

    # ------------------------------------------------------------------------ health

    def health(self, readings: Any = None) -> Health:
        current = self._current
        return Health(
            ts=self.controller_now(),
            uptime_s=round(self.clock.monotonic() - self.started_mono, 3),
            volume=self.volume,
            amplifier_on=self.amp.is_on,
            playing=current.bid if current else None,
            cache_bytes=self.cache.total_bytes,
            clock_offset_ms=None if self.wall_offset_s is None else round(self.wall_offset_s * 1000, 3),
            last_error=self.last_error or self.link.last_error or self.amp.last_error,
            queue=tuple(j.bid for j in sorted(self._jobs.values(), key=lambda j: j.seq) if j is not current),
            malformed_count=self.malformed_count,
            cpu_temp_c=getattr(readings, "cpu_temp_c", None),
            disk_free_bytes=getattr(readings, "disk_free_bytes", None),
            signal_dbm=getattr(readings, "signal_dbm", None),
            clock_rtt_ms=None if self.sync_rtt_s is None else round(self.sync_rtt_s * 1000, 3),
            reconnects=self.link.reconnects,
            zone=self.zone,
            player=self.player.name,
            agent_version=__version__,
        )

    async def _health_loop(self) -> None:
        interval = self.config.health.interval_s
        await self.link.connected.wait()
        if self.health_jitter:
            # Thousands of simulated nodes started together must not report in lockstep.
            await asyncio.sleep(random.uniform(0, interval))
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            readings = await self.host.read()
            health = self.health(readings)
            self.link.publish(
                self.topics.health(self.id),
                health.encode(),
                qos=1,
                expiry_s=max(10, math.ceil(2 * interval)),
                coalesce="health",
            )
            self.health_sent += 1
            # A fixed rate, not "interval after the last one": the period does not drift.
            due = max(due + interval, loop.time())
            await asyncio.sleep(due - loop.time())

    # -------------------------------------------------------------------------- views

    def snapshot(self) -> dict[str, Any]:
        """State for tests and the simulator's callers."""
        return {
            "id": self.id,
            "zone": self.zone,
            "connected": self.link.connected.is_set(),
            "synced": self.synced,
            "clock_offset_ms": None if self.wall_offset_s is None else self.wall_offset_s * 1000,
            "volume": self.volume,
            "playing": self._current.bid if self._current else None,
            "jobs": {b: j.state for b, j in self._jobs.items()},
            "known": {b: j.state for b, j in self._known.items()},
            "cache": self.cache.ids(),
            "malformed": self.malformed_count,
            "reconnects": self.link.reconnects,
            "events": dict(self.events_sent),
        }


async def run_agent(config: AgentConfig, *, agent: Agent | None = None) -> None:
    """``speaker-agent run``: one agent until SIGINT/SIGTERM, then a clean shutdown.

    Raises :class:`AgentCrashed` when the agent dies on its own (the caller exits non-zero).
    """
    import signal

    agent = agent or Agent(config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    runner = asyncio.create_task(agent.run())
    _LOGGER.info("agent %s (zone %s) -> %s", agent.id, agent.zone, agent.link.url.redacted())
    stopper = asyncio.create_task(stop.wait(), name=f"{agent.id}-signals")
    await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if runner.done():
        stopper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopper
        await agent.amp.close()
        runner.result()  # raises AgentCrashed
        raise AgentCrashed("the agent stopped by itself")
    _LOGGER.info("agent %s stopping", agent.id)
    await agent.stop()
    runner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runner

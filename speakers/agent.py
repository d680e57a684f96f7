"""The speaker node agent: one loudspeaker cluster, as an asyncio object.

Many :class:`Agent` instances can share one event loop (the simulator); the real agent is the
same code with one instance (``speaker-agent run``). The wire protocol is ``docs/protocol.md``.

The agent wires its parts and runs their loops:

* :class:`speakers.mqtt.Link` — one persistent MQTT 5 session (TLS, retained birth and will,
  subscriptions renewed at every reconnect, an outbox that waits out outages);
* :class:`speakers.clocksync.ClockSync` — the controller's clock, measured by request/answer;
* :class:`speakers.commands.Commands` — play, stop and volume commands;
* :class:`speakers.fetcher.AudioFetcher` — audio chunk by chunk, verified, into the cache;
* :class:`speakers.playout.Playout` — jobs, tiers, preemption, playback on the dot, receipts;
* :class:`speakers.lookahead.LookaheadKeeper` — scheduled slots held ahead and aired offline;
* :class:`speakers.receipts.Receipts` — receipts, kept on disk when they must survive a restart;
* health telemetry every N seconds (4G signal, power, output level).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import random
import ssl
from pathlib import Path
from typing import Any

from speakers import __version__
from speakers.amplifier import Amplifier, AmplifierControl, make_amplifier
from speakers.cache import AudioCache, ChunkPool
from speakers.clocksync import Clock, ClockSync, SkewedClock, SystemClock
from speakers.commands import Commands
from speakers.config import AgentConfig
from speakers.fetcher import AudioFetcher
from speakers.health import HostProbe, Source
from speakers.lookahead import LookaheadKeeper
from speakers.mqtt import Incoming, Link, Outgoing
from speakers.player import Analyzer, Player, make_player
from speakers.playout import TERMINAL_STATES, Job, Playout
from speakers.protocol import (
    TIME_EXPIRY_S,
    AudioRef,
    Event,
    Health,
    ProtocolError,
    Status,
    TimeRequest,
    Topics,
)
from speakers.receipts import Receipts
from speakers.stream import StreamFrames

_LOGGER = logging.getLogger(__name__)

__all__ = [
    "TERMINAL_STATES",
    "Agent",
    "AgentCrashed",
    "Clock",
    "Job",
    "SkewedClock",
    "SystemClock",
]


class AgentCrashed(RuntimeError):
    """One of the agent's runners died: the process must end non-zero (systemd restarts it)."""


class Agent:
    """One speaker node. ``await run()`` until ``await stop()`` (clean) or ``kill()`` (power cut).

    Everything the simulator varies is injectable: ``clock`` (skew), ``player``, ``amplifier``,
    a shared ``analyzer`` and ``chunk_pool`` (one decode and one copy of each chunk for thousands
    of nodes), ``cache_pool`` (hard-linked cache blobs), ``latency_s`` (slow link), a
    ``connect_gate`` semaphore (bounded concurrent connects) and a shared ``tls_context`` (one
    for thousands of nodes, instead of one per node from the config's ``ca_pem``).
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
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.config = config
        self.id = config.id
        self.zone = config.zone
        self.topics = Topics(config.mqtt.prefix)
        self.clock: Clock = clock or SystemClock()
        self.player: Player = player or make_player(
            config.player.kind,
            output_dir=config.player.output_dir,
            command=config.player.command,
            device=config.audio.device,
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
        power = config.power
        self.host = host_probe or HostProbe(
            config.cache_dir(),
            signal_command=config.health.signal_command,
            signal_file=config.health.signal_file,
            voltage=Source(power.voltage_file, power.voltage_command),
            voltage_scale=power.voltage_scale,
            backup=Source(power.backup_file, power.backup_command),
            backup_invert=power.backup_invert,
        )
        self.health_jitter = health_jitter
        self.link = Link(
            self.id,
            config.broker_url(),
            on_message=self._on_message,
            on_connect=self._on_connect,
            on_disconnect=self._on_disconnect,
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
            tls_context=tls_context or config.tls_context(),
        )
        for topic_filter in self.topics.node_filters(self.id, self.zone):
            if config.lookahead.enabled or topic_filter != self.topics.lookahead(self.id):
                self.link.want(topic_filter)
        self.sync = ClockSync(self.id, self.clock, config.time_sync, self._send_time_request)
        self.receipts = Receipts(
            self.link, self.topics.events(self.id), config.cache_dir() / "receipts-outbox.jsonl"
        )
        self.receipts.resend_saved()  # first: what the previous run could not send goes out first
        self.fetcher = AudioFetcher(
            self.id,
            self.link,
            self.topics,
            self.cache,
            config.audio,
            now=self.sync.controller_now,
            ask=self._ask_for_audio,
            spawn=self._spawn,
            chunk_pool=chunk_pool,
        )
        self.streams = StreamFrames(self.id, self.link, self.topics, self.clock)
        self.playout = Playout(
            self.id,
            config,
            sync=self.sync,
            player=self.player,
            amp=self.amp,
            analyzer=self.analyzer,
            cache=self.cache,
            fetcher=self.fetcher,
            receipts=self.receipts,
            volume=lambda: self.commands.volume,
            connected=self.link.connected.is_set,
            refetch=lambda job: self.commands.need_audio(job),
            spawn=self._spawn,
            spin=spin,
            streams=self.streams,
        )
        self.lookahead = LookaheadKeeper(
            self.id,
            config,
            sync=self.sync,
            link=self.link,
            cache=self.cache,
            fetcher=self.fetcher,
            playout=self.playout,
            spawn=self._spawn,
        )
        self.commands = Commands(
            self.id,
            config,
            sync=self.sync,
            playout=self.playout,
            fetcher=self.fetcher,
            cache=self.cache,
            slots=self.lookahead,
            receipts=self.receipts,
            connected=self.link.connected.is_set,
            spawn=self._spawn,
        )
        self.started_mono = self.clock.monotonic()
        self.last_error: str | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopping = False
        self.health_sent = 0

    # ------------------------------------------------------------------ views of the parts

    @property
    def connected(self) -> asyncio.Event:
        return self.link.connected

    @property
    def volume(self) -> int:
        return self.commands.volume

    @property
    def synced(self) -> bool:
        return self.sync.synced

    @property
    def wall_offset_s(self) -> float | None:
        return self.sync.wall_offset_s

    @property
    def sync_rtt_s(self) -> float | None:
        return self.sync.rtt_s

    @property
    def syncs(self) -> int:
        return self.sync.syncs

    @property
    def events_sent(self) -> collections.Counter[str]:
        return self.receipts.sent

    @property
    def malformed_count(self) -> int:
        return self.commands.malformed_count

    def controller_now(self) -> float:
        """Controller time now (the node's own wall clock until the first sync)."""
        return self.sync.controller_now()

    def alive(self) -> bool:
        """All of the agent's loops are running (the service watchdog pings only then)."""
        return bool(self._tasks) and not any(t.done() for t in self._tasks)

    # ------------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Connect and serve until stopped."""
        self._tasks = [
            asyncio.create_task(self.link.run(), name=f"{self.id}-link"),
            asyncio.create_task(self._guarded(self.playout.run), name=f"{self.id}-scheduler"),
            asyncio.create_task(
                self._guarded(lambda: self.sync.run(self.link.connected)), name=f"{self.id}-timesync"
            ),
            asyncio.create_task(self._guarded(self._health_loop), name=f"{self.id}-health"),
        ]
        if self.config.lookahead.enabled:
            self._tasks.append(
                asyncio.create_task(self._guarded(self.lookahead.run), name=f"{self.id}-lookahead")
            )
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
                _LOGGER.exception(
                    "%s: %s failed; restarting it", self.id, getattr(loop_fn, "__name__", "loop")
                )
                await asyncio.sleep(1.0)

    async def stop(self, timeout: float = 5.0) -> None:
        """Clean shutdown: stop playback (``stopped``), send ``online: false``, disconnect."""
        if self._stopping:
            return
        self._stopping = True
        self.playout.cut_all("stopped", "agent stopping")
        for job in list(self.playout.jobs.values()):
            if job.play_task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await job.play_task
        self.fetcher.cancel_all()
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
        self.playout.silence()
        self.link.kill()
        for job in list(self.playout.jobs.values()):
            for task in (job.play_task, job.prepare_task):
                if task is not None:
                    task.cancel()
        self.fetcher.cancel_all()
        for task in self._tasks:
            if not task.get_name().endswith("-link"):
                task.cancel()

    def _birth(self) -> Outgoing:
        status = Status(online=True, ts=self.controller_now(), zone=self.zone, agent_version=__version__)
        return Outgoing(self.topics.status(self.id), status.encode(), qos=1, retain=True)

    async def _on_connect(self, session_present: bool) -> None:
        _LOGGER.info("%s: connected (session %s)", self.id, "resumed" if session_present else "new")
        self.sync.resync.set()  # a reconnect may mean a new path: measure the clock again
        if self.config.lookahead.enabled:
            self.lookahead.refresh()  # fetch what could not be fetched while offline

    def _on_disconnect(self) -> None:
        self.lookahead.wake.set()  # slots may now be due offline

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

    # ----------------------------------------------------------------------- outgoing

    def _send_time_request(self, request: TimeRequest, on_send: Any) -> None:
        self.link.publish(
            self.topics.time_request(self.id),
            request.encode(),
            qos=0,
            expiry_s=TIME_EXPIRY_S,
            on_send=on_send,
        )

    def _ask_for_audio(self, ref: AudioRef, missing: tuple[int, ...], request: dict[str, Any]) -> None:
        # need_audio is a request, not a state of the broadcast: it is never tracked or saved.
        event = Event(
            state="need_audio", ts=self.controller_now(), audio_id=ref.id, missing=missing, **request
        )
        self.receipts.send(event)

    def _event(self, state: str, **fields: Any) -> None:
        """A receipt about no broadcast in particular (``error``)."""
        self.commands.event(state, **fields)

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
            self.fetcher.on_chunk(ident, int(extra or 0), msg.payload)
        elif kind == "stream":
            self.streams.on_frame(ident, msg.payload)
        elif kind == "lookahead":
            if ident == self.id and self.config.lookahead.enabled:
                try:
                    self.lookahead.on_message(msg.payload)
                except ProtocolError as exc:
                    self.commands.malformed(msg.topic, msg.payload, exc)
        elif kind in ("cmd", "zone_cmd"):
            self.commands.on_message(msg.payload, kind == "zone_cmd", msg.expiry_s)

    # ------------------------------------------------------------------------ health

    def health(self, readings: Any = None) -> Health:
        current = self.playout.current
        return Health(
            ts=self.controller_now(),
            uptime_s=round(self.clock.monotonic() - self.started_mono, 3),
            volume=self.volume,
            amplifier_on=self.amp.is_on,
            playing=(current.broadcast_id or f"slot:{current.slot}") if current else None,
            cache_bytes=self.cache.total_bytes,
            clock_offset_ms=None if self.wall_offset_s is None else round(self.wall_offset_s * 1000, 3),
            last_error=self.last_error
            or self.commands.malformed_error
            or self.link.last_error
            or self.amp.last_error
            or self.playout.last_error
            or self.commands.last_error
            or self.fetcher.last_error,
            queue=self.playout.queued_ids(),
            malformed_count=self.malformed_count,
            cpu_temp_c=getattr(readings, "cpu_temp_c", None),
            disk_free_bytes=getattr(readings, "disk_free_bytes", None),
            signal_dbm=getattr(readings, "signal_dbm", None),
            clock_rtt_ms=None if self.sync_rtt_s is None else round(self.sync_rtt_s * 1000, 3),
            reconnects=self.link.reconnects,
            zone=self.zone,
            player=self.player.name,
            agent_version=__version__,
            supply_v=getattr(readings, "supply_v", None),
            on_backup=getattr(readings, "on_backup", None),
            output_dbfs=self.playout.output_dbfs(),
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
        current = self.playout.current
        return {
            "id": self.id,
            "zone": self.zone,
            "connected": self.link.connected.is_set(),
            "synced": self.synced,
            "clock_offset_ms": None if self.wall_offset_s is None else self.wall_offset_s * 1000,
            "volume": self.volume,
            "playing": (current.broadcast_id or current.key) if current else None,
            "jobs": {b: j.state for b, j in self.playout.jobs.items()},
            "known": {b: j.state for b, j in self.playout.known.items()},
            "cache": self.cache.ids(),
            "malformed": self.malformed_count,
            "reconnects": self.link.reconnects,
            "events": dict(self.events_sent),
            "lookahead": self.lookahead.snapshot(),
        }

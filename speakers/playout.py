"""What a node plays and when: jobs from ``received`` to a final receipt (docs/protocol.md 4.9, 7).

A :class:`Job` is one broadcast on this node (or one slot it airs on its own, section 11). The
:class:`Playout` keeps them, measures their audio, queues them, and starts each on the dot of its
``start_at`` (controller time, on the monotonic clock: it wakes a few ms early and spins). Tiers:
an emergency cuts whatever non-emergency item plays (``preempted``), priority items go before
queued normal ones, two items never overlap. Every change of a job is a receipt.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import logging
import time
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from speakers import streamjobs
from speakers.amplifier import AmplifierControl
from speakers.cache import AudioCache
from speakers.clocksync import ClockSync
from speakers.config import AgentConfig
from speakers.fetcher import AudioFetcher
from speakers.player import Analysis, Analyzer, Player, PlayerError, PlayItem
from speakers.protocol import TIER_RANK, Event, PlayCommand, StreamCommand
from speakers.receipts import Receipts
from speakers.stream import Progress, StreamEnded, StreamFrames

_LOGGER = logging.getLogger(__name__)

# Wake this long before the start instant and spin to the exact moment: asyncio timers are
# only millisecond-accurate, and a few spinning milliseconds cost nothing next to an echo.
_SPIN_S = 0.003
# Hand a job over to _start this close to its instant; _start sleeps and spins the rest.
_HANDOVER_S = 0.02
# Keep this many finished broadcasts to recognise duplicates (QoS 1 redelivery, zone + node).
KNOWN_BROADCASTS = 500
TERMINAL_STATES = frozenset({"done", "failed", "preempted", "stopped", "expired"})


@dataclass
class Job:
    """One broadcast on this node, from ``received`` to a terminal state.

    ``offline``: a slot the node airs on its own (no play command; ``cmd`` is made from the
    slot and its broadcast id is the internal key ``slot:<key>``, never sent). ``aliases``:
    broadcast ids of play commands for the same slot, answered with copies of its receipts.
    """

    cmd: PlayCommand | StreamCommand
    seq: int
    valid_until: float
    via_zone: bool = False
    offline: bool = False
    state: str = "received"
    item: PlayItem | None = None
    analysis: Analysis | None = None
    prepare_task: asyncio.Task[None] | None = None
    play_task: asyncio.Task[None] | None = None
    started_mono: float | None = None
    started_at: float | None = None  # controller time playback really started
    cut_reason: str | None = None
    cut_detail: str | None = None
    last_event: Event | None = None
    pinned: bool = False
    aliases: list[str] = field(default_factory=list)
    progress: Progress | None = None  # a stream job (section 12): how far it got

    @property
    def stream(self) -> StreamCommand | None:
        return self.cmd if isinstance(self.cmd, StreamCommand) else None

    @property
    def audio_id(self) -> str | None:
        return None if isinstance(self.cmd, StreamCommand) else self.cmd.audio.id

    @property
    def key(self) -> str:
        return self.cmd.broadcast_id

    @property
    def broadcast_id(self) -> str | None:
        return None if self.offline else self.cmd.broadcast_id

    @property
    def slot(self) -> str | None:
        return self.cmd.slot

    @property
    def rank(self) -> int:
        return TIER_RANK.get(self.cmd.tier, 0)


class PlayoutWatcher(Protocol):
    """Told about every receipt of a job, and asked before a job starts (section 11)."""

    def may_start(self, job: Job) -> bool: ...

    def on_receipt(self, job: Job, event: Event) -> None: ...


class Playout:
    def __init__(
        self,
        name: str,
        config: AgentConfig,
        *,
        sync: ClockSync,
        player: Player,
        amp: AmplifierControl,
        analyzer: Analyzer,
        cache: AudioCache,
        fetcher: AudioFetcher,
        receipts: Receipts,
        volume: Callable[[], int],
        connected: Callable[[], bool],
        refetch: Callable[[Job], None],
        spawn: Callable[[Any, str], asyncio.Task[Any]],
        spin: bool = True,
        streams: StreamFrames | None = None,
    ) -> None:
        self.name = name
        self.streams = streams
        self.config = config
        self.sync = sync
        self.clock = sync.clock
        self.player = player
        self.amp = amp
        self.analyzer = analyzer
        self.cache = cache
        self.fetcher = fetcher
        self.receipts = receipts
        self.volume = volume
        self.connected = connected
        self.refetch = refetch
        self.spawn = spawn
        self.spin = spin
        self.last_error: str | None = None
        self._watchers: list[PlayoutWatcher] = []
        self._seq = 0
        self.jobs: dict[str, Job] = {}
        self.known: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self.queue: list[Job] = []
        self.current: Job | None = None
        self.wake = asyncio.Event()
        self._silent = False

    def silence(self) -> None:
        """From now on nothing is said or recorded (the agent is being killed: a power cut)."""
        self._silent = True

    def watch(self, watcher: PlayoutWatcher) -> None:
        self._watchers.append(watcher)

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # ---------------------------------------------------------------------------- receipts

    def event(
        self, state: str, job: Job, *, track: bool = True, persist: bool | None = None, **fields: Any
    ) -> Event:
        """Send a receipt about ``job`` (and a copy under each of its aliases)."""
        event = Event(
            state=state,  # type: ignore[arg-type]
            ts=self.sync.controller_now(),
            broadcast_id=job.broadcast_id,
            audio_id=job.audio_id,
            tier=job.cmd.tier,
            slot=job.slot,
            offline=job.offline,
            **fields,
        )
        if track:
            job.state = state
            job.last_event = event
        if self._silent:
            return event
        if persist is None:
            # Receipts of offline airings, and anything said while the broker is away, must
            # survive a restart of the agent before the broker is back.
            persist = state != "need_audio" and (job.offline or not self.connected())
        self.receipts.send(event, persist=persist)
        for alias in job.aliases:
            self.receipts.send(dataclasses.replace(event, broadcast_id=alias), persist=persist, count=False)
        for watcher in self._watchers:
            watcher.on_receipt(job, event)
        return event

    # ------------------------------------------------------------------------------- jobs

    def active(self, job: Job) -> bool:
        """True while ``job`` is the live job for its key (not finished or replaced)."""
        return self.jobs.get(job.key) is job

    def find(self, broadcast_id: str) -> Job | None:
        """The live job answering to ``broadcast_id`` (its own id or an alias)."""
        job = self.jobs.get(broadcast_id)
        if job is not None:
            return job
        return next((j for j in self.jobs.values() if broadcast_id in j.aliases), None)

    def add(self, job: Job) -> bool:
        """Register a new job; False (after an ``expired`` receipt) when it is already too late."""
        self.jobs[job.key] = job
        now = self.sync.controller_now()
        if now > job.valid_until:
            late = now - job.cmd.start_at
            self.finish(job, "expired", reason=f"arrived {late:.1f} s after start_at; valid until passed")
            return False
        if not job.offline:
            self.event("received", job)
        return True

    def finish(self, job: Job, state: str, **fields: Any) -> None:
        """Terminal state: receipt, forget the job (remember it as known)."""
        if job.started_at is not None:
            fields.setdefault("started_at", job.started_at)
            fields.setdefault("finished_at", self.sync.controller_now())
        self.event(state, job, **fields)
        if self.active(job):
            del self.jobs[job.key]
        if job in self.queue:
            self.queue.remove(job)
        if job.pinned:
            self.cache.unpin(job.cmd.audio.id)
            job.pinned = False
        self.known[job.key] = job
        self.known.move_to_end(job.key)
        while len(self.known) > KNOWN_BROADCASTS:
            self.known.popitem(last=False)
        self.wake.set()

    def drop(self, job: Job, detail: str) -> None:
        """Forget a live job without any receipt (its id now means another item, or an offline
        airing gave way to the controller's play command)."""
        if self.jobs.get(job.key) is job:
            del self.jobs[job.key]
        if job in self.queue:
            self.queue.remove(job)
        job.cut_reason, job.cut_detail = "stopped", detail
        for task in (job.prepare_task, job.play_task):
            if task is not None and not task.done():
                task.cancel()
        if job.item is not None and job.prepare_task is not None and job is not self.current:
            self.spawn(self.player.release(job.item), f"release-{job.key}")
        if job.pinned:
            self.cache.unpin(job.cmd.audio.id)  # type: ignore[union-attr]
            job.pinned = False
        self._drop_source(job)
        self.wake.set()

    def cut(self, job: Job, state: str, detail: str | None) -> None:
        """Stop a job: at once if it plays (its player task ends it), else remove it."""
        if job is self.current and job.play_task is not None:
            job.cut_reason, job.cut_detail = state, detail
            job.play_task.cancel()
            return
        if job.prepare_task is not None and not job.prepare_task.done():
            job.prepare_task.cancel()
        if job.item is not None and job.prepare_task is not None and job is not self.current:
            self.spawn(self.player.release(job.item), f"release-{job.key}")
        if self.active(job):
            self.finish(job, state, reason=detail, seconds_played=0.0)
        self._drop_source(job)

    def _drop_source(self, job: Job) -> None:
        """The job no longer needs its audio: stop fetching its file, or receiving its stream."""
        stream = job.stream
        if stream is None:
            self.fetcher.drop(job.cmd.audio.id, job.key)  # type: ignore[union-attr]
        elif self.streams is not None:
            self.spawn(self.streams.release(stream.stream, job.key), f"release-stream-{job.key}")

    async def ready_stream(self, job: Job) -> None:
        """A stream job (section 12): receive its frames from now on, then queue it."""
        await streamjobs.ready(self, job)

    def cut_all(self, state: str, detail: str | None) -> None:
        for job in list(self.jobs.values()):
            self.cut(job, state, detail)

    async def ready(self, job: Job) -> None:
        """The audio is here and verified: measure it, then queue the job."""
        audio = job.cmd.audio
        cached = self.cache.get(audio.id)
        if cached is None:
            self.refetch(job)
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
                if self.active(job):
                    self.finish(job, "failed", reason=str(exc))
                return
            self.cache.set_meta(audio.id, {"analysis": analysis.to_json()})
        if not self.active(job):
            return  # stopped meanwhile
        job.analysis = analysis
        job.item = PlayItem(
            broadcast_id=job.key,
            audio_id=audio.id,
            path=cached.path,
            start_at=job.cmd.start_at,
            duration_s=analysis.duration_s,
            volume=self.volume(),
            tier=job.cmd.tier,
            title=job.cmd.title,
            speaker_id=self.name,
            slot=job.slot,
            offline=job.offline,
        )
        self.cache.pin(audio.id)
        job.pinned = True
        self.queue.append(job)
        if not job.offline:
            self.event("scheduled", job, started_at=job.cmd.start_at)
        self.wake.set()

    # ------------------------------------------------------------------------- scheduling

    def effective_volume(self, job: Job) -> int:
        volume = job.cmd.volume if job.cmd.volume is not None else self.volume()
        quiet = self.config.volume.quiet_hours
        if quiet is not None and job.cmd.tier != "emergency":
            tz = zoneinfo.ZoneInfo(self.config.volume.timezone)
            local = dt.datetime.fromtimestamp(self.sync.controller_now(), tz).time()
            if quiet.contains(local):
                volume = min(volume, quiet.volume)
        return volume

    def _next_candidate(self) -> Job | None:
        """The job that will start next if nothing else arrives."""
        current = self.current
        pool = self.queue
        if current is not None:
            if current.cmd.tier == "emergency":
                return None
            pool = [j for j in pool if j.cmd.tier == "emergency"]
        if not pool:
            return None
        now = self.sync.controller_now()
        due = [j for j in pool if j.cmd.start_at <= now]
        if due:
            return min(due, key=lambda j: (-j.rank, j.cmd.start_at, j.seq))
        return min(pool, key=lambda j: (j.cmd.start_at, -j.rank, j.seq))

    def _ensure_prepared(self, job: Job) -> None:
        if job.prepare_task is None and job.item is not None:
            job.prepare_task = self.spawn(self._prepare(job), f"prepare-{job.key}")

    async def _prepare(self, job: Job) -> None:
        await self.amp.ensure_on()
        assert job.item is not None
        job.item.volume = self.effective_volume(job)
        if job.stream is None:
            await self.player.prepare(job.item)

    async def run(self) -> None:
        """The scheduler: expire, prepare and start queued jobs, for ever."""
        lead = max(self.config.player.prepare_lead_s, self.config.amplifier.lead_s)
        while True:
            self.wake.clear()
            now = self.sync.controller_now()
            for job in list(self.queue):
                if now > job.valid_until:
                    self.finish(job, "expired", reason="could not start before valid_until")
            candidate = self._next_candidate()
            timeout: float | None = None
            if candidate is not None:
                until_start = candidate.cmd.start_at - now
                if until_start <= lead:
                    self._ensure_prepared(candidate)
                if until_start <= _HANDOVER_S:
                    await self._start(candidate)
                    continue
                timeout = until_start - lead if until_start > lead else until_start - _HANDOVER_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout)

    def _release_unstarted(self, job: Job) -> None:
        self.current = None
        assert job.item is not None
        self.spawn(self.player.release(job.item), f"release-{job.key}")

    async def _start(self, job: Job) -> None:
        if not all(w.may_start(job) for w in self._watchers):
            return  # a watcher took it back (an offline slot while the link is up)
        current = self.current
        if current is not None:
            # Only an emergency is ever started over something else: cut it now.
            current.cut_reason = "preempted"
            current.cut_detail = f"preempted by {job.broadcast_id or job.slot} ({job.cmd.tier})"
            if current.play_task is not None:
                current.play_task.cancel()
                await asyncio.wait([current.play_task])
        if job not in self.queue or not self.active(job):
            return
        self.queue.remove(job)
        self.current = job
        self._ensure_prepared(job)
        assert job.prepare_task is not None and job.item is not None
        await asyncio.wait([job.prepare_task])  # its outcome is read below, never raised here
        error: str | None = None
        if job.prepare_task.cancelled():
            error = job.cut_detail or "stopped while preparing"
        elif job.prepare_task.exception() is not None:
            error = str(job.prepare_task.exception())
        if error is not None or not self.active(job):
            self._release_unstarted(job)
            if self.active(job):
                self.finish(job, "failed", reason=error)
            if not self.queue:
                self.amp.idle()
            return
        # On the dot: wake a few ms early (asyncio timers are coarse) and spin to the instant.
        target = self.sync.to_mono(job.cmd.start_at)
        delay = target - self.clock.monotonic()
        if delay > _SPIN_S:
            await asyncio.sleep(delay - _SPIN_S)
        if self.spin:
            while self.clock.monotonic() < target:
                pass
        if not self.active(job):  # stopped during the last milliseconds
            self._release_unstarted(job)
            return
        job.started_mono = self.clock.monotonic()
        job.started_at = job.item.started_controller = self.sync.controller_now()
        self.event("playing", job, started_at=job.started_at)
        job.play_task = self.spawn(self._play(job), f"play-{job.key}")

    async def _play(self, job: Job) -> None:
        assert job.item is not None and (job.analysis is not None or job.progress is not None)
        item = job.item
        state, reason = "done", None
        try:
            if job.stream is not None:
                await streamjobs.play(self, job)
            else:
                await self.player.play(item)
        except asyncio.CancelledError:
            state, reason = job.cut_reason or "stopped", job.cut_detail
        except (PlayerError, StreamEnded, OSError) as exc:
            state, reason = "failed", str(exc)
            self.last_error = str(exc)
        except Exception as exc:  # a player bug must not kill the node
            state, reason = "failed", f"player error: {exc!r}"
            self.last_error = reason
            _LOGGER.exception("%s: player failed", self.name)
        played = max(0.0, min(item.duration_s, self.clock.monotonic() - (job.started_mono or 0.0)))
        if job.progress is not None:
            played = job.progress.written_s
            rms = streamjobs.overall_level(item)
            self._drop_source(job)
        else:
            assert job.analysis is not None
            rms = job.analysis.rms_dbfs(played, item.volume)
        with contextlib.suppress(Exception):
            await asyncio.shield(self.player.release(item))
        entry = item.extra.get("timeline")
        if entry is not None:
            entry.update(end=time.time(), seconds_played=round(played, 3), rms_dbfs=rms, outcome=state)
        if self.current is job:
            self.current = None
        if self.active(job):
            self.finish(job, state, seconds_played=round(played, 3), rms_dbfs=rms, reason=reason)
        if self.current is None and not self.queue:
            self.amp.idle()
        self.wake.set()

    # ------------------------------------------------------------------------------ views

    def output_dbfs(self) -> float | None:
        """RMS of the last second sent to the output while something plays (None when idle): the
        player's own measurement when it has one, else the file's level at the current position."""
        job = self.current
        if job is None or job.item is None or job.started_mono is None or job.play_task is None:
            return None
        sink = job.item.extra.get("sink")
        if sink is not None:
            level: float | None = sink.level()
            return level
        measure = getattr(self.player, "output_dbfs", None)
        if measure is not None:
            level: float | None = measure(job.item)
            return level
        if job.analysis is None:
            return None
        position = self.clock.monotonic() - job.started_mono
        return job.analysis.level_between(max(0.0, position - 1.0), position, job.item.volume)

    def queued_ids(self) -> tuple[str, ...]:
        current = self.current
        ordered = sorted(self.jobs.values(), key=lambda j: j.seq)
        return tuple(j.broadcast_id or f"slot:{j.slot}" for j in ordered if j is not current)

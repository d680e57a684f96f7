"""Many virtual clusters in one process on one event loop: the real agent with the null player.

The demo (``broadcaster serve --demo``), the tests and the benchmarks use it::

    sim = Simulator("mqtt://127.0.0.1:1883", count=9, zones=3, credentials=lambda sid: (sid, pw[sid]))
    sim.start_in_thread()          # returns once every node is connected
    sim.node_ids()                 # ['loa-01', ..., 'loa-09'], zones thon-1..thon-3
    sim.timeline("loa-01")         # what loa-01 (virtually) played, and when
    sim.kill("loa-02"); sim.revive("loa-02")
    sim.stop()

Over ``mqtts://`` the nodes share one TLS context that pins ``ca_pem`` (the CA of an enrolled
agent.yaml; None: the system's CAs). ``shard=(k, n)`` keeps every n-th node from the k-th, so n
simulator processes (``speaker-agent simulate --shard k/n``) share one fleet between them.
``player="file"`` makes each node write what it plays (files and live streams, as WAV) to
``player_dir/<id>/`` instead of keeping a timeline.

What it can inject: a per-node clock error (uniform in +-``clock_skew_s``, or given per node in
``clock_offsets``), dropped connections
(``drop_rate_per_min``: chance per node per minute of an abrupt TCP drop, after which the node
reconnects by itself), slow links (``latency_ms`` added before handling what arrives and before
publishing). Simulated nodes share what costs memory or CPU but changes nothing observable: one
decode per audio file, one copy of each verified chunk, hard-linked cache files, one reading of
the host's sensors.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from speakers.agent import Agent, SkewedClock
from speakers.cache import ChunkPool
from speakers.config import AgentConfig
from speakers.health import HostProbe
from speakers.mqtt import parse_mqtt_url
from speakers.player import Analyzer, FilePlayer, NullPlayer
from speakers.protocol import DEFAULT_PREFIX, valid_id
from speakers.tls import client_context

_LOGGER = logging.getLogger(__name__)

T = TypeVar("T")


class SimulatorError(RuntimeError):
    """The simulator could not start (broker unreachable, bad arguments)."""


def make_node_ids(count: int, id_prefix: str = "loa-") -> list[str]:
    width = max(2, len(str(count)))
    return [f"{id_prefix}{i:0{width}d}" for i in range(1, count + 1)]


def assign_zones(ids: list[str], zones: int | list[str]) -> dict[str, str | None]:
    """Contiguous blocks: 9 nodes in 3 zones -> loa-01..03 thon-1, 04..06 thon-2, 07..09 thon-3."""
    names = [f"thon-{i}" for i in range(1, zones + 1)] if isinstance(zones, int) else list(zones)
    if not names:
        return dict.fromkeys(ids)
    return {sid: names[i * len(names) // len(ids)] for i, sid in enumerate(ids)}


class Simulator:
    """N virtual clusters (see the module docstring). Usable from plain threads (``start_in_thread``)
    or from async code (``await start()`` / ``await aclose()``)."""

    def __init__(
        self,
        mqtt_url: str,
        count: int = 9,
        zones: int | list[str] = 3,
        *,
        prefix: str = DEFAULT_PREFIX,
        id_prefix: str = "loa-",
        credentials: Callable[[str], tuple[str, str]] | None = None,
        clock_skew_s: float = 0.0,
        health_interval_s: float = 30.0,
        cache_root: Path | None = None,
        nodes: Mapping[str, str | None] | None = None,
        drop_rate_per_min: float = 0.0,
        latency_ms: float = 0.0,
        seed: int | None = None,
        keepalive_s: int = 30,
        time_sync_interval_s: float = 300.0,
        time_sync_samples: int = 5,
        time_sync_timeout_s: float = 2.0,
        request_timeout_s: float = 3.0,
        max_requests: int = 10,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 10.0,
        connect_concurrency: int = 64,
        cache_max_mb: float = 256,
        max_late_s: float = 300.0,
        amplifier_idle_off_s: float = 5.0,
        clock_offsets: Mapping[str, float] | None = None,
        player: str = "null",
        player_dir: Path | None = None,
        ca_pem: str | None = None,
        shard: tuple[int, int] | None = None,
    ) -> None:
        """``player``: "null" (a timeline of what would play, the default) or "file" (each node
        writes what it plays to ``player_dir/<id>/``, as ``speaker-agent`` does with the file player)."""
        url = parse_mqtt_url(mqtt_url)  # fail early on a bad URL
        if ca_pem is not None and not url.tls:
            raise SimulatorError("ca_pem needs an mqtts:// URL")
        if player not in ("null", "file") or (player == "file" and player_dir is None):
            raise SimulatorError('player is "null" or "file" (with player_dir)')
        self.player = player
        self.player_dir = Path(player_dir) if player_dir is not None else None
        self.mqtt_url = mqtt_url
        self.ca_pem = ca_pem
        self._tls = client_context(ca_pem) if url.tls else None  # one context for every node
        self.prefix = prefix
        if nodes is not None:
            self._zones = dict(nodes)
        else:
            if count < 1:
                raise SimulatorError("count must be at least 1")
            self._zones = assign_zones(make_node_ids(count, id_prefix), zones)
        if shard is not None:
            index, total = shard
            if not 0 <= index < total:
                raise SimulatorError(f"shard {index}/{total}: use 0 <= k < n")
            self._zones = {sid: z for i, (sid, z) in enumerate(self._zones.items()) if i % total == index}
        for sid, zone in self._zones.items():
            if not valid_id(sid) or (zone is not None and not valid_id(zone)):
                raise SimulatorError(f"invalid speaker or zone id: {sid!r} / {zone!r}")
        self.credentials = credentials
        self.clock_skew_s = clock_skew_s
        self.health_interval_s = health_interval_s
        self.drop_rate_per_min = drop_rate_per_min
        self.latency_s = latency_ms / 1000.0
        self._rng = random.Random(seed)
        self._offsets = {sid: self._rng.uniform(-clock_skew_s, clock_skew_s) for sid in self._zones}
        self._offsets.update(clock_offsets or {})  # explicit per-node clock errors win
        self._own_cache = cache_root is None
        self.cache_root = (
            Path(cache_root) if cache_root is not None else Path(tempfile.mkdtemp(prefix="loa-sim-"))
        )
        self._settings = {
            "keepalive_s": keepalive_s,
            "time_sync_interval_s": time_sync_interval_s,
            "time_sync_samples": time_sync_samples,
            "time_sync_timeout_s": time_sync_timeout_s,
            "request_timeout_s": request_timeout_s,
            "max_requests": max_requests,
            "reconnect_min_s": reconnect_min_s,
            "reconnect_max_s": max(reconnect_max_s, reconnect_min_s),
            "cache_max_mb": cache_max_mb,
            "max_late_s": max_late_s,
            "amplifier_idle_off_s": amplifier_idle_off_s,
        }
        self.connect_concurrency = connect_concurrency
        self.timeline_entries: list[dict[str, Any]] = []
        self.agents: dict[str, Agent] = {}
        self._runners: dict[str, asyncio.Task[None]] = {}
        self._killed: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._shared: dict[str, Any] = {}
        self._background: list[asyncio.Task[None]] = []
        self.drops = 0

    # ------------------------------------------------------------------------- views

    def node_ids(self) -> list[str]:
        return list(self._zones)

    def zone_of(self, speaker_id: str) -> str | None:
        return self._zones[speaker_id]

    def zones(self) -> dict[str, str | None]:
        return dict(self._zones)

    def clock_offset_of(self, speaker_id: str) -> float:
        """The injected clock error of a node, seconds (its clock = true time + this)."""
        return self._offsets[speaker_id]

    def timeline(self, speaker_id: str | None = None) -> list[dict[str, Any]]:
        """What was (virtually) played: one dict per item, oldest first (see NullPlayer)."""
        entries = [dict(e) for e in list(self.timeline_entries)]
        if speaker_id is not None:
            entries = [e for e in entries if e["speaker_id"] == speaker_id]
        return entries

    @property
    def analyzer(self) -> Analyzer:
        """The decode-once cache shared by every simulated node (available after start)."""
        return self._shared["analyzer"]  # type: ignore[no-any-return]

    def agent(self, speaker_id: str) -> Agent:
        return self.agents[speaker_id]

    def connected_count(self) -> int:
        return sum(1 for a in self.agents.values() if a.connected.is_set())

    def stats(self) -> dict[str, Any]:
        events: dict[str, int] = {}
        for agent in self.agents.values():
            for state, n in agent.events_sent.items():
                events[state] = events.get(state, 0) + n
        return {
            "nodes": len(self._zones),
            "connected": self.connected_count(),
            "health_sent": sum(a.health_sent for a in self.agents.values()),
            "reconnects": sum(a.link.reconnects for a in self.agents.values()),
            "drops": self.drops,
            "events": events,
            "killed": sorted(self._killed),
        }

    # ---------------------------------------------------------------------- building

    def _config(self, speaker_id: str) -> AgentConfig:
        url = parse_mqtt_url(self.mqtt_url)
        if self.credentials is not None:
            user, password = self.credentials(speaker_id)
            url = url.with_credentials(user, password)
        s = self._settings
        auth = ""
        if url.username:
            from urllib.parse import quote

            auth = f"{quote(url.username, safe='')}:{quote(url.password or '', safe='')}@"
        return AgentConfig.model_validate(
            {
                "id": speaker_id,
                "zone": self._zones[speaker_id],
                "mqtt": {
                    "url": f"{'mqtts' if url.tls else 'mqtt'}://{auth}{url.host}:{url.port}",
                    "prefix": self.prefix,
                    "keepalive_s": s["keepalive_s"],
                    "reconnect_min_s": s["reconnect_min_s"],
                    "reconnect_max_s": s["reconnect_max_s"],
                },
                "player": {"kind": "null", "prepare_lead_s": 0.5, "max_late_s": s["max_late_s"]},
                "amplifier": {"kind": "none", "lead_s": 0.5, "idle_off_s": s["amplifier_idle_off_s"]},
                "audio": {
                    "cache_dir": str(self.cache_root / speaker_id),
                    "cache_max_mb": s["cache_max_mb"],
                    "request_timeout_s": s["request_timeout_s"],
                    "max_requests": s["max_requests"],
                },
                "time_sync": {
                    "samples": s["time_sync_samples"],
                    "interval_s": s["time_sync_interval_s"],
                    "timeout_s": s["time_sync_timeout_s"],
                },
                "health": {"interval_s": self.health_interval_s},
            }
        )

    def _make_agent(self, speaker_id: str) -> Agent:
        shared = self._shared
        if self.player == "file":
            assert self.player_dir is not None
            player: NullPlayer | FilePlayer = FilePlayer(self.player_dir / speaker_id)
        else:
            player = NullPlayer(self.timeline_entries)
        return Agent(
            self._config(speaker_id),
            player=player,
            clock=SkewedClock(self._offsets[speaker_id]),
            analyzer=shared["analyzer"],
            chunk_pool=shared["chunks"],
            cache_pool=self.cache_root / "_pool",
            latency_s=self.latency_s,
            connect_gate=shared["gate"],
            host_probe=shared["probe"],
            health_jitter=True,
            tls_context=self._tls,
        )

    def _launch(self, speaker_id: str) -> Agent:
        agent = self._make_agent(speaker_id)
        self.agents[speaker_id] = agent
        self._runners[speaker_id] = asyncio.create_task(agent.run(), name=f"sim-{speaker_id}")
        return agent

    # --------------------------------------------------------------------- async API

    async def start(self, timeout: float = 60.0) -> None:
        """Start every node on the running loop; return once all are connected."""
        self._loop = asyncio.get_running_loop()
        self._shared = {
            "analyzer": Analyzer(),
            "chunks": ChunkPool(),
            "gate": asyncio.Semaphore(self.connect_concurrency),
            "probe": HostProbe(self.cache_root),
        }
        self.cache_root.mkdir(parents=True, exist_ok=True)
        for speaker_id in self._zones:
            self._launch(speaker_id)
        if self.drop_rate_per_min > 0:
            self._background.append(asyncio.create_task(self._drop_loop()))
        try:
            await self.wait_connected(timeout)
        except SimulatorError:
            await self.aclose()
            raise

    async def wait_connected(self, timeout: float, speaker_ids: list[str] | None = None) -> None:
        ids = speaker_ids or [s for s in self._zones if s not in self._killed]
        try:
            await asyncio.wait_for(asyncio.gather(*(self.agents[s].connected.wait() for s in ids)), timeout)
        except TimeoutError:
            missing = [s for s in ids if not self.agents[s].connected.is_set()]
            errors = {self.agents[s].link.last_error for s in missing[:20]} - {None}
            raise SimulatorError(
                f"{len(missing)} of {len(ids)} simulated nodes did not connect within {timeout:.0f} s"
                + (f": {'; '.join(sorted(errors))}" if errors else "")
            ) from None

    async def _drop_loop(self) -> None:
        per_second = self.drop_rate_per_min / 60.0
        while True:
            await asyncio.sleep(1.0)
            for speaker_id, agent in self.agents.items():
                if speaker_id not in self._killed and self._rng.random() < per_second:
                    agent.link.drop()
                    self.drops += 1

    async def aclose(self) -> None:
        """Stop every node cleanly (each says ``online: false``); remove the temporary cache."""
        for task in self._background:
            task.cancel()
        await asyncio.gather(
            *(a.stop() for s, a in self.agents.items() if s not in self._killed), return_exceptions=True
        )
        for task in self._runners.values():
            task.cancel()
        await asyncio.gather(*self._runners.values(), return_exceptions=True)
        self._runners.clear()
        self._cleanup()

    async def akill(self, speaker_id: str) -> None:
        self._killed.add(speaker_id)
        self.agents[speaker_id].kill()
        runner = self._runners.pop(speaker_id, None)
        if runner is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(runner, 5.0)

    async def arevive(self, speaker_id: str, timeout: float = 30.0) -> None:
        if speaker_id not in self._killed:
            return
        self._killed.discard(speaker_id)
        self._launch(speaker_id)
        await self.wait_connected(timeout, [speaker_id])

    async def arestart(self, speaker_id: str, timeout: float = 30.0) -> None:
        """A clean restart of one node: it stops (``stopped`` receipts, ``online: false``), then a
        new agent with the same id, clock and disk cache connects."""
        agent = self.agents[speaker_id]
        await agent.stop()
        runner = self._runners.pop(speaker_id, None)
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner
        self._launch(speaker_id)
        await self.wait_connected(timeout, [speaker_id])

    # ------------------------------------------------------------------- thread API

    def start_in_thread(self, timeout: float = 60.0) -> None:
        """Run the simulator's own event loop in a daemon thread; return once every node is
        connected, or raise :class:`SimulatorError` after ``timeout``."""
        if self._thread is not None:
            raise SimulatorError("already started")
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        loop = asyncio.new_event_loop()
        self._loop = loop

        def runner() -> None:
            asyncio.set_event_loop(loop)

            async def main() -> None:
                try:
                    await self.start(timeout)
                except BaseException as exc:
                    ready.set_exception(exc)
                    return
                ready.set_result(None)

            loop.run_until_complete(main())
            if ready.exception() is None:
                loop.run_forever()
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=runner, name="loa-simulator", daemon=True)
        self._thread.start()
        try:
            ready.result(timeout + 30)
        except BaseException:
            self._thread.join(10)
            self._thread = None
            self._cleanup()
            raise

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the simulator's loop (from another thread) and return its result."""
        loop = self._require_loop()

        async def run() -> T:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), loop).result(30)

    def _run(self, coro: Any, timeout: float = 60.0) -> Any:
        loop = self._require_loop()
        if self._thread is None:
            raise SimulatorError("use the async methods when the simulator runs on your own loop")
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise SimulatorError("the simulator is not started")
        return self._loop

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every node cleanly and the loop thread; remove the temporary cache."""
        if self._thread is None:
            self._cleanup()
            return
        loop = self._require_loop()
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.aclose(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout)
        self._thread = None
        self._cleanup()

    def _cleanup(self) -> None:
        if self._own_cache:
            shutil.rmtree(self.cache_root, ignore_errors=True)

    def kill(self, speaker_id: str) -> None:
        """Abrupt death of one node (power cut): no goodbye, the broker publishes its last will."""
        self._run(self.akill(speaker_id))

    def revive(self, speaker_id: str, timeout: float = 30.0) -> None:
        """Restart a killed node (same id, clock and disk cache); returns once it is connected."""
        self._run(self.arevive(speaker_id, timeout), timeout + 5)

    def restart(self, speaker_id: str, timeout: float = 30.0) -> None:
        """Stop one node cleanly and start it again (an update, a reboot); returns once it is back."""
        self._run(self.arestart(speaker_id, timeout), timeout + 10)

    def disconnect(self, speaker_id: str) -> None:
        """Drop one node's connection (network failure); it reconnects by itself."""
        self.call(self.agents[speaker_id].link.drop)

    def snapshot(self, speaker_id: str) -> dict[str, Any]:
        return self.call(self.agents[speaker_id].snapshot)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.01) -> bool:
        """Poll ``predicate`` (called in the caller's thread) until true or ``timeout``."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            time.sleep(interval)
        return True

    def __enter__(self) -> Simulator:
        self.start_in_thread()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def run_simulator(sim: Simulator, report_every_s: float = 10.0) -> None:
    """``speaker-agent simulate``: run until SIGINT/SIGTERM, printing a status line now and then."""
    import signal

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    await sim.start()
    print(
        f"{len(sim.node_ids())} simulated clusters connected in {time.monotonic() - started:.1f} s",
        flush=True,
    )
    last_health, last_t = 0, time.monotonic()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), report_every_s)
        stats = sim.stats()
        now = time.monotonic()
        rate = (stats["health_sent"] - last_health) / max(1e-9, now - last_t)
        last_health, last_t = stats["health_sent"], now
        print(
            f"connected {stats['connected']}/{stats['nodes']}  health {rate:.1f}/s  "
            f"reconnects {stats['reconnects']}  drops {stats['drops']}  events {stats['events']}",
            flush=True,
        )
    await sim.aclose()

"""Shared set-up of the controller benchmarks (not a benchmark itself; never imports from tests/).

A mosquitto with one account per simulated cluster, the real controller services on it (scheduler
off: not measured here), and the simulator as separate ``speaker-agent simulate`` processes (each
a share of the clusters, ``--shard K/N``) so that their memory and CPU are not counted in the
controller's. ``Cpu`` reads the CPU time of each part from /proc.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from broadcaster.broadcasts import BroadcastsConfig  # noqa: E402
from broadcaster.broker import ManagedBroker  # noqa: E402
from broadcaster.fleet import FleetConfig  # noqa: E402
from broadcaster.models import Speaker, Zone  # noqa: E402
from broadcaster.services import Services, build_services  # noqa: E402
from broadcaster.settings import load_settings  # noqa: E402
from speakers.simulator import assign_zones, make_node_ids  # noqa: E402

PASSWORD_TEMPLATE = "pw-{id}"
_TICK = os.sysconf("SC_CLK_TCK")


def wait(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"timed out waiting for {what}")


def rss_mb(pid: int | None = None) -> float:
    """Resident set size from /proc (MiB)."""
    status = Path(f"/proc/{pid or os.getpid()}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14 and 15)


def children_cpu_s() -> float:
    """CPU seconds of the running children of this process's threads other than the main one (a
    pump's or conditioner's ffmpeg; mosquitto and an HLS maker are the main thread's)."""
    total = 0.0
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        if task.name == str(os.getpid()):
            continue
        try:  # a thread may end between listing and reading
            pids = (task / "children").read_text().split()
        except OSError:
            continue
        for pid in pids:
            try:
                total += cpu_s(int(pid))
            except OSError:
                continue
    return total


def skewed_commune(
    instance: Path, mqtt_port: int, nodes: int, skew_s: float, health_interval_s: float = 10
) -> tuple[Services, Any, list[str]]:
    """The real controller services (espeak-ng, no scheduler) on a broker at ``mqtt_port`` with
    ``nodes`` clusters in 3 zones, started, and a simulator of them whose clocks are spread evenly
    over -skew_s ... +skew_s (not started). Returns (services, simulator, node ids)."""
    from speakers.simulator import Simulator

    ids = make_node_ids(nodes)
    zones = assign_zones(ids, 3)
    offsets = {sid: -skew_s + 2 * skew_s * i / max(1, len(ids) - 1) for i, sid in enumerate(ids)}
    settings = load_settings(
        {"instance": instance, "mqtt_url": f"mqtt://127.0.0.1:{mqtt_port}", "tts": {"order": ["espeak-ng"]}},
        environ={},
    )
    services = build_services(settings, scheduler=False)
    with services.sessions.begin() as session:
        for zone in sorted(set(zones.values())):
            session.add(Zone(id=zone, name=zone))
        for sid in ids:
            session.add(Speaker(id=sid, name=sid, zone_id=zones[sid]))
    services.start()
    sim = Simulator(
        f"mqtt://127.0.0.1:{mqtt_port}",
        nodes=zones,
        clock_offsets=offsets,
        health_interval_s=health_interval_s,
    )
    return services, sim, ids


class Cpu:
    """CPU seconds used by named processes between ``start()`` and ``stop()``."""

    def __init__(self, parts: dict[str, Sequence[int]]) -> None:
        self.parts = parts
        self._t0 = 0.0
        self._before: dict[str, float] = {}
        self.used: dict[str, float] = {}
        self.wall = 0.0

    def _now(self) -> dict[str, float]:
        return {name: sum(cpu_s(pid) for pid in pids) for name, pids in self.parts.items()}

    def start(self) -> None:
        self._before = self._now()
        self._t0 = time.monotonic()

    def stop(self) -> None:
        self.wall = time.monotonic() - self._t0
        after = self._now()
        self.used = {name: after[name] - self._before[name] for name in self.parts}

    def line(self) -> str:
        cores = ", ".join(f"{name} {used:.1f} s ({used / self.wall:.0%})" for name, used in self.used.items())
        return f"CPU over {self.wall:.1f} s: {cores} (100% = one core)"


class PeakRss:
    """The largest RSS of a process, sampled every ``interval`` s in a thread; ``limit_mb`` ends
    the benchmark (SIGTERM to the process) before the kernel's OOM killer would."""

    def __init__(self, pid: int, interval: float = 0.1, limit_mb: float = 8192) -> None:
        self.pid = pid
        self.peak_mb = 0.0
        self.over = False
        self._stop = threading.Event()
        self._interval = interval
        self.limit_mb = limit_mb
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                rss = rss_mb(self.pid)
            except OSError:
                return
            self.peak_mb = max(self.peak_mb, rss)
            if rss > self.limit_mb and not self.over:
                self.over = True
                print(f"process {self.pid} is over {self.limit_mb:.0f} MiB: stopping it", flush=True)
                os.kill(self.pid, signal.SIGTERM)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join(5)
        return self.peak_mb


def median_spread(values: Iterable[float]) -> tuple[float, float]:
    """Median and spread ((max - min) / median) of a few runs."""
    ordered = sorted(values)
    mid = statistics.median(ordered)
    return mid, (ordered[-1] - ordered[0]) / mid if mid else 0.0


class Fleetbench:
    """``count`` clusters in ``zones`` zones; ``services(...)`` builds a controller on the broker."""

    def __init__(self, count: int, zones: int) -> None:
        self.count = count
        self.ids = make_node_ids(count)
        self.zone_of = assign_zones(self.ids, zones)
        self.zones = sorted({z for z in self.zone_of.values() if z}, key=lambda z: int(z.split("-")[1]))
        self.tmp = Path(tempfile.mkdtemp(prefix="loa-bench-"))
        self.tmp.chmod(0o755)  # the broker drops privileges to the mosquitto user
        self.broker = ManagedBroker(
            self.tmp / "broker",
            users={sid: PASSWORD_TEMPLATE.replace("{id}", sid) for sid in self.ids},
            node_zones=self.zone_of,
        )
        self.broker.start()
        self.sims: list[subprocess.Popen[bytes]] = []

    @property
    def sim(self) -> subprocess.Popen[bytes] | None:
        return self.sims[0] if self.sims else None

    def services(self, name: str, fleet: FleetConfig, broadcasts: BroadcastsConfig | None = None) -> Services:
        instance = self.tmp / name
        settings = load_settings(
            {
                "instance": instance,
                "mqtt_url": self.broker.controller_url,
                "tts": {"order": ["espeak-ng"]},
                "scheduling": {"schedules_dir": instance / "schedules"},
            },
            environ={},
        )
        services = build_services(settings, fleet_config=fleet, broadcasts_config=broadcasts, scheduler=False)
        with services.sessions.begin() as session:
            if session.get(Zone, self.zones[0]) is None:
                session.add_all([Zone(id=z, name=f"Thôn {z.split('-')[1]}") for z in self.zones])
                session.add_all(
                    [Speaker(id=sid, name=f"Cụm loa {sid}", zone_id=self.zone_of[sid]) for sid in self.ids]
                )
        return services

    def start_simulators(
        self, health_interval_s: float, procs: int = 1, extra: Sequence[str] = (), url: str | None = None
    ) -> list[subprocess.Popen[bytes]]:
        """The clusters in ``procs`` separate ``speaker-agent simulate`` processes."""
        for k in range(procs):
            self.sims.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "speakers",
                        "simulate",
                        "--mqtt-url",
                        url or f"mqtt://127.0.0.1:{self.broker.port}",
                        "--count",
                        str(self.count),
                        "--zones",
                        str(len(self.zones)),
                        "--password-template",
                        PASSWORD_TEMPLATE,
                        "--health-interval",
                        str(health_interval_s),
                        "--seed",
                        str(k + 1),
                        "--shard",
                        f"{k}/{procs}",
                        *extra,
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    cwd=ROOT,
                )  # fmt: skip
            )
        return self.sims

    def start_simulator(self, health_interval_s: float) -> None:
        """The simulator in one process of its own."""
        self.start_simulators(health_interval_s, 1)

    def settle(self, timeout: float = 180.0, idle: float = 0.05) -> float:
        """Wait until the simulator processes are idle (their first clock syncs, health and
        subscriptions done): less than ``idle`` CPU seconds per second. Returns the time waited."""
        t0 = time.monotonic()
        before = sum(cpu_s(pid) for pid in self.sim_pids())
        while time.monotonic() - t0 < timeout:
            time.sleep(1.0)
            now = sum(cpu_s(pid) for pid in self.sim_pids())
            if now - before < idle * len(self.sims):
                return time.monotonic() - t0
            before = now
        raise SystemExit(f"the simulators did not settle within {timeout:.0f} s")

    def sim_pids(self) -> list[int]:
        return [p.pid for p in self.sims]

    def stop_simulator(self) -> None:
        for sim in self.sims:
            sim.terminate()
        for sim in self.sims:
            try:
                sim.wait(60)
            except subprocess.TimeoutExpired:
                sim.kill()
                sim.wait()
        self.sims = []

    def close(self) -> None:
        self.stop_simulator()
        self.broker.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

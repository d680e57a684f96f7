"""Shared set-up of the controller benchmarks (not a benchmark itself).

A managed mosquitto with one account per simulated cluster, the real controller services on it
(scheduler off: not measured here), and the simulator as a separate process so its memory and CPU
are not counted in the controller's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from broadcaster.broker import ManagedBroker  # noqa: E402
from broadcaster.fleet import FleetConfig  # noqa: E402
from broadcaster.models import Speaker, Zone  # noqa: E402
from broadcaster.services import Services, build_services  # noqa: E402
from broadcaster.settings import load_settings  # noqa: E402
from speakers.simulator import assign_zones, make_node_ids  # noqa: E402

PASSWORD_TEMPLATE = "pw-{id}"


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
        self.sim: subprocess.Popen[bytes] | None = None

    def services(self, name: str, fleet: FleetConfig) -> Services:
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
        services = build_services(settings, fleet_config=fleet, scheduler=False)
        with services.sessions.begin() as session:
            if session.get(Zone, self.zones[0]) is None:
                session.add_all([Zone(id=z, name=f"Thôn {z.split('-')[1]}") for z in self.zones])
                session.add_all(
                    [Speaker(id=sid, name=f"Cụm loa {sid}", zone_id=self.zone_of[sid]) for sid in self.ids]
                )
        return services

    def start_simulator(self, health_interval_s: float) -> None:
        """The simulator in its own process (``speaker-agent simulate``)."""
        self.sim = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "speakers",
                "simulate",
                "--mqtt-url",
                f"mqtt://127.0.0.1:{self.broker.port}",
                "--count",
                str(self.count),
                "--zones",
                str(len(self.zones)),
                "--password-template",
                PASSWORD_TEMPLATE,
                "--health-interval",
                str(health_interval_s),
                "--seed",
                "1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
        )

    def stop_simulator(self) -> None:
        if self.sim is not None:
            self.sim.terminate()
            try:
                self.sim.wait(30)
            except subprocess.TimeoutExpired:
                self.sim.kill()
            self.sim = None

    def close(self) -> None:
        self.stop_simulator()
        self.broker.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

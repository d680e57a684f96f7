"""2,000 simulated clusters over TLS on the controller's managed broker: memory of the broker and
of the controller, and the time for all of them to be online again after a broker restart.

    .venv/bin/python bench/bench_tls.py [--count 2000] [--restarts 3] [--sim-procs 2]

The controller is the real one (``build_services`` with its managed mosquitto: TLS node listener
on loopback with the local CA, per-cluster passwords and ACL, dynamic-security plugin). The
clusters are the real agent code in ``--sim-procs`` ``speaker-agent simulate`` processes, over
``mqtts://`` pinning the controller's CA (one TLS context per process), with the agent's own
reconnect backoff (1 s doubling to 60 s, with jitter: ``mqtt.reconnect_min_s``/``max_s``).

"Online" is each cluster's birth message (retained status ``online: true`` stamped after the
restart began), as the controller receives it. A restart is ``ManagedBroker.restart()``: SIGTERM
(mosquitto saves its sessions), start again on the same ports. Memory is RSS from /proc.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _controller_bench import PASSWORD_TEMPLATE, Cpu, Fleetbench, median_spread, rss_mb, wait

from broadcaster.broker import hash_password
from broadcaster.fleet import FleetConfig
from broadcaster.models import Speaker, Zone
from broadcaster.services import Services, build_services
from broadcaster.settings import load_settings
from speakers.protocol import ProtocolError, Status, decode_node_message
from speakers.simulator import assign_zones, make_node_ids


class Births:
    """When each cluster last said it is online (its birth message), as the controller gets them."""

    def __init__(self, services: Services) -> None:
        self.lock = threading.Lock()
        self.since = 0.0
        self.at: dict[str, float] = {}
        services.transport.subscribe(services.transport.topics.status("+"), self._on_status)

    def reset(self, since: float) -> None:
        with self.lock:
            self.since, self.at = since, {}

    def _on_status(self, topic: str, payload: bytes) -> None:
        try:
            status = decode_node_message(payload)
        except ProtocolError:
            return
        if isinstance(status, Status) and status.online and (status.ts or 0) >= self.since:
            with self.lock:
                self.at.setdefault(topic.split("/")[-2], time.time())

    def count(self) -> int:
        with self.lock:
            return len(self.at)


class TlsFleet(Fleetbench):
    """The clusters' accounts in the controller's registry (its managed broker loads them)."""

    def __init__(self, count: int, zones: int) -> None:  # no broker of our own: the controller's
        self.count = count
        self.ids = make_node_ids(count)
        self.zone_of = assign_zones(self.ids, zones)
        self.zones = sorted({z for z in self.zone_of.values() if z}, key=lambda z: int(z.split("-")[1]))
        self.tmp = Path(tempfile.mkdtemp(prefix="loa-bench-tls-"))
        self.tmp.chmod(0o755)  # the broker drops privileges to the mosquitto user
        self.sims = []

    def controller(self) -> Services:
        instance = self.tmp / "instance"
        settings = load_settings(
            {
                "instance": instance,
                "tts": {"order": ["espeak-ng"]},
                "scheduling": {"schedules_dir": instance / "schedules"},
                "broker": {"listen": "127.0.0.1", "tls_port": 0},
            },
            environ={},
        )
        services = build_services(settings, fleet_config=FleetConfig(health_interval_s=30), scheduler=False)
        with services.sessions.begin() as session:
            session.add_all([Zone(id=z, name=f"Thôn {z.split('-')[1]}") for z in self.zones])
            session.add_all(
                [
                    Speaker(
                        id=sid,
                        name=f"Cụm loa {sid}",
                        zone_id=self.zone_of[sid],
                        mqtt_password_hash=hash_password(PASSWORD_TEMPLATE.replace("{id}", sid)),
                    )
                    for sid in self.ids
                ]
            )
        return services

    def close(self) -> None:
        import shutil

        self.stop_simulator()
        shutil.rmtree(self.tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--zones", type=int, default=100)
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--sim-procs", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    fleet = TlsFleet(args.count, args.zones)
    services = fleet.controller()
    try:
        services.start()
        broker = services.broker
        assert broker is not None and broker.ca_pem is not None
        births = Births(services)
        time.sleep(2.0)  # the controller's own start settles (first ticks, subscriptions)
        controller_alone, broker_alone = rss_mb(), rss_mb(broker.pid)
        ca_file = fleet.tmp / "ca.crt"
        ca_file.write_text(broker.ca_pem, encoding="ascii")
        print(
            f"bench_tls: {args.count} clusters over {broker.node_url} (TLS, pinned local CA), "
            f"{args.sim_procs} simulator process(es), agent reconnect backoff 1 s doubling to 60 s with jitter",
            flush=True,
        )
        births.reset(time.time() - 1)
        t0 = time.monotonic()
        fleet.start_simulators(
            30,
            args.sim_procs,
            ["--ca-file", str(ca_file), "--reconnect-min", "1", "--reconnect-max", "60"],
            url=broker.node_url,
        )
        wait(lambda: births.count() >= args.count, 600, f"{args.count} clusters online", 0.05)
        print(
            f"  all {args.count} online {time.monotonic() - t0:.1f} s after the simulators started",
            flush=True,
        )
        settled = fleet.settle()
        controller_full, broker_full = rss_mb(), rss_mb(broker.pid)
        sims = [rss_mb(pid) for pid in fleet.sim_pids()]
        print(
            f"  memory (RSS): broker {broker_alone:.1f} MiB alone -> {broker_full:.1f} MiB with {args.count} TLS "
            f"clusters ({(broker_full - broker_alone) * 1024 / args.count:.1f} KiB per connection); controller "
            f"{controller_alone:.1f} -> {controller_full:.1f} MiB "
            f"({(controller_full - controller_alone) * 1024 / args.count:.1f} KiB per cluster); simulators "
            + " + ".join(f"{m:.0f}" for m in sims)
            + f" MiB (settled after {settled:.0f} s)",
            flush=True,
        )
        results = []
        for n in range(args.restarts):
            births.reset(time.time())
            cpu = Cpu({"controller": [os.getpid()], "simulators": fleet.sim_pids()})
            cpu.start()
            t0 = time.monotonic()
            broker.restart()
            up = time.monotonic() - t0
            wait(lambda: births.count() >= args.count, 600, f"{args.count} clusters back online", 0.02)
            cpu.stop()
            start = time.time() - (time.monotonic() - t0)
            delays = sorted(t - start for t in births.at.values())
            results.append((delays[-1], up, delays))
            print(
                f"  restart {n + 1}: broker back in {up:.2f} s; clusters online again: half after "
                f"{statistics.median(delays):.1f} s, 90% after {delays[int(0.9 * len(delays)) - 1]:.1f} s, all "
                f"after {delays[-1]:.1f} s; {cpu.line()}; broker {rss_mb(broker.pid):.1f} MiB",
                flush=True,
            )
            fleet.settle()
        mid, spread = median_spread(r[0] for r in results)
        half, _ = median_spread(statistics.median(r[2]) for r in results)
        print(
            f"summary: broker {broker_full:.1f} MiB and controller {controller_full:.1f} MiB with {args.count} TLS "
            f"clusters; after a broker restart all online again in {mid:.1f} s (median of {len(results)}, spread "
            f"{spread:.0%}; half of them in {half:.1f} s)"
        )
    finally:
        fleet.stop_simulator()
        services.close()
        fleet.close()


if __name__ == "__main__":
    main()

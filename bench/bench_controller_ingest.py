"""Health reports ingested per second with 2,000 clusters: batched commits vs one commit per message.

    .venv/bin/python bench/bench_controller_ingest.py [--count 2000] [--per-node 10]

Two measurements, each for the batched writer (up to 500 samples or 1 s per commit, the default)
and for one commit per message, side by side, on SQLite (WAL) in a fresh database:

1. Capacity: ``--per-node`` health reports from each of the 2,000 cluster ids are replayed into the
   controller's ingest router (the function the MQTT network thread calls: decode, count, queue),
   as fast as one thread can; the figure is samples committed to the database per second, until
   the last one is written. Measured from the raw payloads and from already decoded reports (the
   writer alone).
2. Sustained: 2,000 simulated clusters (``speaker-agent simulate`` in its own process, the real
   agent code) send health every ``--interval`` s through a real mosquitto for ``--window``
   seconds; the figures are samples written and received per second and the largest backlog in
   the fleet's queue.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _controller_bench import Fleetbench, wait

from broadcaster.fleet import FleetConfig

MODES = (("batched (500 / 1 s)", 500), ("one commit per message", 1))


def capacity(bench: Fleetbench, batch: int, per_node: int, decode: bool) -> float:
    """Replay reports into the ingest router (what the MQTT network thread calls: decode, count,
    queue) or, with ``decode`` False, hand already decoded reports to the fleet's queue."""
    from speakers.protocol import Health

    name = f"cap-{batch}-{'raw' if decode else 'decoded'}"
    services = bench.services(name, FleetConfig(health_interval_s=30, health_batch_size=batch))
    services.start()
    fleet = services.fleet
    topics = services.transport.topics
    reports = [
        (sid, Health(ts=time.time(), uptime_s=float(i), volume=80, amplifier_on=False))
        for i in range(per_node)
        for sid in bench.ids
    ]
    messages = [(topics.health(sid), h.encode()) for sid, h in reports]
    t0 = time.monotonic()
    if decode:
        for topic, payload in messages:
            fleet.ingest.handle(topic, payload)
    else:
        for sid, health in reports:
            fleet.ingest.sink("health", sid, health, time.time())
    fleet.flush(600)
    wait(lambda: fleet.stats["health_written"] >= len(messages), 600, "all reports written")
    elapsed = time.monotonic() - t0
    services.close()
    return len(messages) / elapsed


def sustained(bench: Fleetbench, batch: int, window: float, interval: float) -> tuple[float, int, float]:
    services = bench.services(
        f"sus-{batch}", FleetConfig(health_interval_s=interval, health_batch_size=batch)
    )
    services.start()
    fleet = services.fleet
    wait(lambda: len(fleet.online_ids()) >= bench.count, 180, f"{bench.count} clusters online")
    wait(lambda: fleet.stats["health_written"] > 0, 30, "first samples written")
    fleet.stats["queue_max"] = 0
    w0, r0, t0 = fleet.stats["health_written"], fleet.stats["health_received"], time.monotonic()
    time.sleep(window)  # the measurement window itself
    w1, r1, t1 = fleet.stats["health_written"], fleet.stats["health_received"], time.monotonic()
    backlog = fleet.stats["queue_max"]
    services.close()
    return (w1 - w0) / (t1 - t0), backlog, (r1 - r0) / (t1 - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--per-node", type=int, default=10, help="replayed reports per cluster")
    parser.add_argument("--window", type=float, default=20.0, help="sustained measurement window (s)")
    parser.add_argument("--interval", type=float, default=1.0, help="simulated health interval (s)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    bench = Fleetbench(args.count, zones=20)
    try:
        print(f"Health ingest, {args.count} clusters, SQLite (WAL, synchronous=NORMAL)")
        print(f"1) capacity: {args.count * args.per_node} reports replayed into the controller's ingest")
        print(f"   {'writer':<26}{'from bytes/s':>14}{'decoded/s':>12}")
        for label, batch in MODES:
            raw = capacity(bench, batch, args.per_node, decode=True)
            decoded = capacity(bench, batch, args.per_node, decode=False)
            print(f"   {label:<26}{raw:>14.0f}{decoded:>12.0f}")
        print("   from bytes: decode + queue + write; decoded: queue + write only (the database writer)")
        offered = args.count / args.interval
        print(
            f"2) sustained: {args.count} simulated clusters through mosquitto, health every {args.interval:g} s "
            f"(~{offered:.0f}/s offered), {args.window:.0f} s window"
        )
        bench.start_simulator(args.interval)
        print(f"   {'writer':<26}{'written/s':>12}{'received/s':>12}{'max backlog':>13}")
        for label, batch in MODES:
            written, backlog, received = sustained(bench, batch, args.window, args.interval)
            print(f"   {label:<26}{written:>12.0f}{received:>12.0f}{backlog:>13}")
    finally:
        bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

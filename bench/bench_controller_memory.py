"""Controller memory with 2,000 clusters.

    .venv/bin/python bench/bench_controller_memory.py [--count 2000] [--settle 30]

The real controller (fleet, dispatcher, MQTT link; scheduler off) on a managed mosquitto, and
2,000 simulated clusters (``speaker-agent simulate``, the real agent code) in a separate process so
they are not counted. Prints the controller's resident memory (RSS, from /proc) at each stage: after
start-up with 2,000 clusters registered, with all 2,000 online and sending health every 10 s, and
after one broadcast to all of them (espeak-ng render, audio chunks through zone topics, 2,000
deliveries). Also the time a fleet snapshot of 2,000 clusters takes and the broker's memory.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _controller_bench import Fleetbench, rss_mb, wait

from broadcaster.domain import Announcement
from broadcaster.fleet import FleetConfig


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument(
        "--settle", type=float, default=30.0, help="seconds of health traffic before measuring"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    bench = Fleetbench(args.count, zones=20)
    try:
        before = rss_mb()
        services = bench.services("memory", FleetConfig(health_interval_s=10))
        services.start()
        registered = rss_mb()
        bench.start_simulator(10.0)
        t0 = time.monotonic()
        wait(lambda: len(services.fleet.online_ids()) >= args.count, 300, f"{args.count} clusters online")
        online_after = time.monotonic() - t0
        time.sleep(args.settle)  # let health traffic flow: the state being measured
        online = rss_mb()
        t1 = time.perf_counter()
        snapshot = services.fleet.snapshot()
        snapshot_ms = (time.perf_counter() - t1) * 1000
        bid = services.broadcasts.submit(Announcement(text="Thông báo thử nghiệm tới toàn bộ các cụm loa."))
        t2 = time.monotonic()
        done = wait(
            lambda: (b := services.broadcasts.get(bid)) and b["state"] in ("done", "partial", "failed") and b,
            600,
            "broadcast to all",
        )
        broadcast_s = time.monotonic() - t2
        after = rss_mb()
        ok = sum(1 for d in done["deliveries"] if d["state"] == "done")
        broker = rss_mb(bench.broker.pid)
        stats = services.broadcasts.stats
        services.close()
    finally:
        bench.close()
    print(f"Controller memory (RSS) with {args.count} simulated clusters in 20 zones")
    rows = [
        ("python process before the controller", before),
        (f"started, {args.count} clusters registered", registered),
        (f"{args.count} online, health every 10 s for {args.settle:.0f} s", online),
        ("after a broadcast to all", after),
    ]
    for label, value in rows:
        print(f"  {label:<44}{value:8.1f} MiB")
    print(f"  {'per cluster (online - registered)':<44}{(online - registered) * 1024 / args.count:8.1f} KiB")
    print(f"  all {args.count} online {online_after:.1f} s after the simulator started")
    print(f"  fleet snapshot of {len(snapshot)} clusters: {snapshot_ms:.0f} ms")
    print(
        f"  broadcast to all: {ok}/{args.count} done in {broadcast_s:.1f} s (incl. render and "
        f"{done['duration_s']:.1f} s of audio); {stats['plays_published']} play publishes, "
        f"{stats['chunks_published']} chunk publishes"
    )
    print(f"  mosquitto RSS: {broker:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

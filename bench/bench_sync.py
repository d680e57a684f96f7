"""Start spread across 9 simulated clusters whose clocks are off by up to +-2 s.

    .venv/bin/python bench/bench_sync.py [--broadcasts 10] [--nodes 9] [--skew 2.0]

A managed Mosquitto (per-node users and ACL), the simulator (9 clusters in 3 zones, the nodes'
clocks off by -2.0, -1.5, ... +2.0 s) in its own thread and event loop, and a controller stand-in on the
main loop that answers time requests and serves audio. Each broadcast is one zone-topic play per
zone with ``start_at`` 1.5 s ahead; the spread is max - min of the true wall-clock start times
the nodes recorded in their timelines. Goal: within 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from broadcaster.broker import ManagedBroker  # noqa: E402
from speakers.protocol import PlayCommand  # noqa: E402
from speakers.simulator import Simulator, assign_zones, make_node_ids  # noqa: E402
from tests.mini_controller import MiniController  # noqa: E402


def make_tone(path: Path, seconds: float) -> bytes:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
         "-ac", "1", "-b:a", "48k", "-y", str(path)],
        check=True,
    )  # fmt: skip
    return path.read_bytes()


async def measure(sim: Simulator, broker: ManagedBroker, broadcasts: int, tone: bytes) -> list[dict]:
    mc = MiniController(broker.controller_url, client_id="bench-controller")
    await mc.start()
    await mc.wait_for(lambda: all(sim.agent(s).synced for s in sim.node_ids()), 30, "clock sync")
    ref = mc.add_audio(tone)
    zones = sorted({sim.zone_of(s) for s in sim.node_ids()})
    results = []
    for n in range(broadcasts):
        bid = f"sync-{n}"
        start_at = time.time() + 1.5
        for zone in zones:
            mc.send_zone(zone, PlayCommand(bid, ref, start_at, title="Kiểm tra đồng bộ"))
        for sid in sim.node_ids():
            await mc.wait_state(sid, bid, "done", timeout=30)
        starts = [e["start"] for e in sim.timeline() if e["broadcast_id"] == bid]
        results.append(
            {
                "spread_ms": (max(starts) - min(starts)) * 1000,
                "worst_error_ms": max(abs(s - start_at) for s in starts) * 1000,
                "nodes": len(starts),
            }
        )
    await mc.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broadcasts", type=int, default=10)
    parser.add_argument("--nodes", type=int, default=9)
    parser.add_argument("--zones", type=int, default=3)
    parser.add_argument("--skew", type=float, default=2.0)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="loa-bench-sync-"))
    work.chmod(0o755)
    nodes = assign_zones(make_node_ids(args.nodes), args.zones)
    broker = ManagedBroker(work / "broker", users={s: f"pw-{s}" for s in nodes}, node_zones=nodes)
    broker.start()
    # Clock errors spread evenly over [-skew, +skew]: the extremes are always there.
    ids = list(nodes)
    step = 2 * args.skew / max(1, len(ids) - 1)
    offsets_given = {sid: -args.skew + i * step for i, sid in enumerate(ids)}
    sim = Simulator(
        f"mqtt://127.0.0.1:{broker.port}",
        nodes=nodes,
        credentials=lambda s: (s, f"pw-{s}"),
        clock_offsets=offsets_given,
        cache_root=work / "sim",
    )
    try:
        sim.start_in_thread(timeout=30)
        offsets = [sim.clock_offset_of(s) for s in sim.node_ids()]
        tone = make_tone(work / "tone.mp3", 1.0)
        results = asyncio.run(measure(sim, broker, args.broadcasts, tone))
        estimate_errors = [
            abs(sim.agent(s).wall_offset_s + sim.clock_offset_of(s)) * 1000 for s in sim.node_ids()
        ]
    finally:
        sim.stop()
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)

    spreads = [r["spread_ms"] for r in results]
    print(f"bench_sync: {args.nodes} simulated clusters in {args.zones} zones, real mosquitto on loopback")
    print(f"injected clock errors (node clock - true time): {', '.join(f'{o:+.2f}' for o in offsets)} s")
    print(f"clock-offset estimate error per node: median {statistics.median(estimate_errors):.2f} ms, "
          f"worst {max(estimate_errors):.2f} ms")  # fmt: skip
    for n, r in enumerate(results):
        print(f"  broadcast {n + 1:2d}: start spread {r['spread_ms']:6.2f} ms, worst |start - start_at| "
              f"{r['worst_error_ms']:6.2f} ms ({r['nodes']} nodes)")  # fmt: skip
    print(f"start spread over {len(spreads)} broadcasts: median {statistics.median(spreads):.2f} ms, "
          f"worst {max(spreads):.2f} ms (goal: within 20 ms)")  # fmt: skip
    print(f"worst |start - start_at| over all: {max(r['worst_error_ms'] for r in results):.2f} ms")


if __name__ == "__main__":
    main()

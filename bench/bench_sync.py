"""Start spread across 9 simulated clusters whose clocks are off by up to +-2 s, on the real controller.

    .venv/bin/python bench/bench_sync.py [--broadcasts 10] [--nodes 9] [--skew 2.0]

The real controller (``build_services``: its managed mosquitto with the TLS node listener and the
local CA, the fleet answering time requests, the broadcast lifecycle), 9 clusters in 3 zones
created in its registry, and the simulator (the real agent code, null player) in a thread of
this process, over ``mqtts://`` pinning the controller's CA. The nodes' clocks are off by -2.0,
-1.5, ... +2.0 s. Each broadcast is a 1 s tone taken in as a recording, to "all" (one zone
publish per zone, with the controller's own synchronized-start lead); the spread is max - min of
the true wall-clock start times the nodes recorded in their timelines. Goal: within 20 ms.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _controller_bench import wait

from broadcaster.domain import Announcement
from broadcaster.services import build_services
from broadcaster.settings import load_settings
from speakers.simulator import Simulator, assign_zones, make_node_ids


def make_tone(path: Path, seconds: float) -> bytes:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
         "-ac", "1", "-b:a", "48k", "-y", str(path)],
        check=True,
    )  # fmt: skip
    return path.read_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broadcasts", type=int, default=10)
    parser.add_argument("--nodes", type=int, default=9)
    parser.add_argument("--zones", type=int, default=3)
    parser.add_argument("--skew", type=float, default=2.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    work = Path(tempfile.mkdtemp(prefix="loa-bench-sync-"))
    work.chmod(0o755)  # the broker drops privileges to the mosquitto user
    instance = work / "instance"
    settings = load_settings(
        {
            "instance": instance,
            "tts": {"order": ["espeak-ng"]},
            "scheduling": {"schedules_dir": instance / "schedules"},
            "broker": {"listen": "127.0.0.1", "tls_port": 0},
        },
        environ={},
    )
    services = build_services(settings, scheduler=False)
    nodes = assign_zones(make_node_ids(args.nodes), args.zones)
    passwords = {}
    for zone in sorted({z for z in nodes.values() if z}):
        services.registry.create_zone(zone, f"Thôn {zone.split('-')[1]}")
    for sid, zone in nodes.items():
        passwords[sid] = services.registry.create_speaker(sid, f"Cụm loa {sid}", zone)[1]
    # Clock errors spread evenly over [-skew, +skew]: the extremes are always there.
    ids = list(nodes)
    step = 2 * args.skew / max(1, len(ids) - 1)
    offsets_given = {sid: -args.skew + i * step for i, sid in enumerate(ids)}
    sim = None
    try:
        services.start()
        broker = services.broker
        assert broker is not None
        sim = Simulator(
            broker.node_url,
            nodes=nodes,
            credentials=lambda s: (s, passwords[s]),
            ca_pem=broker.ca_pem,
            clock_offsets=offsets_given,
            cache_root=work / "sim",
        )
        sim.start_in_thread(timeout=30)
        wait(lambda: all(sim.agent(s).synced for s in ids), 30, "clock sync")
        wait(lambda: len(services.fleet.online_ids()) == len(ids), 30, "clusters online")
        key = services.speech.import_recording(make_tone(work / "tone.mp3", 1.0), "tone.mp3", chime=False).key
        results = []
        for n in range(args.broadcasts):
            bid = services.broadcasts.submit(
                Announcement(text="", audio_key=key, targets=("all",), title="Kiểm tra đồng bộ")
            )
            done = wait(
                lambda bid=bid: (
                    (b := services.broadcasts.get(bid)) and b["state"] in ("done", "partial") and b
                ),
                60,
                f"broadcast {n + 1} done",
            )
            start_at = datetime.fromisoformat(done["start_at"]).timestamp()
            starts = [e["start"] for e in sim.timeline() if e["broadcast_id"] == str(bid)]
            results.append(
                {
                    "spread_ms": (max(starts) - min(starts)) * 1000,
                    "worst_error_ms": max(abs(s - start_at) for s in starts) * 1000,
                    "nodes": len(starts),
                    "state": done["state"],
                }
            )
        offsets = [sim.clock_offset_of(s) for s in ids]
        estimate_errors = [abs(sim.agent(s).wall_offset_s + sim.clock_offset_of(s)) * 1000 for s in ids]
    finally:
        if sim is not None:
            sim.stop()
        services.close()
        shutil.rmtree(work, ignore_errors=True)

    spreads = [r["spread_ms"] for r in results]
    print(
        f"bench_sync: {args.nodes} simulated clusters in {args.zones} zones on the real controller "
        f"(managed mosquitto, TLS with the local CA, lead {services.broadcasts_config.lead_s:.1f} s)"
    )
    print(f"injected clock errors (node clock - true time): {', '.join(f'{o:+.2f}' for o in offsets)} s")
    print(f"clock-offset estimate error per node: median {statistics.median(estimate_errors):.2f} ms, "
          f"worst {max(estimate_errors):.2f} ms")  # fmt: skip
    for n, r in enumerate(results):
        print(f"  broadcast {n + 1:2d}: start spread {r['spread_ms']:6.2f} ms, worst |start - start_at| "
              f"{r['worst_error_ms']:6.2f} ms ({r['nodes']} nodes, {r['state']})")  # fmt: skip
    print(f"start spread over {len(spreads)} broadcasts: median {statistics.median(spreads):.2f} ms, "
          f"worst {max(spreads):.2f} ms (goal: within 20 ms)")  # fmt: skip
    print(f"worst |start - start_at| over all: {max(r['worst_error_ms'] for r in results):.2f} ms")


if __name__ == "__main__":
    main()

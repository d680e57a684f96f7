"""Live speech: microphone to cluster playout, and the spread between 9 clusters.

    .venv/bin/python bench/bench_live.py [--runs 5] [--skew 2.0]

A mosquitto on a free loopback port, the real controller services on it and 9 simulated clusters
(clocks off by -2 ... +2 s, corrected by their sync). Each run is one live item to every cluster,
fed as the «Phát trực tiếp» page feeds it: 16 kHz PCM in quarter-second chunks, each posted when
its quarter second has been "spoken" (the browser's capture buffer). A second of silence, then a
tone burst: its first sample is "spoken" at a known instant. From the nodes' recorded timelines
(the true wall time each frame sounds) we find when that sample sounded on each cluster:

- latency = when it sounded on the last cluster - when it was spoken (goal <= 1.5 s);
- spread = the difference between the clusters (goal <= 5 ms).

Also the controller's CPU and memory with one live source, and the bytes a cluster receives.
"""

from __future__ import annotations

import argparse
import array
import logging
import math
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _controller_bench import children_cpu_s, rss_mb, skewed_commune  # noqa: E402

from broadcaster.broker import free_port  # noqa: E402
from broadcaster.domain import Tier  # noqa: E402

RATE = 16_000  # what the page sends
CHUNK_S = 0.25  # what the page sends at a time
SILENCE_S = 1.0  # before the tone
TONE_S = 2.0


def speech() -> bytes:
    n_silence = int(SILENCE_S * RATE)
    tone = (int(12_000 * math.sin(2 * math.pi * 600 * n / RATE)) for n in range(int(TONE_S * RATE)))
    return array.array("h", [0] * n_silence + list(tone)).tobytes()


def sounded_at(entries: list[dict], position: float) -> float | None:
    """True wall time at which stream time ``position`` sounded, from one node's chunks."""
    for e in entries:
        start, end = e["t"], e["t"] + e["samples"] / e["rate"]
        if start <= position < end:
            return float(e["out"]) + (position - start)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skew", type=float, default=2.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    tmp = Path(tempfile.mkdtemp(prefix="bench-live-"))
    port = free_port()
    (tmp / "mosquitto.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    broker = subprocess.Popen(["mosquitto", "-c", str(tmp / "mosquitto.conf")], stderr=subprocess.DEVNULL)
    services, sim, ids = skewed_commune(tmp / "instance", port, 9, args.skew)
    pcm = speech()
    step = int(CHUNK_S * RATE) * 2
    latencies: list[float] = []
    spreads: list[float] = []
    cpu_per_s: list[float] = []
    ffmpeg_per_s: list[float] = []
    rss: list[float] = []
    try:
        sim.start_in_thread(timeout=60)
        while len(services.fleet.online_ids()) < 9 or not all(sim.agent(n).synced for n in ids):
            time.sleep(0.05)
        manager = services.broadcasts
        for run in range(args.runs + 1):  # run 0 warms up
            bid = manager.start_live(tier=Tier.PRIORITY, targets=("all",), author="bench")
            began = time.time()  # the officer starts speaking
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            rss0 = rss_mb()
            for n, at in enumerate(range(0, len(pcm), step)):
                # The page posts a chunk once it has been captured.
                time.sleep(max(0.0, began + (n + 1) * CHUNK_S - time.time()))
                manager.feed_live(bid, pcm[at : at + step])
            spoken = began + SILENCE_S  # the tone's first sample left the officer's mouth
            wall = time.time() - began
            ffmpeg = children_cpu_s()
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
            rss1 = rss_mb()
            manager.end_live(bid)
            deadline = time.monotonic() + 30
            while (manager.get(bid) or {}).get("state") not in ("done", "partial", "failed", "missed"):
                if time.monotonic() > deadline:
                    raise SystemExit(f"live item {bid} did not end")
                time.sleep(0.05)
            by_node = {
                sid: sorted(
                    (
                        e
                        for e in sim.timeline(sid)
                        if e.get("kind") == "stream" and e["broadcast_id"] == str(bid)
                    ),
                    key=lambda e: e["t"],
                )
                for sid in ids
            }
            # The stream's clock: frame n carries samples from n x frame length, so any frame gives the
            # time of the first sample (nodes join at the first frame they can start on time, which
            # may not be frame 0); a gap (re-anchor) only moves later frames, so the earliest wins.
            frame_s = services.settings.live.frame_s
            first = min(
                e["t"] - e["seq"] * frame_s
                for entries in by_node.values()
                for e in entries
                if e["seq"] is not None and e["offset"] == 0
            )
            # The tone starts SILENCE_S of samples later (the conditioner keeps their order and count).
            position = first + SILENCE_S
            heard = [sounded_at(entries, position) for entries in by_node.values()]
            if None in heard:
                sample = by_node[ids[0]]
                print(
                    "DBG",
                    position,
                    [(e["seq"], round(e["t"], 3), e["samples"], e["offset"]) for e in sample[:12]],
                )
            if run and all(h is not None for h in heard):
                latencies.append(max(heard) - spoken)  # type: ignore[type-var]
                spreads.append(max(heard) - min(heard))  # type: ignore[type-var, operator]
                cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
                cpu_per_s.append(cpu / wall)
                ffmpeg_per_s.append(ffmpeg / wall)
                rss.append(rss1 - rss0)
            time.sleep(1.0)
        stats = services.broadcasts.hub.stats() if services.broadcasts.hub else {}
    finally:
        sim.stop()
        services.close()
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"live speech to 9 clusters, clocks skewed +-{args.skew:g} s ({len(latencies)} runs)")
    print(
        f"  microphone -> sound on the last cluster: median {statistics.median(latencies):.3f} s "
        f"(min {min(latencies):.3f}, max {max(latencies):.3f}); includes the page's 0.25 s capture chunks "
        "and the 0.6 s playout delay"
    )
    print(
        f"  spread between clusters: median {statistics.median(spreads) * 1000:.2f} ms, worst {max(spreads) * 1000:.2f} ms"
    )
    print(
        f"  CPU while one live source runs: this process (the controller and the 9 simulated clusters) "
        f"{statistics.median(cpu_per_s) * 100:.1f}% of a core, the conditioner's ffmpeg "
        f"{statistics.median(ffmpeg_per_s) * 100:.1f}%; RSS change {statistics.median(rss):+.1f} MiB"
    )
    totals = stats.get("totals", {})
    frames = sum(t["frames"] for t in totals.values())
    sent = sum(t["bytes"] for t in totals.values())
    if frames:
        per_s = (
            (sent + frames * 40) / frames / services.settings.live.frame_s
        )  # ~40 B of MQTT framing a frame
        print(
            f"  per cluster: {per_s * 60 / 1024:.0f} KiB per minute of speech ({per_s * 8 / 1000:.1f} kbps)"
        )


if __name__ == "__main__":
    main()

"""Relay to 9 simulated clusters whose clocks are off by up to +-2 s: start spread and drift.

    .venv/bin/python bench/bench_relay.py [--minutes 10] [--nodes 9] [--skew 2.0]

A mosquitto on a free loopback port, the real controller services on it, the simulator's clusters
(clocks off by -2.0 ... +2.0 s, corrected by their clock sync) and an HLS source made by ffmpeg
(a 440 Hz tone) served over local HTTP. One relay of ``--minutes`` to every cluster. From the
nodes' recorded timelines (the true wall time each frame sounded): the start spread (first common
frame) and the drift (worst spread of any frame played by every cluster over the whole relay).
Goal: <= 5 ms. Also: controller CPU and memory with the source pulled (the ffmpeg that pulls and
conditions it counted apart) and bytes per cluster per minute.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _controller_bench import children_cpu_s, rss_mb, skewed_commune  # noqa: E402

from broadcaster.broker import free_port  # noqa: E402


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--nodes", type=int, default=9)
    parser.add_argument("--skew", type=float, default=2.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-relay-"))
    port = free_port()
    (tmp / "mosquitto.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    broker = subprocess.Popen(["mosquitto", "-c", str(tmp / "mosquitto.conf")], stderr=subprocess.DEVNULL)
    hls = tmp / "hls"
    hls.mkdir()
    source = subprocess.Popen(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
         "-ac", "1", "-c:a", "aac", "-b:a", "64k", "-f", "hls", "-hls_time", "1", "-hls_list_size", "6",
         "-hls_flags", "delete_segments", str(hls / "live.m3u8")],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(hls)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/live.m3u8"
    services, sim, ids = skewed_commune(tmp / "instance", port, args.nodes, args.skew)
    try:
        sim.start_in_thread(timeout=60)
        while len(services.fleet.online_ids()) < len(ids) or not (hls / "live.m3u8").exists():
            time.sleep(0.1)
        time.sleep(3)  # a first clock sync everywhere
        manager = services.broadcasts
        channel = manager.channels.create("Bench", url)
        checked = services.validator.check_stream(
            channel=channel,
            duration_s=args.minutes * 60,
            targets=["all"],
            channel_lookup=manager.channels.usable,
        )
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        rss_before = rss_mb()
        rss_during = rss_before
        ffmpeg_cpu = 0.0
        began = time.monotonic()
        bid = manager.submit_stream(checked, author="bench")
        deadline = time.monotonic() + args.minutes * 60 + 60
        while (manager.get(bid) or {}).get("state") not in ("done", "partial", "failed", "missed"):
            if time.monotonic() > deadline:
                break
            rss_during = max(rss_during, rss_mb())
            ffmpeg_cpu = max(ffmpeg_cpu, children_cpu_s())
            time.sleep(0.5)
        wall = time.monotonic() - began
        stats = services.broadcasts.hub.stats() if services.broadcasts.hub else {}
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = manager.get(bid) or {}
        out: dict[int, dict[str, float]] = defaultdict(dict)
        for entry in sim.timeline():
            if entry.get("kind") == "stream" and entry["seq"] is not None and entry["offset"] == 0:
                out[entry["seq"]][entry["speaker_id"]] = entry["out"]
        common = sorted(seq for seq, by in out.items() if len(by) == len(ids))
        spreads = [max(out[s].values()) - min(out[s].values()) for s in common]
        print(
            f"relay of {args.minutes:g} min to {len(ids)} clusters, clocks skewed +-{args.skew} s: {result.get('state')}"
        )
        if spreads:
            print(f"  start spread (first common frame): {spreads[0] * 1000:.2f} ms")
            print(f"  drift between clusters, worst over {len(common)} frames: {max(spreads) * 1000:.2f} ms")
            print(f"  median spread: {sorted(spreads)[len(spreads) // 2] * 1000:.2f} ms")
        cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
        child = (child1.ru_utime + child1.ru_stime) - (child0.ru_utime + child0.ru_stime)
        print(
            f"  this process's CPU (the controller with its pump thread, and the 9 simulated clusters): "
            f"{cpu / wall * 100:.1f}% of a core"
        )
        print(
            f"  ffmpeg pulling and conditioning the source: {max(child, ffmpeg_cpu) / wall * 100:.1f}% of a core"
        )
        # Every cluster receives the whole stream: its bytes are one stream's (totals: the stream
        # is released when the relay ends, so its counters are read from the hub's totals).
        totals = stats.get("totals", {})
        total = sum(t["bytes"] for t in totals.values())
        frames = sum(t["frames"] for t in totals.values())
        print(
            f"  this process's RSS: {rss_before:.1f} MiB before, {rss_during:.1f} MiB with the source pulled"
        )
        if frames:
            seconds = frames * services.settings.live.frame_s
            per_min = (total + frames * 40) / (seconds / 60)
            print(
                f"  bytes per cluster per minute (frames + ~40 B MQTT framing): {per_min / 1024:.0f} KiB "
                f"({per_min * 8 / 60 / 1000:.1f} kbps), {frames} frames"
            )
    finally:
        sim.stop()
        services.close()
        server.shutdown()
        for proc in (source, broker):
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

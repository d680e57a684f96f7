"""Time to deliver a 1-minute announcement to 9 and to 2,000 clusters, on the real controller:
zone publishes (targets "all") vs one play publish per cluster (targets = every cluster's id).

    .venv/bin/python bench/bench_delivery.py [--large 2000] [--skip-large] [--runs 3] [--sim-procs 2]

The controller is the real one (``build_services``: dispatcher, chunk server, fleet, receipts) on
a real mosquitto; the clusters are the real agent code with the null player, in ``--sim-procs``
``speaker-agent simulate`` processes (each a share of the clusters). The announcement is a real
~1 min, 48 kbps MP3 (espeak-ng Vietnamese speech looped to 60 s, taken in as a recording by the
controller: ~360 KB = 6 chunks of 64 KiB), a new file for every run (a few ms of silence more),
so that no cluster has it cached.

"Delivered" = every cluster said ``scheduled`` (the whole file received, verified and stored; or
``playing``/``done`` if its start came first). The clock starts just before the broadcast is
submitted. The start lead is 30 s, so nothing plays while the audio travels; the broadcast is
cancelled after each run. In both modes the audio goes the same way: each chunk once on the file's
audio topic, which the broker fans out to every cluster fetching it; the modes differ in the play
publishes (100 zone publishes or 2,000 cluster publishes) and so in when the clusters ask.

The simulated clusters ask again for missing chunks after 3 s without progress (the agent's
default) at 9 clusters, and after 10 s at 2,000 (``--large-request-timeout``): there, one
simulator process handles a thousand clusters one after the other, and its own queueing must not
be taken for a lost copy (real clusters each have their own CPU).

Each case runs ``--runs`` times (``--small-runs`` at 9 clusters) after one warm-up delivery, the
simulators idle before each run;
the median and the spread ((max - min) / median) are printed,
with the CPU time of each part (controller = this process, broker, simulator processes) from /proc.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _controller_bench import Cpu, Fleetbench, PeakRss, median_spread, wait

from broadcaster.broadcasts import BroadcastsConfig
from broadcaster.domain import Announcement
from broadcaster.fleet import FleetConfig, targets
from broadcaster.services import Services
from speakers.protocol import Event, ProtocolError, decode_node_message

TEXT = (
    "Thông báo của Ủy ban nhân dân xã về việc tiêm phòng cho gia súc, gia cầm đợt một năm hai nghìn "
    "hai mươi sáu. Đề nghị các hộ chăn nuôi mang vật nuôi đến điểm tiêm tại nhà văn hóa thôn vào "
    "sáng thứ bảy. Xin cảm ơn bà con đã lắng nghe."
)
DELIVERED = ("scheduled", "playing", "done")
GAVE_UP = ("failed", "expired")
# Long enough that the audio reaches 2,000 clusters before anything plays (the setting's maximum).
LEAD_S = 30.0
VERBOSE = False
# The benchmark stops before the broker takes the machine's memory (its OOM killer would).
BROKER_LIMIT_MB = 4096


def make_speech(folder: Path) -> Path:
    speech = folder / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "vi", "-s", "150", "-w", str(speech), TEXT], check=True)
    return speech


def announcement(folder: Path, speech: Path, variant: int, seconds: float = 60.0) -> bytes:
    """The looped speech as a 48 kbps MP3, ``variant`` ms of silence first: a file of its own."""
    out = folder / f"announcement-{variant}.mp3"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-stream_loop", "-1", "-i", str(speech), "-t", str(seconds),
         "-af", f"adelay={variant}:all=1", "-ac", "1", "-ar", "22050", "-b:a", "48k", "-y", str(out)],
        check=True,
    )  # fmt: skip
    return out.read_bytes()


class Receipts:
    """The clusters' receipts as the controller's own MQTT client receives them."""

    def __init__(self, services: Services) -> None:
        self.lock = threading.Lock()
        self.wire_id = ""
        self.delivered: set[str] = set()
        self.gave_up: set[str] = set()
        self.requests = 0
        self.request_times: list[float] = []
        services.transport.subscribe(services.transport.topics.events("+"), self._on_event)

    def expect(self, wire_id: str) -> None:
        with self.lock:
            self.wire_id, self.requests, self.request_times = wire_id, 0, []
            self.delivered, self.gave_up = set(), set()

    def _on_event(self, topic: str, payload: bytes) -> None:
        try:
            event = decode_node_message(payload)
        except ProtocolError:
            return
        if not isinstance(event, Event) or event.broadcast_id != self.wire_id:
            return
        speaker = topic.split("/")[-2]
        with self.lock:
            if event.state == "need_audio":
                self.requests += 1
                self.request_times.append(time.monotonic())
            elif event.state in DELIVERED:
                self.delivered.add(speaker)
            elif event.state in GAVE_UP:
                self.gave_up.add(speaker)

    def finished(self, count: int) -> bool:
        with self.lock:
            return len(self.delivered | self.gave_up) >= count


def deliver_once(fb: Fleetbench, services: Services, receipts: Receipts, audio: bytes, mode: str) -> dict:
    speech, broadcasts = services.speech, services.broadcasts
    key = speech.import_recording(audio, "thong-bao.mp3", chime=False).key
    chunks = -(-len(speech.store.read_bytes(key)) // 65536)
    targets = ("all",) if mode == "zone" else tuple(fb.ids)
    stats0 = broadcasts.stats
    cpu = Cpu({"controller": [services_pid()], "broker": [fb.broker.pid], "simulators": fb.sim_pids()})
    peak = PeakRss(fb.broker.pid, limit_mb=BROKER_LIMIT_MB)
    cpu.start()
    t0 = time.monotonic()
    bid = broadcasts.submit(
        Announcement(text="", audio_key=key, targets=targets, title="Thông báo tiêm phòng")
    )
    receipts.expect(str(bid))

    last_report = [t0]

    def done() -> bool:
        if VERBOSE and time.monotonic() - last_report[0] >= 1.0:
            last_report[0] = time.monotonic()
            print(
                f"      t={last_report[0] - t0:5.1f} s delivered {len(receipts.delivered)} requests "
                f"{receipts.requests} chunk publishes {broadcasts.stats['chunks_published'] - stats0['chunks_published']}"
                f" plays {broadcasts.stats['plays_published'] - stats0['plays_published']}"
                f" broker {peak.peak_mb:.0f} MiB",
                flush=True,
            )
        if peak.over:
            raise SystemExit(f"the broker grew over {peak.limit_mb:.0f} MiB: benchmark stopped")
        return receipts.finished(fb.count)

    wait(done, 600, f"delivery to {fb.count} clusters", interval=0.005)
    elapsed = time.monotonic() - t0
    cpu.stop()
    broker_peak = peak.stop()
    stats = broadcasts.stats
    published = stats["chunks_published"] - stats0["chunks_published"]
    plays = stats.get("plays_published", 0) - stats0.get("plays_published", 0)
    broadcasts.cancel(bid, by="bench")
    wait(lambda: broadcasts.get(bid)["state"] == "cancelled", 60, "cancel")
    # The airing ends when every cluster confirmed the stop: the next run must not queue behind it.
    wait(lambda: not broadcasts.active_ids(), 600, "every cluster to confirm the stop", interval=0.1)
    return {
        "elapsed": elapsed,
        "copies": published / chunks,
        "plays": plays,
        "requests": receipts.requests,
        "asked_over": (max(receipts.request_times) - min(receipts.request_times))
        if receipts.request_times
        else 0.0,
        "failed": len(receipts.gave_up),
        "cpu": cpu,
        "broker_peak_mb": broker_peak,
    }


def services_pid() -> int:
    import os

    return os.getpid()


def run_size(
    count: int, zones: int, request_timeout: float, args: argparse.Namespace, work: Path, speech_wav: Path
) -> list[str]:
    fb = Fleetbench(count, zones)
    lines = []
    try:
        services = fb.services(
            f"controller-{count}",
            FleetConfig(health_interval_s=300),
            BroadcastsConfig(lead_s=LEAD_S, receipt_grace_s=120),
        )
        services.start()
        receipts = Receipts(services)
        fb.start_simulators(300, args.sim_procs, ["--request-timeout", str(request_timeout)])
        wait(lambda: len(services.fleet.online_ids()) == count, 300, f"{count} clusters online", 0.1)
        fb.settle()  # first clock syncs and health done: a run measures the delivery alone
        variant = 1
        warm = deliver_once(fb, services, receipts, announcement(work, speech_wav, variant), "zone")
        print(f"    {count:5d} clusters, warm-up (not counted): {warm['elapsed']:.2f} s", flush=True)
        fb.settle()
        for mode in args.modes.split(","):
            runs = []
            for _ in range(args.small_runs if count < 100 else args.runs):
                variant += 1
                runs.append(
                    deliver_once(fb, services, receipts, announcement(work, speech_wav, variant), mode)
                )
                r = runs[-1]
                fb.settle()
                print(
                    f"    {count:5d} clusters, {mode:8s}: {r['elapsed']:6.2f} s, {r['copies']:.1f} copies of "
                    f"the file sent, {r['plays']} play publishes, {r['requests']} requests over {r['asked_over']:.1f} s, "
                    f"{r['failed']} failed, broker peak RSS {r['broker_peak_mb']:.0f} MiB; {r['cpu'].line()}",
                    flush=True,
                )
            mid, spread = median_spread(r["elapsed"] for r in runs)
            copies = sorted(r["copies"] for r in runs)[len(runs) // 2]
            cpu_mid = {
                part: sorted(r["cpu"].used[part] for r in runs)[len(runs) // 2]
                for part in runs[0]["cpu"].used
            }
            lines.append(
                f"  {count:5d} clusters, {mode:8s}: median {mid:6.2f} s, spread {spread:4.0%} over {len(runs)} "
                f"runs; {copies:.1f} copies of the file, {runs[0]['plays']} play publishes; CPU s (median): "
                + ", ".join(f"{k} {v:.1f}" for k, v in cpu_mid.items())
            )
            print(lines[-1], flush=True)
        services.close()
    finally:
        fb.close()
    return lines


def main() -> None:
    # One broadcast to 2,000 cluster ids (the per-node case) is over the officer-facing limit of
    # 1,000 targets of one item; the benchmark lifts it for itself.
    targets.MAX_TARGETS = max(targets.MAX_TARGETS, 100_000)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=9)
    parser.add_argument("--small-zones", type=int, default=3)
    parser.add_argument("--large", type=int, default=2000)
    parser.add_argument("--large-zones", type=int, default=100)
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--skip-small", action="store_true")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--small-runs", type=int, default=5)
    parser.add_argument("--modes", default="zone,per-node", help="zone,per-node (default both)")
    parser.add_argument("--sim-procs", type=int, default=2, help="simulator processes (default 2)")
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=3.0,
        help="small case: ask again after this long idle (agent default)",
    )
    parser.add_argument(
        "--large-request-timeout",
        type=float,
        default=10.0,
        help="large case: 10 s, so that the simulators' own queueing is not taken for a lost copy",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="progress every second")
    args = parser.parse_args()
    global VERBOSE
    VERBOSE = args.verbose
    logging.basicConfig(level=logging.ERROR)

    work = Path(tempfile.mkdtemp(prefix="loa-bench-delivery-"))
    speech_wav = make_speech(work)
    sample = announcement(work, speech_wav, 0)
    print(
        f"bench_delivery: a {len(sample) / 1000:.0f} KB MP3 (60 s, 48 kbps) on the real controller and mosquitto; "
        f"{args.sim_procs} simulator process(es); start lead {LEAD_S:.0f} s",
        flush=True,
    )
    sizes = ([] if args.skip_small else [(args.small, args.small_zones, args.request_timeout)]) + (
        [] if args.skip_large else [(args.large, args.large_zones, args.large_request_timeout)]
    )
    summary = []
    for count, zones, request_timeout in sizes:
        summary += run_size(count, zones, request_timeout, args, work, speech_wav)
    print("summary:")
    for line in summary:
        print(line)


if __name__ == "__main__":
    main()

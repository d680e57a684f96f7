"""Time to deliver a 1-minute announcement to 9 and to 2,000 clusters: zone topics vs per node.

    .venv/bin/python bench/bench_delivery.py [--large 2000] [--skip-large]

The announcement is a real ~1 min, 48 kbps MP3 (espeak-ng Vietnamese speech looped to 60 s,
encoded by ffmpeg; ~360 KB = 6 chunks of 64 KiB). "Delivered" = every node has received the play
command, fetched the file chunk by chunk, verified every chunk and the whole file, stored it and
said ``scheduled``. The clock starts when the controller stand-in sends the first play command
and stops at the last ``scheduled`` receipt.

* zone: one play per zone topic; the controller gathers the ``need_audio`` requests until they
  pause for 0.2 s (2 s at most) and publishes each missing chunk once on the file's audio topic,
  which the broker fans out to every node fetching the file.
* per node: one play per node on its own topic and one copy of the file per node, all at once.
  (Each node's copy differs only in a trailing ID3v1 tag naming the node, so each copy has its
  own sha256 and audio topic and reaches exactly that node, as a unicast design would.)

Everything runs on this 2-core machine: mosquitto, the simulator (one process, one event loop,
in a thread) and the controller stand-in (same process, main thread, its own loop). Real nodes
each have their own CPU; here one core does the work of all of them, so (1) the duration and
level of the announcement are measured once and shared (a real node decodes its copy itself, in
parallel with the others; both modes get the same treatment), and (2) at 2,000 nodes the nodes
wait 10 s (not 3 s) without progress before asking again, so that the simulator's own queueing
is not mistaken for loss.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from broadcaster.broker import ManagedBroker  # noqa: E402
from speakers.player import Analysis, analyze  # noqa: E402
from speakers.protocol import PlayCommand, StopCommand  # noqa: E402
from speakers.simulator import Simulator, assign_zones, make_node_ids  # noqa: E402
from tests.mini_controller import MiniController  # noqa: E402

TEXT = (
    "Thông báo của Ủy ban nhân dân xã về việc tiêm phòng cho gia súc, gia cầm đợt một năm hai nghìn "
    "hai mươi sáu. Đề nghị các hộ chăn nuôi mang vật nuôi đến điểm tiêm tại nhà văn hóa thôn vào "
    "sáng thứ bảy. Xin cảm ơn bà con đã lắng nghe."
)


def make_announcement(folder: Path, seconds: float = 60.0) -> bytes:
    """A real spoken Vietnamese MP3 of about a minute at 48 kbps."""
    speech = folder / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "vi", "-s", "150", "-w", str(speech), TEXT], check=True)
    out = folder / "announcement.mp3"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-stream_loop", "-1", "-i", str(speech), "-t", str(seconds),
         "-ac", "1", "-ar", "22050", "-b:a", "48k", "-y", str(out)],
        check=True,
    )  # fmt: skip
    return out.read_bytes()


def tagged(audio: bytes, speaker_id: str) -> bytes:
    """The same MP3 with an ID3v1 tag naming the node: identical sound, its own sha256."""
    title = speaker_id.encode()[:30].ljust(30, b"\0")
    return audio + b"TAG" + title + b"\0" * 94 + b"\xff"


async def deliver(sim: Simulator, url: str, audio: bytes, mode: str, analysis: Analysis) -> dict:
    # A fresh client id and broadcast id per run: a persistent session would otherwise replay the
    # receipts queued for it during the previous runs.
    bid = f"delivery-{len(sim.node_ids())}-{mode}"
    mc = MiniController(url, client_id=f"bench-{bid}")
    await mc.start()
    ids = sim.node_ids()
    if mode == "zone":
        refs = dict.fromkeys(ids, mc.add_audio(audio))
    else:
        refs = {sid: mc.add_audio(tagged(audio, sid)) for sid in ids}
    for ref in {r.id: r for r in refs.values()}.values():
        sim.call(sim.analyzer.remember, ref.id, analysis)
    start_at = time.time() + 3600  # far ahead: delivery only, nothing plays
    plays = 0
    t0 = time.monotonic()
    if mode == "zone":
        mc.batch_s = 0.2
        for zone in sorted({sim.zone_of(s) for s in ids}):
            mc.send_zone(zone, PlayCommand(bid, refs[ids[0]], start_at))
            plays += 1
    else:
        for sid in ids:
            mc.send_to(sid, PlayCommand(bid, refs[sid], start_at))
            plays += 1
    final = ("scheduled", "failed", "expired")

    def ours(states: tuple[str, ...]) -> int:
        return sum(1 for _, e in mc.events if e.broadcast_id == bid and e.state in states)

    await mc.wait_for(lambda: ours(final) >= len(ids), 600, "delivery")
    elapsed = time.monotonic() - t0
    requests = ours(("need_audio",))
    failed = ours(("failed", "expired"))
    chunk_publishes = sum(mc.chunks_sent.values())
    for zone in sorted({sim.zone_of(s) for s in ids}):
        mc.send_zone(zone, StopCommand(reason="bench done"))
    await mc.link.flush(60)
    await mc.close()
    return {
        "elapsed": elapsed,
        "plays": plays,
        "chunk_publishes": chunk_publishes,
        "requests": requests,
        "failed": failed,
        "chunks": refs[ids[0]].chunk_count,
    }


def run_case(
    broker: ManagedBroker, work: Path, count: int, zones: int, mode: str, audio: bytes, analysis: Analysis
) -> dict:
    nodes = assign_zones(make_node_ids(count), zones)
    sim = Simulator(
        f"mqtt://127.0.0.1:{broker.port}",
        nodes=nodes,
        credentials=lambda s: (s, f"pw-{s}"),
        cache_root=work / f"sim-{count}-{mode}",
        health_interval_s=300,
        time_sync_interval_s=3600,
        time_sync_samples=1,
        request_timeout_s=3.0 if count < 100 else 10.0,
    )
    sim.start_in_thread(timeout=180)
    try:
        result = asyncio.run(deliver(sim, broker.controller_url, audio, mode, analysis))
    finally:
        sim.stop(timeout=120)
        shutil.rmtree(work / f"sim-{count}-{mode}", ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=9)
    parser.add_argument("--small-zones", type=int, default=3)
    parser.add_argument("--large", type=int, default=2000)
    parser.add_argument("--large-zones", type=int, default=100)
    parser.add_argument("--skip-large", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="loa-bench-delivery-"))
    work.chmod(0o755)
    audio = make_announcement(work)
    analysis = asyncio.run(analyze(work / "announcement.mp3"))
    counts = [args.small] + ([] if args.skip_large else [args.large])
    users = {s: f"pw-{s}" for n in counts for s in make_node_ids(n)}
    zones_of = {**assign_zones(make_node_ids(args.small), args.small_zones)}
    if not args.skip_large:
        zones_of.update(assign_zones(make_node_ids(args.large), args.large_zones))
    broker = ManagedBroker(work / "broker", users=users, node_zones=zones_of)
    broker.start()
    print(
        f"bench_delivery: announcement {len(audio) / 1000:.0f} KB MP3 (60 s, 48 kbps), real mosquitto on loopback"
    )
    rows = []
    try:
        for count in counts:
            zones = args.small_zones if count == args.small else args.large_zones
            for mode in ("zone", "per-node"):
                r = run_case(broker, work, count, zones, mode, audio, analysis)
                rows.append((count, zones, mode, r))
                print(
                    f"  {count:5d} clusters, {mode:8s}: delivered to all in {r['elapsed']:7.2f} s  "
                    f"({r['plays']} play publishes, {r['chunk_publishes']} chunk publishes = "
                    f"{r['chunk_publishes'] / r['chunks']:.1f} copies of the file sent, "
                    f"{r['requests']} need_audio requests, {r['failed']} failed)",
                    flush=True,
                )
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    for count in counts:
        by_mode = {m: r for c, _, m, r in rows if c == count}
        if "zone" in by_mode and "per-node" in by_mode:
            zone, per_node = by_mode["zone"], by_mode["per-node"]
            print(
                f"  {count} clusters: zone {zone['elapsed']:.2f} s vs per node {per_node['elapsed']:.2f} s "
                f"(per node / zone = {per_node['elapsed'] / zone['elapsed']:.2f}); file copies sent by the "
                f"controller: {zone['chunk_publishes'] / zone['chunks']:.0f} vs "
                f"{per_node['chunk_publishes'] / per_node['chunks']:.0f}, play publishes: "
                f"{zone['plays']} vs {per_node['plays']}"
            )


if __name__ == "__main__":
    main()

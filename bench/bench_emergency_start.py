"""A 10-sentence emergency with a slow cloud engine: request -> sound on all 9 clusters.

    .venv/bin/python bench/bench_emergency_start.py [--runs 5] [--latency 0.8] [--sentences 10]

A local HTTP stub of Google Cloud Text-to-Speech v1 (``POST /v1/text:synthesize``, the shape the
``google-cloud`` engine sends) answers every request after ``--latency`` seconds (800 ms) with the
same MP3 sentence (espeak-ng, made once at start); it is the only engine configured. A mosquitto on
a free loopback port, the real controller services on it, and 9 simulated clusters (clocks skewed
+-0.5 s, corrected by their sync). Each run submits a new emergency of ``--sentences`` sentences
(never in the store: a cache miss) to every cluster and measures, from just before the request,
when the first sample sounds on the last of the 9 clusters (the nodes' recorded timelines, true
wall time). Median of ``--runs``; the same with the emergency rendered whole first
(``broadcasts.stream_emergencies: false``) for comparison. Goal: <= 2 s streamed.
"""

from __future__ import annotations

import argparse
import base64
import http.server
import json
import logging
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from broadcaster.broadcasts import BroadcastsConfig  # noqa: E402
from broadcaster.domain import Announcement, Source, Tier  # noqa: E402
from broadcaster.models import Speaker, Zone  # noqa: E402
from broadcaster.services import build_services  # noqa: E402
from broadcaster.settings import load_settings  # noqa: E402
from speakers.simulator import Simulator, assign_zones, make_node_ids  # noqa: E402

KEY = "bench-key"
SENTENCE = "Bà con di chuyển ngay lên chỗ cao."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sentence_mp3(folder: Path) -> bytes:
    """One spoken sentence as MP3 (espeak-ng, then ffmpeg), what the stub answers every time."""
    wav, mp3 = folder / "s.wav", folder / "s.mp3"
    subprocess.run(["espeak-ng", "-v", "vi", "-w", str(wav), SENTENCE], check=True, capture_output=True)
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(wav), "-b:a", "48k", str(mp3)],
        check=True,
        capture_output=True,
    )
    return mp3.read_bytes()


class SlowGoogle(http.server.BaseHTTPRequestHandler):
    """Google Cloud TTS v1 ``text:synthesize``, ``latency`` seconds per request, concurrent."""

    audio = b""
    latency = 0.8
    calls = 0
    lock = threading.Lock()

    def do_POST(self) -> None:  # http.server API name
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path != "/v1/text:synthesize" or self.headers.get("X-Goog-Api-Key") != KEY:
            self.send_error(404)
            return
        assert body["input"]["text"] and body["audioConfig"]["audioEncoding"] == "MP3"
        time.sleep(self.latency)
        with SlowGoogle.lock:
            SlowGoogle.calls += 1
        answer = json.dumps({"audioContent": base64.b64encode(self.audio).decode()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        return None


def emergency_text(run: int, sentences: int) -> str:
    parts = [f"Khẩn cấp lần {run}: nước lũ đang lên rất nhanh."]
    parts += [f"Điều số {i} bà con cần làm ngay bây giờ là giữ bình tĩnh." for i in range(2, sentences + 1)]
    return " ".join(parts)


def silence_before(sim: Simulator, bid: int, seconds: float) -> bool:
    """Whether any cluster played silence frames (the next part was late) in the first ``seconds``
    of the stream: then its first word came later than the chime and its gap."""
    for entry in sim.timeline():
        if entry["broadcast_id"] == str(bid) and entry.get("kind") == "stream":
            first = min(e["t"] for e in sim.timeline(entry["speaker_id"]) if e["broadcast_id"] == str(bid))
            if entry["seq"] is None and entry["t"] < first + seconds:
                return True
    return False


def first_sound(sim: Simulator, bid: int, nodes: list[str]) -> float | None:
    """When the emergency's first sample sounded on the last of ``nodes`` (true wall time)."""
    firsts = []
    for node in nodes:
        entries = [e for e in sim.timeline(node) if e["broadcast_id"] == str(bid)]
        if not entries:
            return None
        firsts.append(min(e.get("out", e.get("start", 0.0)) for e in entries))
    return max(firsts)


gaps: list[bool] = []  # per streamed run: was the first sentence late (silence after the chime)?
# The opening chime and the silence after it (broadcaster/audio/chime.py, audio.chime_gap_ms).
CHIME_AND_GAP_S = 0.6 + 1.1 + 0.5


def run_case(stream: bool, args: argparse.Namespace, tmp: Path, port: int, url: str) -> list[float]:
    ids = make_node_ids(9)
    zones = assign_zones(ids, 3)
    instance = tmp / ("streamed" if stream else "whole")
    settings = load_settings(
        {
            "instance": instance,
            "mqtt_url": f"mqtt://127.0.0.1:{port}",
            "tts": {"order": ["google-cloud"], "google_cloud": {"url": url, "api_key": KEY}},
            "scheduling": {"schedules_dir": instance / "schedules"},
        },
        environ={},
    )
    config = BroadcastsConfig(stream_emergencies=stream)
    services = build_services(settings, scheduler=False, broadcasts_config=config)
    with services.sessions.begin() as session:
        for zone in sorted(set(zones.values())):
            session.add(Zone(id=zone, name=zone))
        for sid in ids:
            session.add(Speaker(id=sid, name=sid, zone_id=zones[sid]))
    services.start()
    sim = Simulator(f"mqtt://127.0.0.1:{port}", nodes=zones, clock_skew_s=0.5, health_interval_s=5, seed=3)
    latencies: list[float] = []
    try:
        sim.start_in_thread(timeout=60)
        deadline = time.monotonic() + 60
        while len(services.fleet.online_ids()) < 9 or not all(sim.agent(n).synced for n in ids):
            if time.monotonic() > deadline:
                raise SystemExit("clusters not online and synced")
            time.sleep(0.05)
        manager = services.broadcasts
        for run in range(args.runs + 1):  # run 0 warms up (imports, first ffmpeg, first connection)
            text = emergency_text(run + (100 if stream else 0), args.sentences)
            t0 = time.time()
            bid = manager.submit(Announcement(text=text, tier=Tier.EMERGENCY, source=Source.API))
            deadline = time.monotonic() + 120
            heard = None
            while heard is None and time.monotonic() < deadline:
                heard = first_sound(sim, bid, ids)
                time.sleep(0.005)
            if heard is None:
                raise SystemExit(f"emergency {bid} never sounded on all clusters")
            if run:
                latencies.append(heard - t0)
                if stream:
                    time.sleep(2.5)  # the chime and its gap, then the first sentence
                    gaps.append(silence_before(sim, bid, CHIME_AND_GAP_S + 0.5))
            manager.cancel(bid, by="bench")
            while manager.active_ids() or (manager.get(bid) or {}).get("state") not in ("cancelled", "done"):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            time.sleep(1.0)  # the clusters' stop lands before the next run
    finally:
        sim.stop()
        services.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--latency", type=float, default=0.8, help="seconds the stub takes per request")
    parser.add_argument("--sentences", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    tmp = Path(tempfile.mkdtemp(prefix="bench-emergency-"))
    port = free_port()
    (tmp / "mosquitto.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    broker = subprocess.Popen(["mosquitto", "-c", str(tmp / "mosquitto.conf")], stderr=subprocess.DEVNULL)
    SlowGoogle.audio = sentence_mp3(tmp)
    SlowGoogle.latency = args.latency
    stub = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowGoogle)
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{stub.server_address[1]}/v1/text:synthesize"
    results: dict[str, Any] = {}
    try:
        for stream in (True, False):
            results["streamed" if stream else "whole"] = run_case(stream, args, tmp, port, url)
    finally:
        stub.shutdown()
        stub.server_close()
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"{args.sentences}-sentence emergency, one cloud engine (Google Cloud TTS v1 stub) taking "
        f"{args.latency * 1000:.0f} ms per request, 4 requests at a time; 9 simulated clusters"
    )
    print(f"request -> first sound on all 9 clusters (median of {args.runs}, min-max):")
    for name, label in (("streamed", "streamed as synthesized (default)"), ("whole", "rendered whole first")):
        values = results[name]
        print(f"  {label:<36} {statistics.median(values):6.2f} s   ({min(values):.2f}-{max(values):.2f} s)")
    words = statistics.median(results["streamed"]) + CHIME_AND_GAP_S
    late = sum(gaps)
    print(
        f"  streamed: the chime sounds first; the first word {CHIME_AND_GAP_S:.1f} s later (median "
        f"{words:.2f} s after the request), the first sentence late in {late} of {len(gaps)} runs"
    )
    print(f"  stub requests: {SlowGoogle.calls}")


if __name__ == "__main__":
    main()

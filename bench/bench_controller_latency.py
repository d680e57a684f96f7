"""From ``POST /api/broadcasts`` to sound starting on all 9 simulated clusters, normal items and
emergency cut-ins, cache miss and hit.

    .venv/bin/python bench/bench_controller_latency.py [--runs 10] [--lead 2.0]

The real controller (managed mosquitto, fleet, dispatcher, scheduler, Flask API with a bearer
token through the test client), the 9 demo clusters of ``serve --demo`` (the real agent code with
the null player, clocks skewed by +-0.5 s) and espeak-ng as the engine (the offline default).
"Sound starts" is the latest true wall-clock start recorded in the clusters' timelines; the time
is measured from just before the POST. Cache miss: a new text each run (synthesis, mastering,
encoding). Cache hit: the same text again (no synthesis). Each airing is cancelled once it plays
everywhere, so the next run does not queue behind it.

The figure includes the synchronized-start lead (``lead_s``, default 2.0 s): the controller
deliberately schedules the start that far ahead so every cluster starts together.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from broadcaster.broadcasts import BroadcastsConfig  # noqa: E402
from broadcaster.demo import Demo  # noqa: E402
from broadcaster.services import build_services  # noqa: E402
from broadcaster.settings import load_settings  # noqa: E402
from broadcaster.web import create_app  # noqa: E402
from broadcaster.web.tokens import create_token  # noqa: E402
from broadcaster.web.users import add_user  # noqa: E402


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def wait(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.005)
    raise SystemExit(f"timed out waiting for {what}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs per case (default 10)")
    parser.add_argument("--lead", type=float, default=2.0, help="synchronized-start lead in seconds")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    instance = Path(tempfile.mkdtemp(prefix="loa-bench-latency-"))
    settings = load_settings(
        {
            "instance": instance,
            "demo": True,
            "tts": {"order": ["espeak-ng"]},
            "scheduling": {"schedules_dir": instance / "schedules"},
        },
        environ={},
    )
    services = build_services(settings, broadcasts_config=BroadcastsConfig(lead_s=args.lead))
    add_user(services.sessions, "bench", "bench-password", "admin")  # so the demo prints no admin
    demo = Demo(services)
    demo.prepare()
    services.start()
    sim = demo.start()
    app = create_app(settings, services, {"TESTING": True})
    client = app.test_client()
    token = create_token(services.sessions, "bench")
    headers = {"Authorization": f"Bearer {token}"}
    nodes = sim.node_ids()
    wait(lambda: len(services.fleet.online_ids()) == len(nodes), 30, "9 clusters online")
    # Let every node finish its first time sync (the simulator skews clocks by up to 0.5 s).
    wait(lambda: all(sim.agent(n).synced for n in nodes), 30, "time sync")

    def sounded(bid: str) -> list[float] | None:
        """When ``bid`` started sounding on each cluster (true wall time): a file's start, or a
        streamed emergency's first chunk; None until it sounds everywhere."""
        starts = []
        for node in nodes:
            mine = [x for x in sim.timeline(node) if x["broadcast_id"] == bid]
            if not mine:
                return None
            starts.append(min(x["out"] if x.get("kind") == "stream" else x["start"] for x in mine))
        return starts

    def one(text: str, tier: str = "normal") -> tuple[float, float]:
        t0 = time.time()
        body = {"text": text, "targets": ["all"], "tier": tier}
        response = client.post("/api/broadcasts", json=body, headers=headers)
        if response.status_code != 201:
            raise SystemExit(f"POST failed: {response.status_code} {response.get_json()}")
        bid = str(response.get_json()["id"])
        starts = wait(lambda: sounded(bid), 60, f"broadcast {bid} on all clusters")
        services.broadcasts.cancel(int(bid), by="bench")
        wait(lambda: services.broadcasts.get(int(bid))["state"] == "cancelled", 30, "cancel")
        wait(lambda: not services.broadcasts.active_ids(), 30, "clusters free")
        if tier == "emergency":  # a streamed one's recording is stored after its stream: a later hit
            wait(lambda: services.broadcasts.get(int(bid))["audio_key"], 60, "the recording stored")
        return max(starts) - t0, max(starts) - min(starts)

    one("Khởi động đo thời gian.")  # warm-up: imports, first render, first chunk transfer
    results: dict[str, list[tuple[float, float]]] = {"miss": [], "hit": [], "em_miss": [], "em_hit": []}
    for i in range(args.runs):
        results["miss"].append(one(f"Thông báo số {i + 1}: UBND xã mời bà con họp lúc 14h ngày {i + 1}/3."))
    hit_text = "Thông báo nhắc lại: UBND xã mời bà con họp lúc 14h."
    one(hit_text)  # render it once; every measured run below is a cache hit
    for _ in range(args.runs):
        results["hit"].append(one(hit_text))
    # Emergency cut-in: the lead comes from the clusters' measured delivery (above a floor); a cache
    # miss is streamed as it is synthesized (broadcasts.stream_emergencies), a hit plays the file.
    for i in range(args.runs):
        results["em_miss"].append(one(f"Khẩn cấp số {i + 1}: nước lũ lên nhanh ở thôn {i + 1}.", "emergency"))
    em_text = "Khẩn cấp: nước lũ lên nhanh, bà con di chuyển lên chỗ cao."
    one(em_text, "emergency")
    for _ in range(args.runs):
        results["em_hit"].append(one(em_text, "emergency"))

    print(f"POST /api/broadcasts -> sound starts on all {len(nodes)} clusters ({args.runs} runs each)")
    print(
        f"engine espeak-ng; normal items: synchronized-start lead {args.lead:.1f} s (included below); "
        "emergencies: lead from the measured delivery, floor "
        f"{services.broadcasts.policy.emergency_lead_floor_s:.1f} s"
    )
    print(f"{'case':<28}{'median s':>10}{'p95 s':>10}{'min s':>10}{'max s':>10}{'spread ms':>12}")
    for case, label in (
        ("miss", "normal, cache miss"),
        ("hit", "normal, cache hit"),
        ("em_miss", "emergency, miss (streamed)"),
        ("em_hit", "emergency, cache hit"),
    ):
        lat = [r[0] for r in results[case]]
        spread = max(r[1] for r in results[case]) * 1000
        print(
            f"{label:<28}{statistics.median(lat):>10.3f}{p95(lat):>10.3f}{min(lat):>10.3f}{max(lat):>10.3f}"
            f"{spread:>12.1f}"
        )
    print("spread = worst start difference between the 9 clusters (true wall time)")
    demo.stop()
    services.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

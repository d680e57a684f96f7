"""Federation figures (docs/federation.md), printed for the README.

1. **Emergency down**: time from ``POST /api/broadcasts`` (emergency, ``unit:*``) on a district to
   sound starting on every cluster of its communes: 2 levels, 2 communes x 9 simulated clusters.
   Each commune is a real controller (managed mosquitto, espeak-ng, SQLite, the simulator's real
   agent code) linked to the district over HTTP on loopback with the real signed long-poll link;
   the district serves its app with waitress (as ``broadcaster serve`` does). Includes each
   commune's render (a new text each run, so a cache miss) and the emergency lead
   (``broadcasts.emergency_lead_s``, 0.8 s by default).
2. **Reports up**: 50 simulated communes (link clients in a process of their own: signed sync
   requests carrying delivery reports, as ``federation.link`` sends them, not full controllers)
   report to one district (waitress, SQLite) at once; reports applied per second, and the latency
   of one request.

    .venv/bin/python bench/bench_federation.py [--runs 5] [--communes 50] [--requests 20] [--batch 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import waitress  # noqa: E402

from broadcaster.federation import signing  # noqa: E402
from broadcaster.federation.admin import set_upstream  # noqa: E402
from broadcaster.federation.http import fetch  # noqa: E402
from broadcaster.federation.models import FedBulletin  # noqa: E402
from broadcaster.federation.units import add_unit  # noqa: E402
from broadcaster.fleet import FleetConfig  # noqa: E402
from broadcaster.services import Services, build_services  # noqa: E402
from broadcaster.settings import load_settings  # noqa: E402
from broadcaster.web import create_app  # noqa: E402
from broadcaster.web.tokens import create_token  # noqa: E402
from speakers.simulator import Simulator  # noqa: E402

CLUSTERS = 9


def wait(predicate: Any, timeout: float, what: str, interval: float = 0.005) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"timed out waiting for {what}")


class Server:
    """An app served by waitress on a free loopback port, in a thread."""

    def __init__(self, app: Any) -> None:
        self.server = waitress.create_server(app, host="127.0.0.1", port=0, threads=16, ident="loa-bench")
        self.url = f"http://127.0.0.1:{self.server.effective_port}"  # type: ignore[union-attr]
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.close()


class Controller:
    def __init__(self, root: Path, name: str, clusters: int) -> None:
        settings = load_settings(
            {
                "instance": root / name,
                "tts": {"order": ["espeak-ng"]},
                "scheduling": {"schedules_dir": root / name / "schedules"},
                "alerts": {"instance_name": name},
            },
            environ={},
        )
        self.services: Services = build_services(
            settings, scheduler=False, fleet_config=FleetConfig(health_interval_s=5.0)
        )
        s = self.services
        self.passwords: dict[str, str] = {}
        if clusters:
            s.registry.create_zone(f"{name}-thon", "Thôn")
            for i in range(1, clusters + 1):
                _, self.passwords[f"{name}-{i:02d}"] = s.registry.create_speaker(
                    f"{name}-{i:02d}", f"Cụm loa {i}", f"{name}-thon"
                )
        s.start()
        self.sim: Simulator | None = None
        if clusters:
            broker = s.broker
            assert broker is not None
            self.sim = Simulator(
                f"mqtt://{broker.host}:{broker.port}",
                clusters,
                nodes=dict.fromkeys(self.passwords, f"{name}-thon"),
                credentials=lambda sid: (sid, self.passwords[sid]),
                health_interval_s=5.0,
                cache_root=root / name / "sim",
            )
            self.sim.start_in_thread(timeout=30)
            wait(lambda: len(s.fleet.online_ids()) == clusters, 30, f"{name} online")
        self.app = create_app(settings, s)
        self.server = Server(self.app)

    def close(self) -> None:
        self.server.stop()
        if self.sim is not None:
            self.sim.stop()
        self.services.close()


def _received(commune: Controller, text: str) -> float:
    from sqlalchemy import select

    from broadcaster.federation.models import FedInbox

    with commune.services.sessions() as session:
        when = session.scalar(select(FedInbox.received).where(FedInbox.text == text))
    return when.timestamp() if when is not None else float("nan")


arrivals: list[float] = []


def emergency_latency(root: Path, runs: int) -> list[float]:
    district = Controller(root, "huyen", 0)
    communes = [Controller(root, f"xa{i}", CLUSTERS) for i in (1, 2)]
    try:
        for commune in communes:
            set_upstream(
                commune.services.sessions,
                district.server.url,
                add_unit(district.services.sessions, commune.services.settings.alerts.instance_name),
            )
            assert commune.services.federation is not None
            wait(
                lambda c=commune: (
                    c.services.federation.link and c.services.federation.link.status()["state"] == "ok"
                ),
                20,
                "link up",
            )  # type: ignore[union-attr]
        district.services.targets.invalidate()
        assert district.services.federation is not None
        district.services.federation.outbound.refresh_units()
        token = create_token(district.services.sessions, "bench")
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        results: list[float] = []
        for run in range(runs):
            text = f"Khẩn cấp lần {run + 1}: nước lũ dâng nhanh, bà con sơ tán ngay lên vùng cao."
            marks = {c: len(c.sim.timeline()) for c in communes}  # type: ignore[union-attr]
            started = time.time()
            status, _, _ = fetch(
                "POST",
                district.server.url + "/api/broadcasts",
                body=signing.canonical_json({"text": text, "targets": ["unit:*"], "tier": "emergency"}),
                headers=headers,
                timeout=10,
                limit=100_000,
            )
            assert status == 201, status

            def sounded(marks: dict[Any, int] = marks) -> list[float] | None:
                starts = []
                for c in communes:
                    # An emergency not yet stored is streamed as it is synthesized: its timeline has
                    # one entry per chunk (kind "stream", "out" = when it sounds) and no tier.
                    first: dict[str, float] = {}
                    for e in c.sim.timeline()[marks[c] :]:  # type: ignore[union-attr]
                        if e.get("kind") == "stream" or e.get("tier") == "emergency":
                            at = e["out"] if e.get("kind") == "stream" else e["start"]
                            first[e["speaker_id"]] = min(at, first.get(e["speaker_id"], at))
                    if len(first) < CLUSTERS:
                        return None
                    starts += list(first.values())
                return starts

            starts = wait(sounded, 60, "sound on every cluster")
            results.append(max(starts) - started)
            received = [_received(c, text) - started for c in communes]
            arrivals.append(max(received))
            print(
                f"  run {run + 1}: {results[-1]:.2f} s (spread {max(starts) - min(starts):.3f} s; "
                f"bulletin stored by the communes after {max(received):.2f} s)",
                flush=True,
            )
            for c in communes:  # the emergency ends before the next one
                wait(
                    lambda c=c: (
                        not any(
                            b["state"] in ("sending", "playing", "rendering")
                            for b in c.services.broadcasts.list(limit=5)
                        )
                    ),
                    60,
                    "done",
                )
        return results
    finally:
        for c in [*communes, district]:
            c.close()


STATES = ["sent", "received", "scheduled", "playing", "done"]


def run_clients(
    url: str, tokens: dict[str, str], bulletin_id: int, requests: int, batch: int
) -> dict[str, Any]:
    """The simulated communes, one thread each (run in a process of their own, so the clients'
    JSON and HTTP work is not counted against the district)."""
    bodies: dict[str, list[bytes]] = {}
    for unit in tokens:  # built before the clock starts
        seq, bodies[unit] = 0, []
        for _ in range(requests):
            reports = []
            for _ in range(batch):
                seq += 1
                state = STATES[seq % len(STATES)]
                data = {"bulletin": str(bulletin_id), "unit": "", "speaker": f"loa-{seq % CLUSTERS + 1:02d}",
                        "state": state, "seconds_played": 30.0 if state == "done" else None}  # fmt: skip
                reports.append({"seq": seq, "kind": "delivery", "data": data})
            message = {
                "version": 1,
                "unit": unit,
                "link": f"bench-{unit}",
                "ack": 0,
                "wait": 0,
                "reports": reports,
            }
            bodies[unit].append(signing.canonical_json(message))
    latencies: list[float] = []
    retries: list[int] = []
    lock = threading.Lock()

    def commune(unit: str) -> None:
        key = signing.derive_key(tokens[unit])
        for body in bodies[unit]:
            t0 = time.perf_counter()
            for _attempt in range(10):  # as the link does: a refused or failed exchange is retried
                headers = signing.sign_request(key, "POST", "/federation/v1/sync", unit, body, time.time())
                headers["Content-Type"] = "application/json"
                status, _, answer = fetch(
                    "POST", url, body=body, headers=headers, timeout=120, limit=1_000_000
                )
                if status == 200:
                    break
                with lock:
                    retries.append(status)
                time.sleep(0.5)
            else:
                raise SystemExit(f"{unit}: HTTP {status} {answer[:200]!r}")
            with lock:
                latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=commune, args=(u,)) for u in tokens]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"seconds": time.perf_counter() - t0, "latencies": latencies, "retries": len(retries)}


def report_throughput(root: Path, communes: int, requests: int, batch: int) -> dict[str, float]:
    import json
    import subprocess

    district = Controller(root, "huyen-tp", 0)
    try:
        sessions = district.services.sessions
        tokens = {f"xa-{i:02d}": add_unit(sessions, f"xa-{i:02d}") for i in range(communes)}
        with sessions.begin() as session:
            bulletin = FedBulletin(
                tier="emergency", title="bench", text="bench", units=sorted(tokens), state="sent"
            )
            session.add(bulletin)
            session.flush()
            bulletin_id = bulletin.id
        job = root / "clients.json"
        job.write_text(json.dumps({"url": district.server.url + "/federation/v1/sync", "tokens": tokens,
                                   "bulletin": bulletin_id, "requests": requests, "batch": batch}))  # fmt: skip
        out = subprocess.run(
            [sys.executable, __file__, "--clients", str(job)], check=True, capture_output=True, text=True
        ).stdout
        result = json.loads(out.strip().splitlines()[-1])
        hub = district.services.federation.hub.stats  # type: ignore[union-attr]
        total = communes * requests * batch
        assert hub["reports_applied"] == total, hub
        latencies = sorted(result["latencies"])
        return {
            "reports": total,
            "seconds": result["seconds"],
            "per_s": total / result["seconds"],
            "median_ms": statistics.median(latencies) * 1000,
            "p95_ms": latencies[int(0.95 * (len(latencies) - 1))] * 1000,
            "retries": result["retries"],
        }
    finally:
        district.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--communes", type=int, default=50)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--skip-emergency", action="store_true")
    parser.add_argument("--clients", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.clients is not None:  # the client process of report_throughput
        import json

        job = json.loads(args.clients.read_text())
        result = run_clients(job["url"], job["tokens"], job["bulletin"], job["requests"], job["batch"])
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory(prefix="bench-federation-") as tmp:
        root = Path(tmp)
        if not args.skip_emergency:
            print(
                f"Emergency from a district to sound on 2 communes x {CLUSTERS} clusters ({args.runs} runs):"
            )
            lat = emergency_latency(root, args.runs)
            lat.sort()
            print(
                f"  median {statistics.median(lat):.2f} s, worst {lat[-1]:.2f} s, best {lat[0]:.2f} s "
                "(includes each commune's espeak-ng render and the 0.8 s emergency lead); "
                f"the bulletin reached both communes after a median {statistics.median(arrivals):.2f} s"
            )
        print(
            f"Reports up: {args.communes} communes x {args.requests} requests x {args.batch} delivery reports:"
        )
        r = report_throughput(root, args.communes, args.requests, args.batch)
        print(
            f"  {r['reports']:,} reports applied in {r['seconds']:.1f} s = {r['per_s']:,.0f} reports/s; "
            f"one request of {args.batch}: median {r['median_ms']:.0f} ms, p95 {r['p95_ms']:.0f} ms "
            f"({r['retries']} retried)"
        )


if __name__ == "__main__":
    main()

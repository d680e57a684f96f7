"""The simulator at 2,000 clusters: connections held, health messages per second, memory per
simulated cluster, and the memory of one real agent process.

    .venv/bin/python bench/bench_simulator.py [--count 2000] [--health-interval 2] [--hold 30]

A managed Mosquitto with one user per node (password file + ACL). The simulator runs every node
in this process on one event loop; health messages are counted by an independent subscriber
(this script in ``--watch`` mode, its own process, as the controller user), and the broker's own
count of connected clients is read from ``$SYS``. Memory per cluster = (this process's RSS with all nodes connected and
reporting - RSS before the simulator started) / N. The single agent is ``speaker-agent run
--player null`` as its own process; its RSS is read once it has sent its second health message.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from broadcaster.broker import ManagedBroker  # noqa: E402
from speakers.simulator import Simulator, assign_zones, make_node_ids  # noqa: E402


def rss_kb(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def watcher(broker: ManagedBroker, *topics: str) -> subprocess.Popen[str]:
    """This script in watcher mode, as its own process: it subscribes as the controller and prints
    ``<count> <last payload>`` every 0.2 s."""
    return subprocess.Popen(
        [sys.executable, __file__, "--watch", broker.controller_url, *topics],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


async def watch(url: str, topics: list[str]) -> None:
    from speakers.mqtt import Link, parse_mqtt_url

    count = 0
    last = b""

    def on_message(msg) -> None:  # type: ignore[no-untyped-def]
        nonlocal count, last
        count += 1
        last = msg.payload

    link = Link(f"bench-watch-{time.monotonic_ns()}", parse_mqtt_url(url), on_message=on_message)
    for topic in topics:
        link.want(topic, qos=0)
    task = asyncio.create_task(link.run())
    await link.connected.wait()
    while True:
        print(count, last.decode("utf-8", "replace")[:60], flush=True)
        await asyncio.sleep(0.2)
    await task


class Counter(threading.Thread):
    """Follows a watcher process's output."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        super().__init__(daemon=True)
        self.proc = proc
        self.count = 0
        self.last = ""
        self.ready = threading.Event()

    def run(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            count, _, last = line.rstrip("\n").partition(" ")
            self.count, self.last = int(count), last
            self.ready.set()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def broker_clients(broker: ManagedBroker) -> int:
    counter = Counter(watcher(broker, "$SYS/broker/clients/connected"))
    counter.start()
    # The retained value can be old: wait for the next refresh (mosquitto publishes $SYS every 10 s).
    deadline = time.monotonic() + 30
    while counter.count < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    counter.stop()
    return int(counter.last or -1)


def single_agent_rss(broker: ManagedBroker, work: Path) -> tuple[int, float]:
    url = broker.url_for("solo-01", "pw-solo-01")
    health = Counter(watcher(broker, "loa/speakers/solo-01/health"))
    health.start()
    health.ready.wait(30)
    agent_bin = Path(sys.executable).with_name("speaker-agent")
    command = [str(agent_bin)] if agent_bin.exists() else [sys.executable, "-m", "speakers"]
    t0 = time.monotonic()
    agent = subprocess.Popen(
        [*command, "run", "--id", "solo-01", "--zone", "thon-1", "--mqtt-url", url, "--player", "null",
         "--cache-dir", str(work / "solo-cache"), "--health-interval", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while health.count < 2:  # running steadily: its second health message
            if time.monotonic() - t0 > 60:
                raise RuntimeError("the single agent sent no health")
            time.sleep(0.05)
        return rss_kb(agent.pid), time.monotonic() - t0
    finally:
        health.stop()
        agent.terminate()
        agent.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--zones", type=int, default=100)
    parser.add_argument("--health-interval", type=float, default=2.0)
    parser.add_argument("--hold", type=float, default=30.0, help="seconds to hold the connections and count")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="loa-bench-sim-"))
    work.chmod(0o755)
    nodes = assign_zones(make_node_ids(args.count), args.zones)
    users = {s: f"pw-{s}" for s in nodes} | {"solo-01": "pw-solo-01"}
    broker = ManagedBroker(work / "broker", users=users, node_zones={**nodes, "solo-01": "thon-1"})
    broker.start()
    try:
        solo_rss, solo_start = single_agent_rss(broker, work)
        before = rss_kb()
        sim = Simulator(
            f"mqtt://127.0.0.1:{broker.port}",
            nodes=nodes,
            credentials=lambda s: (s, f"pw-{s}"),
            health_interval_s=args.health_interval,
            cache_root=work / "sim",
            time_sync_samples=1,
        )
        t0 = time.monotonic()
        sim.start_in_thread(timeout=300)
        connect_s = time.monotonic() - t0
        # Let every node send its first health (they start spread over one interval).
        time.sleep(args.health_interval * 1.5)
        counter = Counter(watcher(broker, "loa/speakers/+/health"))
        counter.start()
        counter.ready.wait(30)  # the subscription is in place
        n0, t_start = counter.count, time.monotonic()
        time.sleep(args.hold)
        received = counter.count - n0
        window = time.monotonic() - t_start
        held = sim.connected_count()
        on_broker = broker_clients(broker)
        after = rss_kb()
        stats = sim.stats()
        counter.stop()
        t1 = time.monotonic()
        sim.stop(timeout=300)
        stop_s = time.monotonic() - t1
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)

    n = args.count
    print(
        f"bench_simulator: {n} simulated clusters in one process, one event loop; real mosquitto, one user per node"
    )
    print(f"  all {n} connected in {connect_s:.1f} s; clean stop of all in {stop_s:.1f} s")
    print(f"  connections held after {args.hold:.0f} s: {held}/{n} (simulator), {on_broker} clients on the broker "
          f"($SYS, incl. 2 watcher processes); reconnects {stats['reconnects']}")  # fmt: skip
    print(f"  health messages: {received / window:.0f}/s received by a separate subscriber "
          f"(interval {args.health_interval:g} s -> expected {n / args.health_interval:.0f}/s)")  # fmt: skip
    print(f"  memory: {before / 1024:.0f} MB before, {after / 1024:.0f} MB with {n} clusters -> "
          f"{(after - before) / n:.1f} KB per simulated cluster")  # fmt: skip
    print(f"  one real agent process (speaker-agent run --player null): RSS {solo_rss / 1024:.1f} MB, "
          f"second health {solo_start:.1f} s after launch")  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--watch":
        asyncio.run(watch(sys.argv[2], sys.argv[3:]))
    else:
        main()

"""The simulator over TLS with a pinned CA (one TLS context for every simulated cluster), and a
fleet shared between several ``speaker-agent simulate --shard K/N`` processes (real mosquitto with
its TLS node listener and the controller's local CA)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from speakers.simulator import Simulator, SimulatorError, assign_zones, make_node_ids
from tests.fixtures_broker import BrokerFixture

pytestmark = pytest.mark.integration


def test_simulated_clusters_pin_the_ca_and_share_one_tls_context(mosquitto_factory) -> None:  # type: ignore[no-untyped-def]
    fx: BrokerFixture = mosquitto_factory(tls=True)
    nodes = assign_zones(make_node_ids(6), 2)
    fx.add_nodes(nodes)
    ca_pem = fx.broker.ca_pem
    shard = Simulator(
        fx.broker.node_url, nodes=nodes, credentials=fx.credentials, ca_pem=ca_pem, shard=(1, 3)
    )
    assert shard.node_ids() == ["loa-02", "loa-05"]
    shard.start_in_thread(timeout=20)
    try:
        agents = [shard.agent(s) for s in shard.node_ids()]
        assert shard.connected_count() == 2
        assert all(a.link.url.tls for a in agents)
        assert agents[0].link.tls_context is agents[1].link.tls_context  # one context, not one per node
    finally:
        shard.stop()
    with pytest.raises(SimulatorError, match="mqtts"):
        Simulator(fx.base_url, nodes=nodes, ca_pem=ca_pem)
    with pytest.raises(SimulatorError, match="shard"):
        Simulator(fx.broker.node_url, nodes=nodes, ca_pem=ca_pem, shard=(3, 3))


def test_another_ca_is_refused(mosquitto_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from broadcaster.broker.tls import TlsMaterial

    fx: BrokerFixture = mosquitto_factory(tls=True)
    fx.add_nodes({"loa-01": None})
    other = TlsMaterial(tmp_path / "other", "127.0.0.1")
    other.ensure()
    sim = Simulator(
        fx.broker.node_url, nodes={"loa-01": None}, credentials=fx.credentials, ca_pem=other.ca_pem()
    )
    with pytest.raises(SimulatorError, match="not signed by the trusted CA"):
        sim.start_in_thread(timeout=3)


def test_simulate_command_shards_over_tls(mosquitto_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    fx: BrokerFixture = mosquitto_factory(tls=True)
    fx.add_nodes(assign_zones(make_node_ids(5), 1))
    ca = tmp_path / "ca.crt"
    ca.write_text(fx.broker.ca_pem, encoding="ascii")
    procs = []
    try:
        for k in range(2):
            cmd = [sys.executable, "-m", "speakers", "simulate", "--count", "5", "--zones", "1", "--mqtt-url",
                   fx.broker.node_url, "--password-template", "pw-{id}", "--ca-file", str(ca),
                   "--shard", f"{k}/2"]  # fmt: skip
            procs.append(
                subprocess.Popen(
                    cmd,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            )
        lines = [p.stdout.readline().decode() for p in procs]  # type: ignore[union-attr]
        assert "3 simulated clusters connected" in lines[0], lines
        assert "2 simulated clusters connected" in lines[1], lines
        for proc in procs:
            proc.send_signal(signal.SIGINT)
            assert proc.wait(15) == 0
        bad = subprocess.run(
            [
                sys.executable,
                "-m",
                "speakers",
                "simulate",
                "--mqtt-url",
                fx.broker.node_url,
                "--shard",
                "2/2",
            ],
            capture_output=True,
            text=True,
        )
        assert bad.returncode == 2 and "--shard" in bad.stderr and "Traceback" not in bad.stderr
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()

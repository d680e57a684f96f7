"""The cluster simulator (thread and async APIs) and the ``speaker-agent`` command, against a
real Mosquitto with per-node credentials."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from speakers.protocol import PlayCommand
from speakers.simulator import Simulator, SimulatorError, assign_zones, make_node_ids
from tests.mini_controller import MiniController, make_tone_mp3, run

pytestmark = pytest.mark.integration

AGENT = [str(Path(sys.executable).with_name("speaker-agent"))]
if not Path(AGENT[0]).exists():
    AGENT = [sys.executable, "-m", "speakers"]


@pytest.fixture(scope="module")
def tone(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_tone_mp3(tmp_path_factory.mktemp("sim") / "tone.mp3", 1.0)


def test_ids_and_zones() -> None:
    assert make_node_ids(9) == [f"loa-0{i}" for i in range(1, 10)]
    assert make_node_ids(120, "sim-")[-1] == "sim-120" and make_node_ids(120, "sim-")[0] == "sim-001"
    zones = assign_zones(make_node_ids(9), 3)
    assert [zones[f"loa-0{i}"] for i in range(1, 10)] == ["thon-1"] * 3 + ["thon-2"] * 3 + ["thon-3"] * 3
    assert set(assign_zones(make_node_ids(5), ["Đông", "Tây"]).values()) == {"Đông", "Tây"}
    with pytest.raises(SimulatorError, match="invalid"):
        Simulator("mqtt://127.0.0.1:1", nodes={"bad id": None})


def test_simulator_in_a_thread(mosquitto, tone: bytes) -> None:
    """What the controller's demo and end-to-end tests do: a plain-thread caller."""
    sim = Simulator(
        mosquitto.base_url,
        9,
        3,
        credentials=mosquitto.credentials,
        clock_skew_s=2.0,
        seed=7,
        health_interval_s=0.5,
    )
    mosquitto.add_nodes(sim.zones())
    sim.start_in_thread(timeout=20)
    try:
        assert sim.node_ids() == [f"loa-0{i}" for i in range(1, 10)]
        assert sim.zone_of("loa-05") == "thon-2" and sim.connected_count() == 9
        assert max(abs(sim.clock_offset_of(s)) for s in sim.node_ids()) > 0.5

        async def scenario() -> None:
            mc = MiniController(mosquitto.url)
            await mc.start()
            await mc.wait_for(
                lambda: len(mc.status) == 9 and all(s.online for s in mc.status.values()), 10, "birth"
            )
            await mc.wait_for(lambda: all(sim.agent(s).synced for s in sim.node_ids()), 10, "clock sync")
            ref = mc.add_audio(tone)
            start_at = time.time() + 1.0
            mc.send_zone("thon-2", PlayCommand("b1", ref, start_at, title="Họp thôn 2"))
            for sid in ("loa-04", "loa-05", "loa-06"):
                await mc.wait_state(sid, "b1", "done")
            played = sim.timeline()
            assert sorted(e["speaker_id"] for e in played) == ["loa-04", "loa-05", "loa-06"]
            starts = [e["start"] for e in played]
            assert max(starts) - min(starts) < 0.1  # clocks were up to 2 s apart
            assert [e["broadcast_id"] for e in sim.timeline("loa-05")] == ["b1"]
            assert sim.timeline("loa-01") == []
            await mc.wait_for(lambda: all(mc.health[s] for s in sim.node_ids()), 10, "health from every node")

            await asyncio.to_thread(sim.kill, "loa-05")  # power cut: the will says offline
            await mc.wait_for(lambda: mc.status["loa-05"].online is False, 10, "last will")
            assert mc.status["loa-05"].ts is None
            await asyncio.to_thread(sim.revive, "loa-05")
            await mc.wait_for(lambda: mc.status["loa-05"].online, 10, "back online")
            assert sim.stats()["connected"] == 9

            await asyncio.to_thread(sim.stop)
            await mc.wait_for(lambda: not any(s.online for s in mc.status.values()), 10, "goodbyes")
            await mc.close()

        run(scenario())
    finally:
        sim.stop()
    assert not sim.cache_root.exists()  # its temporary cache is gone


def test_dropped_connections_come_back(mosquitto) -> None:
    async def scenario() -> None:
        sim = Simulator(
            mosquitto.url, 3, 1, drop_rate_per_min=90.0, seed=3, reconnect_min_s=0.05, reconnect_max_s=0.2
        )
        await sim.start(timeout=10)
        deadline = time.monotonic() + 20
        while sim.stats()["drops"] < 3 or sim.connected_count() < 3:
            assert time.monotonic() < deadline, sim.stats()
            await asyncio.sleep(0.05)
        assert sim.stats()["reconnects"] >= 1
        sim.agent("loa-01").link.drop()  # and one on purpose
        await asyncio.sleep(0)  # let the drop happen
        await sim.wait_connected(10)
        await sim.aclose()
        assert not sim.cache_root.exists()

    run(scenario())


def test_slow_links_still_start_together(mosquitto, tone: bytes) -> None:
    """200 ms each way: the round-trip compensation keeps the start on time."""

    async def scenario() -> None:
        mc = MiniController(mosquitto.url)
        await mc.start()
        sim = Simulator(mosquitto.url, 3, 1, latency_ms=200, clock_skew_s=1.0, seed=5, time_sync_samples=3)
        await sim.start(timeout=10)
        await mc.wait_for(lambda: all(sim.agent(s).synced for s in sim.node_ids()), 15, "clock sync")
        for sid in sim.node_ids():
            assert sim.agent(sid).sync_rtt_s >= 0.4
        ref = mc.add_audio(tone)
        start_at = time.time() + 2.5
        mc.send_zone("thon-1", PlayCommand("slow", ref, start_at))
        for sid in sim.node_ids():
            await mc.wait_state(sid, "slow", "done", timeout=20)
        for entry in sim.timeline():
            assert abs(entry["start"] - start_at) < 0.1  # 200 ms off without compensation
        await sim.aclose()
        assert not sim.cache_root.exists()
        await mc.close()

    run(scenario())


def test_unreachable_broker_is_a_clear_error() -> None:
    sim = Simulator("mqtt://127.0.0.1:1", 2, 1, reconnect_min_s=0.05, reconnect_max_s=0.1)
    with pytest.raises(SimulatorError, match="2 of 2 simulated nodes did not connect"):
        sim.start_in_thread(timeout=1)


# ------------------------------------------------------------------------ the command


def test_speaker_agent_run_as_a_real_process(mosquitto, tone: bytes, tmp_path: Path) -> None:
    url = mosquitto.add_node("loa-01", zone="thon-1")
    cmd = [*AGENT, "run", "--id", "loa-01", "--zone", "thon-1", "--mqtt-url", url, "--player", "file",
           "--output-dir", str(tmp_path / "played"), "--cache-dir", str(tmp_path / "cache"), "--health-interval", "0.5"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:

        async def scenario() -> None:
            mc = MiniController(mosquitto.url)
            await mc.start()
            await mc.wait_for(
                lambda: "loa-01" in mc.status and mc.status["loa-01"].online, 15, "agent online"
            )
            await mc.wait_for(
                lambda: mc.health["loa-01"] and mc.health["loa-01"][-1].clock_offset_ms is not None, 10
            )
            ref = mc.add_audio(tone)
            mc.send_zone("thon-1", PlayCommand("b1", ref, time.time() + 1.0, title="Loa phường"))
            done = await mc.wait_state("loa-01", "b1", "done")
            assert done.seconds_played == pytest.approx(1.0, abs=0.15)
            proc.send_signal(signal.SIGTERM)
            await mc.wait_for(lambda: mc.status["loa-01"].online is False, 10, "goodbye")
            assert mc.status["loa-01"].ts is not None  # said by the agent, not the will
            await mc.close()

        run(scenario())
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        output = proc.communicate()[0].decode("utf-8", "replace")
    assert len(list((tmp_path / "played").glob("*.wav"))) == 1
    assert len(list((tmp_path / "cache").glob("*.mp3"))) == 1
    assert "Traceback" not in output


def test_speaker_agent_simulate_command(mosquitto) -> None:
    ids = assign_zones(make_node_ids(4, "sim-"), 2)
    mosquitto.add_nodes(ids)
    cmd = [*AGENT, "simulate", "--count", "4", "--zones", "2", "--id-prefix", "sim-", "--mqtt-url",
           mosquitto.base_url, "--password-template", "pw-{id}", "--clock-skew", "1.5"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert "4 simulated clusters connected" in line, line
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_speaker_agent_reports_bad_arguments() -> None:
    result = subprocess.run(
        [*AGENT, "run", "--id", "loa 01", "--mqtt-url", "mqtt://h:1"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "id: 'loa 01' is not a valid id" in result.stderr and "Traceback" not in result.stderr

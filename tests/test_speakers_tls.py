"""The agent over TLS to a real mosquitto: the pinned CA is the only one trusted, the host name
is checked, and every refusal (wrong CA, expired certificate, wrong host, wrong password) is one
plain log line. ``speaker-agent run --config agent.yaml`` needs nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from speakers.protocol import PlayCommand
from tests.fixtures_controller import wait_until
from tests.mini_controller import MiniController, make_node, make_tone_mp3, run, until

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.fixtures_tls"]

AGENT = [sys.executable, "-m", "speakers"]


@pytest.fixture(scope="module")
def tone(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_tone_mp3(tmp_path_factory.mktemp("tone") / "tone.mp3", 1.0)


def test_a_node_plays_over_tls_with_its_pinned_ca(tls_broker, tmp_path: Path, tone: bytes) -> None:
    broker = tls_broker(nodes={"loa-01": "thon-1"})

    async def scenario() -> None:
        mc = MiniController(broker.url)
        await mc.start()
        node = await make_node(broker, "loa-01", "thon-1", tmp_path / "c").start()
        assert node.agent.link.url.tls and node.agent.link.url.port == broker.tls_port
        assert node.agent.link.url.username == "loa-01"  # the speaker id, from the config's password
        ref = mc.add_audio(tone, chunk_size=4096)
        mc.send_zone("thon-1", PlayCommand("b1", ref, time.time() + 0.8, title="Thông báo"))
        done = await mc.wait_state("loa-01", "b1", "done")
        assert done.seconds_played == pytest.approx(1.0, abs=0.15)
        await node.stop()
        await mc.close()

    run(scenario())


@pytest.mark.parametrize(
    ("cert", "pin_other", "expected"),
    [
        ("other-ca", False, "TLS: the broker's certificate is not signed by the trusted CA"),
        ("good", True, "TLS: the broker's certificate is not signed by the trusted CA"),
        ("expired", False, "TLS: the broker's certificate has expired"),
        ("wrong-host", False, "TLS: the broker's certificate is not for host '127.0.0.1'"),
    ],
)
def test_a_refused_certificate_is_one_plain_log_line(
    tls_broker,
    pki,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    cert: str,
    pin_other: bool,
    expected: str,
) -> None:
    broker = tls_broker(cert=cert, nodes={"loa-01": None})
    sections = {"ca_pem": pki.other_ca_pem} if pin_other else {}

    async def scenario() -> None:
        node = make_node(broker, "loa-01", None, tmp_path / "c", sections=sections)
        task = asyncio.create_task(node.agent.run())
        await until(lambda: node.agent.link.attempts >= 1, what="a refused connection attempt")
        assert not node.agent.connected.is_set()
        node.kill()
        await task

    with caplog.at_level(logging.WARNING, logger="speakers.mqtt"):
        run(scenario())
    lines = [r.getMessage() for r in caplog.records if r.name == "speakers.mqtt"]
    assert any(expected in line for line in lines), lines
    refused = next(r for r in caplog.records if expected in r.getMessage())
    assert refused.levelno == logging.ERROR  # it does not mend itself: a technician must act
    assert "mqtts://loa-01:***@127.0.0.1" in refused.getMessage()  # where, without the password
    assert "pw-loa-01" not in "\n".join(lines)


def test_a_wrong_password_is_a_refused_login(
    tls_broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker = tls_broker(nodes={"loa-01": None})

    async def scenario() -> str:
        node = make_node(broker, "loa-01", None, tmp_path / "c", sections={"password": "not-the-password"})
        task = asyncio.create_task(node.agent.run())
        await until(lambda: node.agent.link.attempts >= 1, what="a refused login")
        node.kill()
        await task
        return node.agent.health().last_error or ""

    with caplog.at_level(logging.WARNING, logger="speakers.mqtt"):
        last_error = run(scenario())
    # mosquitto says "not authorized" for a wrong password; either way the line says what to do.
    assert last_error.startswith("login refused: ") and "password" in last_error and "re-enroll" in last_error
    assert any("login refused" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)


def _agent_yaml(path: Path, broker, speaker_id: str, zone: str, cache: Path, played: Path) -> Path:
    """An agent.yaml as ``broadcaster speaker enroll`` writes it, plus a file player for the test."""
    ca = "\n".join(f"  {line}" for line in broker.pki.ca_pem.strip().splitlines())
    path.write_text(
        f"id: {speaker_id}\nzone: {zone}\nmqtt_url: {broker.node_url(speaker_id)}\n"
        f"password: {broker.password(speaker_id)}\nca_pem: |\n{ca}\ncache_dir: {cache}\n"
        f"player:\n  kind: file\n  output_dir: {played}\nhealth:\n  interval_s: 0.5\n",
        encoding="utf-8",
    )
    return path


def test_speaker_agent_run_needs_only_its_config_and_tells_systemd(
    tls_broker, tmp_path: Path, tone: bytes
) -> None:
    broker = tls_broker(nodes={"loa-01": "thon-1"})
    config = _agent_yaml(
        tmp_path / "agent.yaml", broker, "loa-01", "thon-1", tmp_path / "cache", tmp_path / "played"
    )
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(0.2)
    said: list[str] = []  # what the agent told "systemd", read as it comes
    listening = threading.Event()
    listening.set()

    def listen() -> None:
        while listening.is_set():
            with contextlib.suppress(TimeoutError):
                said.append(notify.recv(4096).decode())

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "200000"}
    procs: list[subprocess.Popen[bytes]] = []

    async def scenario() -> None:
        mc = MiniController(broker.url)
        await mc.start()  # before the agent: its first clock sync gets answers
        proc = subprocess.Popen([*AGENT, "run", "--config", str(config)], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=env)  # fmt: skip
        procs.append(proc)
        await mc.wait_for(lambda: "loa-01" in mc.status and mc.status["loa-01"].online, 15, "online")
        await mc.wait_for(lambda: mc.health["loa-01"] and mc.health["loa-01"][-1].clock_offset_ms is not None)
        ref = mc.add_audio(tone)
        mc.send_zone("thon-1", PlayCommand("b1", ref, time.time() + 1.0))
        await mc.wait_state("loa-01", "b1", "done")
        await until(lambda: sum(m.startswith("WATCHDOG=1") for m in said) >= 3, what="watchdog pings")
        proc.send_signal(signal.SIGTERM)
        await mc.wait_for(lambda: mc.status["loa-01"].online is False, 10, "goodbye")
        await mc.close()

    output = ""
    try:
        run(scenario())
        assert procs[0].wait(10) == 0
        wait_until(lambda: any(m.startswith("STOPPING=1") for m in said), what="STOPPING=1")
    finally:
        listening.clear()
        listener.join(5)
        notify.close()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            output = proc.communicate()[0].decode("utf-8", "replace")
    assert said[0].startswith("READY=1"), said[:3]
    assert "STATUS=connected to the broker" in "\n".join(said)
    assert "Traceback" not in output
    assert len(list((tmp_path / "played").glob("*.wav"))) == 1

"""Issue 9, "done when": a real ``broadcaster serve`` with its TLS node listener on loopback, a
cluster enrolled with the CLI while it runs, a real ``speaker-agent run --config agent.yaml``
process, a broadcast aired to ``done``; then a wrong CA, an expired server certificate, a disabled
cluster and a reset password each refused with one clear line in the agent's log, and a deleted
cluster's live connection cut within 5 s. Everything is real: mosquitto, openssl, espeak-ng,
ffmpeg, SQLite, the agent's file player."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from broadcaster.broker import free_port
from broadcaster.broker.orphans import brokers_of
from broadcaster.broker.tls import TlsMaterial
from speakers.yamlio import parse_yaml
from tests.fixtures_controller import wait_until
from tests.processes import AgentProcess, ServeProcess

pytestmark = pytest.mark.integration

CUT_WITHIN_S = 5.0
WRONG_CA = "TLS: the broker's certificate is not signed by the trusted CA"
EXPIRED = "TLS: the broker's certificate has expired"
REFUSED = "login refused: not authorized"
LOST = "MQTT link to mqtts://loa-07:***@127.0.0.1"
CONNECTED = "loa-07: connected (session"


@pytest.fixture
def root() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="loa-enroll-"))
    folder.chmod(0o755)  # the mosquitto user must reach the broker folder, as in a real install
    yield folder
    conf = (folder / "instance" / "mosquitto" / "mosquitto.conf").resolve()
    for pid in brokers_of(conf):
        os.kill(pid, signal.SIGKILL)  # only if the test failed: never leave one behind
    shutil.rmtree(folder, ignore_errors=True)


def _for_test(agent_yaml: Path, root: Path, name: str, ca_pem: str | None = None) -> Path:
    """The enrolled file plus what a test node needs (its own cache, a file player, quick retries).
    The enrollment keys are left as they are, except ``ca_pem`` when a test swaps it."""
    text = agent_yaml.read_text(encoding="utf-8")
    if ca_pem is not None:
        text = (
            text[: text.index("ca_pem: |")]
            + "ca_pem: |\n"
            + "".join(f"  {line}\n" for line in ca_pem.strip().splitlines())
        )
    out = root / f"{name}.yaml"
    out.write_text(
        text
        + f"cache_dir: {root / name / 'cache'}\n"
        + f"player:\n  kind: file\n  output_dir: {root / name / 'played'}\n"
        + "mqtt:\n  reconnect_min_s: 0.2\n  reconnect_max_s: 1.0\nhealth:\n  interval_s: 1\n",
        encoding="utf-8",
    )
    return out


def _online(serve: ServeProcess, speaker_id: str) -> bool:
    return bool(serve.api("GET", f"/speakers/{speaker_id}").get("online"))


def test_enrolled_cluster_airs_and_every_refusal_is_one_clear_line(root: Path) -> None:
    serve = ServeProcess(root / "instance", free_port())
    serve.start()
    agents: list[AgentProcess] = []

    def agent(config: Path) -> AgentProcess:
        process = AgentProcess(config)
        agents.append(process)
        return process

    try:
        serve.api("POST", "/zones", {"id": "thon-1", "name": "Thôn Đông"})
        # Enrolled by the CLI, a process of its own, while serve runs.
        enrolled = root / "agent.yaml"
        done = serve.cli("speaker", "enroll", "loa-07", "--zone", "thon-1", "-o", str(enrolled))
        assert "cluster loa-07 (created, zone thon-1)" in done.stderr
        assert enrolled.stat().st_mode & 0o777 == 0o600
        keys = parse_yaml(enrolled.read_text(encoding="utf-8"))
        assert set(keys) == {"id", "zone", "mqtt_url", "password", "ca_pem"}
        assert keys["mqtt_url"] == f"mqtts://127.0.0.1:{serve.tls_port}"

        # 1. It connects with nothing but that file (plus test tuning) and airs a broadcast.
        node = agent(_for_test(enrolled, root, "node"))
        wait_until(lambda: _online(serve, "loa-07"), timeout=30, interval=0.2, what="loa-07 online")
        created = serve.api(
            "POST", "/broadcasts", {"text": "Thông báo thử loa.", "targets": ["loa-07"], "tier": "priority"}
        )
        wait_until(
            lambda: serve.api("GET", f"/broadcasts/{created['id']}")["state"] == "done",
            timeout=60,
            interval=0.2,
            what="the broadcast done on loa-07",
        )
        assert len(list((root / "node" / "played").glob("*.wav"))) == 1

        # 2. A node pinning another CA refuses the broker.
        other = TlsMaterial(root / "other-ca", "127.0.0.1")
        other.ensure()
        wrong = agent(_for_test(enrolled, root, "wrong-ca", ca_pem=other.ca_pem()))
        wrong.wait_line(WRONG_CA)
        wrong.stop()

        # 3. The broker serving an expired certificate (a renewal that failed) is refused.
        tls = root / "instance" / "mosquitto" / "tls"
        owner = (tls / "server.key").stat()
        material = TlsMaterial(tls, "127.0.0.1")
        now = datetime.now(UTC)

        def serve_certificate(not_before: datetime, not_after: datetime) -> None:
            material.issue_server_cert(not_before, not_after)
            for name in ("server.crt", "server.key"):
                os.chown(tls / name, owner.st_uid, owner.st_gid)  # as the controller hands them over
            os.kill(serve.broker_pid(), signal.SIGHUP)  # mosquitto re-reads its certificate

        serve_certificate(now - timedelta(days=400), now - timedelta(days=1))
        expired = agent(_for_test(enrolled, root, "expired"))
        expired.wait_line(EXPIRED)
        expired.stop()
        serve_certificate(now - timedelta(hours=1), now + timedelta(days=365))

        # 4. Disabled on the controller: cut off, then refused at login; enabled again: back.
        mark = time.monotonic()
        serve.api("PATCH", "/speakers/loa-07", {"enabled": False})
        assert node.wait_line(LOST, since=mark) - mark < CUT_WITHIN_S
        node.wait_line(REFUSED, since=mark)
        mark = time.monotonic()
        serve.api("PATCH", "/speakers/loa-07", {"enabled": True})
        node.wait_line(CONNECTED, since=mark)

        # 5. Re-enrolled by the CLI (another process): the old password is cut off and refused,
        #    the new file connects.
        mark = time.monotonic()
        serve.cli("speaker", "enroll", "loa-07", "--zone", "thon-1", "-o", str(enrolled))
        assert node.wait_line(LOST, since=mark) - mark < CUT_WITHIN_S
        node.wait_line(REFUSED, since=mark)
        node.stop()
        renewed = agent(_for_test(enrolled, root, "renewed"))
        renewed.wait_line(CONNECTED)

        # 6. Deleted: its live connection is cut within 5 s and it cannot come back.
        mark = time.monotonic()
        serve.api("DELETE", "/speakers/loa-07")
        assert renewed.wait_line(LOST, since=mark) - mark < CUT_WITHIN_S
        renewed.wait_line(REFUSED, since=mark)
        line = next(text for _, text in renewed.lines if REFUSED in text)
        assert "ERROR" in line and "re-enroll" in line and keys["password"] not in renewed.output()
    except BaseException:
        for process in agents:
            print(f"--- agent {process.proc.args[-1]} ---\n{process.output()[-3000:]}")
        print(f"--- controller log ---\n{serve.log()}")
        broker_log = root / "instance" / "mosquitto" / "mosquitto.log"
        if broker_log.exists():
            print(f"--- broker log ---\n{broker_log.read_text(errors='replace')[-6000:]}")
        raise
    finally:
        for process in agents:
            process.stop()
        serve.stop()
    for process in agents:
        assert "Traceback" not in process.output(), process.output()[-3000:]

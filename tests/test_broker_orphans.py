"""No orphaned broker: ``kill -9`` of a real ``broadcaster serve`` process takes its mosquitto with
it, and the restarted controller runs exactly one broker that a newly created cluster reaches."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from broadcaster.broker import free_port, probe_login
from broadcaster.broker.orphans import _alive, brokers_of
from tests.fixtures_broker import TlsNode
from tests.fixtures_controller import wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent


class Controller:
    """``python -m broadcaster --instance DIR serve --port P`` as a separate process."""

    def __init__(self, instance: Path, port: int) -> None:
        self.instance = instance
        self.port = port
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BROADCASTER_")}
        self.env.update(
            BROADCASTER_TTS__ORDER="[espeak-ng]",  # never gTTS (no network in tests)
            BROADCASTER_BROKER__TLS_PORT="0",  # a free node port, kept in the instance
            BROADCASTER_SCHEDULING__SCHEDULES_DIR=str(instance / "schedules"),
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "broadcaster", "--instance", str(self.instance), *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout

    def start(self) -> None:
        log = (self.instance.parent / "controller.log").open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "broadcaster",
                "--instance",
                str(self.instance),
                "serve",
                "--port",
                str(self.port),
            ],
            env=self.env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        wait_until(self._ready, timeout=60, interval=0.1, what="the controller answers /api/health")

    def _ready(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/health", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def api(self, method: str, path: str, token: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"{}")

    @property
    def conf(self) -> Path:
        return (self.instance / "mosquitto" / "mosquitto.conf").resolve()

    def broker_pid(self) -> int:
        return int((self.instance / "mosquitto" / "mosquitto.pid").read_text())

    def log(self) -> str:
        path = self.instance.parent / "controller.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)


@pytest.fixture
def instance() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="loa-killed-"))
    root.chmod(0o755)  # the mosquitto user must reach the broker folder, as in a real install
    yield root / "instance"
    for pid in brokers_of((root / "instance" / "mosquitto" / "mosquitto.conf").resolve()):
        os.kill(pid, signal.SIGKILL)  # only if the test failed: never leave one behind
    shutil.rmtree(root, ignore_errors=True)


def test_kill_9_of_the_controller_leaves_no_broker_and_a_restart_works(instance: Path) -> None:
    controller = Controller(instance, free_port())
    controller.start()
    try:
        first = controller.broker_pid()
        assert brokers_of(controller.conf) == [first]
        controller.proc.kill()  # SIGKILL: no handler, no atexit, no finally
        controller.proc.wait(10)
        wait_until(
            lambda: not _alive(first), timeout=5, interval=0.05, what="the broker to follow its controller"
        )
        assert brokers_of(controller.conf) == []

        controller.start()
        second = controller.broker_pid()
        assert second != first and brokers_of(controller.conf) == [second]
        assert "restarting" not in controller.log()  # no restart loop

        token = controller.cli("token", "create", "kiem-tra").strip()
        controller.api("POST", "/zones", token, {"id": "thon-1", "name": "Thôn Đông"})
        created = controller.api(
            "POST", "/speakers", token, {"id": "loa-moi", "name": "Cụm loa mới", "zone": "thon-1"}
        )
        password = created["mqtt_password"]
        tls_port = int((instance / "mosquitto" / "tls_port").read_text())
        ctx = TlsNode.context(instance / "mosquitto" / "tls" / "ca.crt")
        wait_until(
            lambda: probe_login("127.0.0.1", tls_port, "loa-moi", password, ssl_context=ctx) == 0,
            timeout=10,
            what="the new cluster logs in over TLS",
        )
    finally:
        controller.stop()
    assert brokers_of(controller.conf) == []  # a clean stop takes the broker too

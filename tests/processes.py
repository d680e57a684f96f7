"""Real processes for the end-to-end tests: ``broadcaster serve`` and ``speaker-agent run``.

``ServeProcess(instance, port, **env)``: the controller as a separate process (managed broker,
TLS node listener on a free port kept in the instance), its CLI (``cli(...)``) and its REST API
(``api(method, path, body)`` with a token made by the CLI). ``AgentProcess(config)``: the agent,
its output read line by line as it comes, each line with the monotonic time it arrived, so a test
can say "cut within 5 s" from the agent's own log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.fixtures_controller import wait_until

ROOT = Path(__file__).resolve().parent.parent


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROADCASTER_")}
    env.update(extra)
    return env


class ServeProcess:
    """``python -m broadcaster --instance DIR serve --port P`` (see the module docstring)."""

    def __init__(self, instance: Path, port: int, **env: str) -> None:
        self.instance = instance
        self.port = port
        self.env = clean_env(
            BROADCASTER_TTS__ORDER="[espeak-ng]",  # never gTTS (no network in tests)
            BROADCASTER_BROKER__TLS_PORT="0",  # a free node port, kept in the instance
            BROADCASTER_SCHEDULING__SCHEDULES_DIR=str(instance / "schedules"),
            **env,
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self._token: str | None = None

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "broadcaster", "--instance", str(self.instance), *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=check,
        )

    def start(self) -> None:
        self.instance.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "broadcaster", "--instance", str(self.instance), "serve", "--port",
             str(self.port)],
            env=self.env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        )  # fmt: skip
        log.close()
        wait_until(self._ready, timeout=60, interval=0.1, what="the controller answers /api/health")

    @property
    def log_path(self) -> Path:
        return self.instance.parent / "controller.log"

    def _ready(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/health", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    @property
    def token(self) -> str:
        if self._token is None:
            self._token = self.cli("token", "create", "kiem-tra").stdout.strip()
        return self._token

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return json.loads(raw) if raw else None

    @property
    def tls_port(self) -> int:
        return int((self.instance / "mosquitto" / "tls_port").read_text())

    def broker_pid(self) -> int:
        return int((self.instance / "mosquitto" / "mosquitto.pid").read_text())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class AgentProcess:
    """``python -m speakers run --config FILE`` with its output collected line by line."""

    def __init__(self, config: Path, *args: str, prefix: list[str] | None = None) -> None:
        self.lines: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            [*(prefix or []), sys.executable, "-m", "speakers", "run", "--config", str(config), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=clean_env(),
        )
        self._reader = threading.Thread(target=self._read, name="agent-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._lock:
                self.lines.append((time.monotonic(), raw.decode("utf-8", "replace").rstrip()))

    def output(self) -> str:
        with self._lock:
            return "\n".join(line for _, line in self.lines)

    def first(self, text: str, since: float = 0.0) -> float | None:
        """When a line containing ``text`` arrived at or after ``since`` (monotonic), or None."""
        with self._lock:
            return next((t for t, line in self.lines if t >= since and text in line), None)

    def wait_line(self, text: str, since: float = 0.0, timeout: float = 30.0) -> float:
        return wait_until(
            lambda: self.first(text, since), timeout=timeout, interval=0.05, what=f"agent line {text!r}"
        )

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode

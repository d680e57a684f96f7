"""Real sources for relays: an Icecast server fed by ffmpeg with a test tone, and an HLS stream made
by ffmpeg into a folder served over local HTTP; and ``live_controller``, the real controller on a
real mosquitto with nine simulated clusters, shared by the tests of a module (each test uses its
own clusters or waits for its items to end, so they do not disturb each other). Module-scoped:
started once per test module."""

from __future__ import annotations

import contextlib
import functools
import http.server
import math
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ICECAST = shutil.which("icecast2") or shutil.which("icecast")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                answer.read(64)
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass
class ToneSource:
    """An ffmpeg process sending a tone of ``frequency`` Hz to a mount; ``kill()`` stops it (the
    source dies mid-relay), ``start()`` brings it back."""

    url: str
    frequency: int
    command: list[str]
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)


@dataclass
class Icecast:
    port: int
    password: str
    sources: list[ToneSource]

    def mount_url(self, mount: str) -> str:
        return f"http://127.0.0.1:{self.port}/{mount}"

    def feed(self, mount: str, frequency: int) -> ToneSource:
        command = [
            "ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-f", "lavfi",
            "-i", f"sine=frequency={frequency}:sample_rate=44100", "-ac", "1", "-c:a", "libmp3lame", "-b:a", "64k",
            "-content_type", "audio/mpeg", "-f", "mp3",
            f"icecast://source:{self.password}@127.0.0.1:{self.port}/{mount}",
        ]  # fmt: skip
        source = ToneSource(self.mount_url(mount), frequency, command)
        source.start()
        self.sources.append(source)
        _wait_http(source.url)
        return source


_ICECAST_XML = """<icecast>
  <limits><clients>100</clients><sources>8</sources><burst-size>8192</burst-size>
    <source-timeout>3</source-timeout></limits>
  <authentication><source-password>{password}</source-password><admin-user>admin</admin-user>
    <admin-password>{password}</admin-password></authentication>
  <hostname>127.0.0.1</hostname>
  <listen-socket><port>{port}</port><bind-address>127.0.0.1</bind-address></listen-socket>
  <paths><basedir>/usr/share/icecast2</basedir><logdir>{logdir}</logdir>
    <webroot>/usr/share/icecast2/web</webroot><adminroot>/usr/share/icecast2/admin</adminroot></paths>
  <logging><accesslog>access.log</accesslog><errorlog>error.log</errorlog><loglevel>2</loglevel></logging>
  <security><chroot>0</chroot>{changeowner}</security>
</icecast>
"""


@pytest.fixture(scope="module")
def icecast() -> Iterator[Icecast]:
    """A real Icecast on a free loopback port. Icecast refuses to run as root unless it changes
    owner: as root it is told to become ``nobody`` (its log folder is made writable for that)."""
    if ICECAST is None:
        pytest.fail("icecast2 is not installed (scripts/test installs it)")
    folder = Path(tempfile.mkdtemp(prefix="loa-icecast-"))
    folder.chmod(0o777)
    port = free_port()
    owner = (
        "<changeowner><user>nobody</user><group>nogroup</group></changeowner>" if os.geteuid() == 0 else ""
    )
    config = folder / "icecast.xml"
    config.write_text(_ICECAST_XML.format(password="nguon-thu", port=port, logdir=folder, changeowner=owner))
    proc = subprocess.Popen(
        [ICECAST, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    server = Icecast(port, "nguon-thu", [])
    try:
        _wait_http(f"http://127.0.0.1:{port}/status-json.xsl")
        yield server
    finally:
        for source in server.sources:
            source.stop()
        _stop(proc)
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Hls:
    url: str
    folder: Path


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture(scope="module")
def hls_stream() -> Iterator[Hls]:
    """A live HLS stream (AAC, 1 s segments) of a 660 Hz tone, made by ffmpeg and served over HTTP."""
    folder = Path(tempfile.mkdtemp(prefix="loa-hls-"))
    command = [
        "ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "sine=frequency=660:sample_rate=44100",
        "-ac", "1", "-c:a", "aac", "-b:a", "64k", "-f", "hls", "-hls_time", "1", "-hls_list_size", "6",
        "-hls_flags", "delete_segments", str(folder / "live.m3u8"),
    ]  # fmt: skip
    proc = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/live.m3u8"
    try:
        deadline = time.monotonic() + 20
        while not (folder / "live.m3u8").exists() or len(list(folder.glob("*.ts"))) < 2:
            if time.monotonic() > deadline:
                raise TimeoutError("ffmpeg made no HLS segments")
            time.sleep(0.1)
        yield Hls(url, folder)
    finally:
        server.shutdown()
        server.server_close()
        _stop(proc)
        with contextlib.suppress(OSError):
            shutil.rmtree(folder)


@pytest.fixture(scope="module")
def html_server() -> Iterator[str]:
    """A server that answers with a web page: what a wrong channel URL often is."""
    folder = Path(tempfile.mkdtemp(prefix="loa-html-"))
    (folder / "index.html").write_text(
        "<!doctype html><html><body>Không phải âm thanh</body></html>", encoding="utf-8"
    )
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def live_controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The controller (tests/fixtures_controller.E2EController) on its own real broker, for one
    test module: starting nine clusters per test would add seconds to each."""
    from broadcaster.broker import ManagedBroker, find_mosquitto
    from tests.fixtures_broker import BrokerFixture
    from tests.fixtures_controller import E2EController

    find_mosquitto()
    workdir = Path(tempfile.mkdtemp(prefix="loa-mosquitto-"))
    workdir.chmod(0o755)  # the broker drops privileges to the mosquitto user
    broker = ManagedBroker(workdir / "broker")
    broker.start()
    harness = None
    try:
        # A stalled source is retried after 2 s (not 5): the fault tests take seconds less.
        harness = E2EController(
            BrokerFixture(broker),
            tmp_path_factory.mktemp("live") / "instance",
            live={"stall_s": 2.0, "retry_min_s": 0.5},
        )
        yield harness
    finally:
        if harness is not None:
            harness.close()
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def dominant_frequency(samples: list[int] | object, rate: int) -> float:
    """Frequency of the strongest zero-crossing rate of a mono tone (good enough for a pure tone)."""
    values = list(samples)  # type: ignore[call-overload]
    crossings = sum(1 for a, b in zip(values, values[1:], strict=False) if (a < 0) != (b < 0))
    return crossings / 2 / (len(values) / rate) if values else 0.0


def goertzel_power(samples: list[int] | object, rate: int, frequency: float) -> float:
    """Mean power of ``samples`` at ``frequency`` (Goertzel), relative to the signal's own power:
    about 1 for a pure tone at that frequency, near 0 for silence or another tone."""
    values = list(samples)  # type: ignore[call-overload]
    if not values:
        return 0.0
    coeff = 2 * math.cos(2 * math.pi * frequency / rate)
    s_prev = s_prev2 = 0.0
    for x in values:
        s = x + coeff * s_prev - s_prev2
        s_prev2, s_prev = s_prev, s
    power = s_prev2**2 + s_prev**2 - coeff * s_prev * s_prev2
    energy = sum(x * x for x in values)
    return power / (len(values) * energy / 2) if energy else 0.0


def peak_frequency(
    samples: list[int] | object, rate: int, low: float, high: float, step: float = 5.0
) -> float:
    """The frequency between ``low`` and ``high`` where ``samples`` are strongest (Goertzel scan)."""
    values = list(samples)  # type: ignore[call-overload]
    candidates = [low + step * i for i in range(int((high - low) / step) + 1)]
    return max(candidates, key=lambda f: goertzel_power(values, rate, f))


__all__ = [
    "Hls",
    "Icecast",
    "ToneSource",
    "dominant_frequency",
    "free_port",
    "goertzel_power",
    "peak_frequency",
]

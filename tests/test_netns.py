"""A cluster on another network: a real agent in its own network namespace (a veth pair the test
creates) reaches the controller's TLS node listener on a non-loopback address (``broker.listen``),
and cannot reach the plain listener, which only ever listens on loopback.

Needs root, the ``ip`` command and permission to create namespaces; skipped with the reason
otherwise. The namespace (and with it the veth pair) is deleted even when the test fails.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from broadcaster.fleet.enroll import enroll
from broadcaster.services import build_services
from broadcaster.settings import load_settings
from tests.fixtures_controller import wait_until
from tests.processes import AgentProcess

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Netns:
    name: str
    host_address: str  # this machine's end of the veth pair
    node_address: str  # the namespace's end

    def run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.name, *args], capture_output=True, text=True, timeout=timeout
        )

    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


@pytest.fixture
def netns() -> Iterator[Netns]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if shutil.which("ip") is None:
        pytest.skip("the ip command (iproute2) is not installed")
    tag = secrets.token_hex(3)
    name, host_if, node_if = f"loa-{tag}", f"lh{tag}", f"ln{tag}"
    subnet = f"10.213.{secrets.randbelow(250) + 1}"
    created = _ip("netns", "add", name)
    if created.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {created.stderr.strip()}")
    try:
        for args in (
            ("link", "add", host_if, "type", "veth", "peer", "name", node_if),
            ("link", "set", node_if, "netns", name),
            ("addr", "add", f"{subnet}.1/30", "dev", host_if),
            ("link", "set", host_if, "up"),
            ("-n", name, "addr", "add", f"{subnet}.2/30", "dev", node_if),
            ("-n", name, "link", "set", node_if, "up"),
            ("-n", name, "link", "set", "lo", "up"),
        ):
            done = _ip(*args)
            if done.returncode != 0:
                pytest.skip(f"cannot set up a veth pair here (ip {' '.join(args)}): {done.stderr.strip()}")
        yield Netns(name, f"{subnet}.1", f"{subnet}.2")
    finally:
        _ip("netns", "delete", name)  # takes the veth pair with it
        _ip("link", "delete", host_if)  # in case the namespace end never moved
        assert name not in _ip("netns", "list").stdout


def _tcp_from(ns: Netns, host: str, port: int) -> str:
    """Try a TCP connection from inside the namespace: "open", or why not."""
    probe = (
        "import socket,sys\n"
        "try:\n"
        f"    socket.create_connection(({host!r}, {port}), 3).close(); print('open')\n"
        "except OSError as exc:\n"
        "    print(type(exc).__name__)\n"
    )
    return ns.run(sys.executable, "-c", probe).stdout.strip()


def test_a_node_in_another_network_reaches_the_tls_listener_and_never_the_plain_one(netns: Netns) -> None:
    root = Path(tempfile.mkdtemp(prefix="loa-netns-"))
    root.chmod(0o755)  # the mosquitto user must reach the broker folder
    instance = root / "instance"
    settings = load_settings(
        {
            "instance": instance,
            "tts": {"order": ["espeak-ng"]},
            "scheduling": {"schedules_dir": instance / "schedules"},
            "broker": {"listen": netns.host_address, "tls_port": 0},
        },
        environ={},
    )
    services = build_services(settings, scheduler=False)
    agent = None
    try:
        services.start()
        broker = services.broker
        assert broker is not None
        assert broker.node_url == f"mqtts://{netns.host_address}:{broker.tls_port}"
        services.registry.create_zone("thon-1", "Thôn Đông")
        bundle = enroll(services.registry, settings, "loa-xa", zone="thon-1").bundle
        assert bundle.mqtt_url == broker.node_url
        config = root / "agent.yaml"
        config.write_text(
            bundle.to_yaml() + f'cache_dir: {root / "cache"}\nplayer:\n  kind: "null"\n', encoding="utf-8"
        )
        config.chmod(0o600)

        # From the other network: the TLS node listener answers, the plain one does not exist there.
        assert _tcp_from(netns, netns.host_address, broker.tls_port) == "open"
        assert _tcp_from(netns, netns.host_address, broker.port) == "ConnectionRefusedError"
        assert _tcp_from(netns, "127.0.0.1", broker.port) == "ConnectionRefusedError"  # its own loopback

        agent = AgentProcess(config, prefix=netns.prefix())
        wait_until(
            lambda: "loa-xa" in services.fleet.online_ids(),
            timeout=30,
            interval=0.1,
            what="the namespaced cluster online",
        )
        agent.wait_line("loa-xa: connected (session")
    except BaseException:
        if agent is not None:
            print(f"--- agent ---\n{agent.output()[-3000:]}")
        raise
    finally:
        if agent is not None:
            agent.stop()
        services.close()
        shutil.rmtree(root, ignore_errors=True)

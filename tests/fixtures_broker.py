"""Real-Mosquitto fixtures (through :class:`broadcaster.broker.ManagedBroker`).

``mosquitto``: a fresh broker per test on a free loopback port (it starts in ~10 ms), with
password file and ACL exactly as in production::

    def test_x(mosquitto):
        url = mosquitto.add_node("loa-01", zone="thon-1")     # node URL (user = speaker id)
        mosquitto.url                                         # the controller's URL
        mosquitto.credentials("loa-01")                       # ("loa-01", "pw-loa-01")
        mosquitto.broker.restart()

``mosquitto_factory(**kwargs)``: more brokers, or one with other ManagedBroker arguments;
``mosquitto_factory(tls=True)`` adds the TLS node listener (local CA in ``<workdir>/tls``, on
127.0.0.1 and a free port unless ``tls_listen``/``tls_port`` say otherwise)::

    fx = mosquitto_factory(tls=True)
    fx.tls_context()                                      # ssl context pinned to the broker's CA
    fx.broker.tls_port, fx.broker.node_url                # mqtts://127.0.0.1:<port>

The broker's folder is a private ``mkdtemp`` under the system temp dir (not ``tmp_path``),
because pytest's ``/tmp/pytest-of-<user>`` is not traversable by the ``mosquitto`` user that
the broker drops privileges to when the suite runs as root; it is removed after the test and
the broker log is printed when the test failed.
"""

from __future__ import annotations

import shutil
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from broadcaster.broker import ManagedBroker, TlsListener, find_mosquitto
from broadcaster.broker.tls import TlsMaterial


def node_password(speaker_id: str) -> str:
    """The password the fixtures give a node: deterministic, so tests can rebuild URLs."""
    return f"pw-{speaker_id}"


class BrokerFixture:
    """A started :class:`ManagedBroker` plus helpers for node credentials."""

    def __init__(self, broker: ManagedBroker) -> None:
        self.broker = broker

    @property
    def port(self) -> int:
        return self.broker.port

    @property
    def prefix(self) -> str:
        return self.broker.prefix

    @property
    def url(self) -> str:
        """The controller's URL (full access below the prefix)."""
        return self.broker.controller_url

    @property
    def base_url(self) -> str:
        """``mqtt://127.0.0.1:port`` without credentials (for the Simulator with ``credentials``)."""
        return f"mqtt://{self.broker.host}:{self.port}"

    def add_nodes(self, zones: Mapping[str, str | None]) -> None:
        """Register nodes (speaker id -> zone) with :func:`node_password` and reload the broker."""
        for speaker_id, zone in zones.items():
            self.broker.add_or_update_user(speaker_id, node_password(speaker_id), zone=zone)
        self.broker.reload()

    def add_node(self, speaker_id: str, zone: str | None = None) -> str:
        """Register one node and return its ``mqtt://`` URL."""
        self.add_nodes({speaker_id: zone})
        return self.node_url(speaker_id)

    def node_url(self, speaker_id: str) -> str:
        return self.broker.url_for(speaker_id, node_password(speaker_id))

    @staticmethod
    def credentials(speaker_id: str) -> tuple[str, str]:
        """``(user, password)`` of a node added by :meth:`add_nodes`; fits ``Simulator(credentials=)``."""
        return speaker_id, node_password(speaker_id)

    def tls_context(self, cafile: Path | None = None) -> ssl.SSLContext:
        """A client TLS context that trusts the broker's CA (or ``cafile``), as a node pins it."""
        assert self.broker.tls is not None, "start the broker with tls=True"
        return ssl.create_default_context(cafile=str(cafile or self.broker.tls.material.ca_cert_path))

    def log(self) -> str:
        try:
            return self.broker.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""


class TlsNode:
    """A paho MQTT 5 client over TLS, as a cluster connects; events for connect and disconnect."""

    def __init__(self, port: int, user: str, password: str, cafile: Path, host: str = "127.0.0.1") -> None:
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.refused: list[str] = []
        self.reason: str | None = None
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=user, protocol=mqtt.MQTTv5)
        client.username_pw_set(user, password)
        client.tls_set(ca_certs=str(cafile))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self.client = client
        client.connect(host, port, keepalive=30)
        client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        if reason_code.is_failure:
            self.refused.append(str(reason_code))
            self.disconnected.set()
        else:
            self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        self.reason = str(reason_code)
        self.disconnected.set()

    @staticmethod
    def context(cafile: Path) -> ssl.SSLContext:
        """The TLS context of a node that pinned ``cafile``."""
        return ssl.create_default_context(cafile=str(cafile))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def mosquitto_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., BrokerFixture]]:
    """Start brokers with any :class:`ManagedBroker` arguments; all are stopped after the test."""
    find_mosquitto()  # a clear error when the package is missing
    started: list[tuple[BrokerFixture, Path]] = []

    def make(
        *, tls: bool = False, tls_listen: str = "127.0.0.1", tls_port: int | None = None, **kwargs: Any
    ) -> BrokerFixture:
        workdir = Path(tempfile.mkdtemp(prefix="loa-mosquitto-"))
        workdir.chmod(0o755)  # mkdtemp makes it 0700: let the mosquitto user traverse it
        if tls:
            host = "127.0.0.1" if tls_listen in ("0.0.0.0", "::") else tls_listen
            material = TlsMaterial(workdir / "broker" / "tls", host, listen=tls_listen)
            kwargs["tls"] = TlsListener(material, tls_listen, tls_port, host)
        broker = ManagedBroker(workdir / "broker", **kwargs)
        fixture = BrokerFixture(broker)
        started.append((fixture, workdir))
        broker.start()
        return fixture

    yield make
    failed = getattr(request.node, "rep_call", None)
    for fixture, workdir in started:
        fixture.broker.stop()
        if failed is not None and failed.failed:
            print(f"--- mosquitto log ({fixture.broker.log_path}) ---\n{fixture.log()[-4000:]}")
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[..., BrokerFixture]) -> BrokerFixture:
    """A fresh real broker for this test (prefix ``loa``, controller user ``controller``)."""
    return mosquitto_factory()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    # Keep the outcome on the item so fixtures can print the broker log of a failed test.
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report

"""Real-Mosquitto fixtures (through :class:`broadcaster.broker.ManagedBroker`).

``mosquitto``: a fresh broker per test on a free loopback port (it starts in ~10 ms), with
password file and ACL exactly as in production::

    def test_x(mosquitto):
        url = mosquitto.add_node("loa-01", zone="thon-1")     # node URL (user = speaker id)
        mosquitto.url                                         # the controller's URL
        mosquitto.credentials("loa-01")                       # ("loa-01", "pw-loa-01")
        mosquitto.broker.restart()

``mosquitto_factory(**kwargs)``: more brokers, or one with other ManagedBroker arguments.

The broker's folder is a private ``mkdtemp`` under the system temp dir (not ``tmp_path``),
because pytest's ``/tmp/pytest-of-<user>`` is not traversable by the ``mosquitto`` user that
the broker drops privileges to when the suite runs as root; it is removed after the test and
the broker log is printed when the test failed.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from broadcaster.broker import ManagedBroker, find_mosquitto


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

    def log(self) -> str:
        try:
            return self.broker.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""


@pytest.fixture
def mosquitto_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., BrokerFixture]]:
    """Start brokers with any :class:`ManagedBroker` arguments; all are stopped after the test."""
    find_mosquitto()  # a clear error when the package is missing
    started: list[tuple[BrokerFixture, Path]] = []

    def make(**kwargs: Any) -> BrokerFixture:
        workdir = Path(tempfile.mkdtemp(prefix="loa-mosquitto-"))
        workdir.chmod(0o755)  # mkdtemp makes it 0700: let the mosquitto user traverse it
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

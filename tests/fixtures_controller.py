"""Fixtures of the controller tests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns something truthy (returned) or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


# ----------------------------------------------------------------------------- unit harness


class UnitController:
    """Fleet + BroadcastManager on a MemoryBroker with fake nodes, a real SQLite file, fake speech.

    Zones ``thon-1``..``thon-3`` with three clusters each (``loa-01``..``loa-09``). ``flaky``: the
    controller's transport is a FlakyTransport and the manager's sessions a FlakyCommitSessions
    (tests/fakes.py), to inject publish and commit failures."""

    def __init__(
        self, tmp_path: Path, *, connect: bool = True, flaky: bool = False, **config: object
    ) -> None:
        from broadcaster.broadcasts import BroadcastManager, BroadcastsConfig
        from broadcaster.db import create_schema, make_engine, make_session_factory
        from broadcaster.fleet import Fleet, FleetConfig
        from broadcaster.models import Speaker, Zone
        from broadcaster.transport.memory import MemoryBroker, MemoryTransport
        from tests.fakes import ControllerSpeech, FakeNode, FlakyCommitSessions, FlakyTransport

        self.engine = make_engine(f"sqlite:///{tmp_path / 'unit.db'}")
        create_schema(self.engine)
        self.sessions = make_session_factory(self.engine)
        with self.sessions.begin() as s:
            for z, name in (("thon-1", "Thôn Đông"), ("thon-2", "Thôn Đoài"), ("thon-3", "Thôn Trung")):
                s.add(Zone(id=z, name=name))
            for i in range(1, 10):
                s.add(Speaker(id=f"loa-{i:02d}", name=f"Cụm loa {i}", zone_id=f"thon-{(i - 1) // 3 + 1}"))
        self.broker = MemoryBroker()
        self.transport = FlakyTransport(self.broker) if flaky else MemoryTransport(self.broker)
        fleet_cfg = {k[6:]: v for k, v in config.items() if k.startswith("fleet_")}
        bc_cfg = {k: v for k, v in config.items() if not k.startswith("fleet_")}
        self.fleet = Fleet(
            self.sessions, self.transport, FleetConfig(**{"health_interval_s": 30, **fleet_cfg})
        )
        self.speech = ControllerSpeech(tmp_path / "audio")
        defaults = {"lead_s": 0.3, "emergency_lead_s": 0.2, "gap_s": 0.1, "receipt_grace_s": 5.0}
        self.manager_sessions = FlakyCommitSessions(self.sessions) if flaky else self.sessions
        self.manager = BroadcastManager(
            self.manager_sessions,
            self.speech,
            self.transport,
            self.fleet,
            BroadcastsConfig(**{**defaults, **bc_cfg}),
        )
        self.nodes = {
            f"loa-{i:02d}": FakeNode(self.broker, f"loa-{i:02d}", f"thon-{(i - 1) // 3 + 1}")
            for i in range(1, 10)
        }
        self.fleet.start()
        self.manager.start()
        self.transport.start()
        if connect:
            for node in self.nodes.values():
                node.connect()
            wait_until(lambda: len(self.fleet.online_ids()) == 9, what="9 fake nodes online")

    def wait_state(self, broadcast_id: int, *states: str, timeout: float = 15.0) -> dict:
        return wait_until(
            lambda: (b := self.manager.get(broadcast_id)) is not None and b["state"] in states and b,
            timeout=timeout,
            what=f"broadcast {broadcast_id} in {states} (now {(self.manager.get(broadcast_id) or {}).get('state')})",
        )

    def log(self, broadcast_id: int | None = None) -> list[str]:
        from sqlalchemy import select

        from broadcaster.models import LogEntry

        with self.sessions() as s:
            q = select(LogEntry).order_by(LogEntry.id)
            if broadcast_id is not None:
                q = q.where(LogEntry.broadcast_id == broadcast_id)
            return [e.message for e in s.scalars(q)]

    def close(self) -> None:
        self.manager.stop()
        self.fleet.stop()
        for node in self.nodes.values():
            node.stop()
        self.transport.stop()
        self.engine.dispose()


@pytest.fixture
def unit_controller(tmp_path: Path) -> Iterator[UnitController]:
    harness = UnitController(tmp_path)
    yield harness
    harness.close()


# ----------------------------------------------------------------------------- end to end

E2E_NODES = {f"loa-{i:02d}": f"thon-{(i - 1) // 3 + 1}" for i in range(1, 10)}
E2E_ZONES = {"thon-1": "Thôn Đông", "thon-2": "Thôn Đoài", "thon-3": "Thôn Trung"}
# Short intervals keep the suite fast; health every second makes staleness visible in seconds.
E2E_HEALTH_S = 1.0


def e2e_settings(instance: Path, mqtt_url: str, **overrides: object):  # type: ignore[no-untyped-def]
    from broadcaster.settings import load_settings

    data: dict[str, object] = {
        "instance": instance,
        "mqtt_url": mqtt_url,
        "tts": {"order": ["espeak-ng"]},
        "scheduling": {"schedules_dir": instance / "schedules"},
        **overrides,
    }
    return load_settings(data, environ={})


class E2EController:
    """The real controller (Services) on a real mosquitto, with the simulator's 9 clusters.

    ``restart()`` stops the controller and builds a new one on the same instance (same database,
    same MQTT client id, so the same persistent session); the broker and the clusters keep running.
    """

    def __init__(self, broker, instance: Path, **overrides: object) -> None:  # type: ignore[no-untyped-def]
        from speakers.simulator import Simulator

        self.broker = broker
        self.instance = instance
        self.overrides = overrides
        broker.add_nodes(E2E_NODES)
        self.services = self._build()
        with self.services.sessions.begin() as session:
            from broadcaster.fleet.registry import create_speaker, create_zone

            for zone, name in E2E_ZONES.items():
                create_zone(session, zone, name)
            for sid, zone in E2E_NODES.items():
                create_speaker(session, sid, f"Cụm loa {sid[-2:]}", zone)
        self.services.start()
        self.sim = Simulator(
            broker.base_url,
            nodes=E2E_NODES,
            credentials=broker.credentials,
            health_interval_s=E2E_HEALTH_S,
            clock_skew_s=0.5,
            keepalive_s=5,
            reconnect_min_s=0.2,
            reconnect_max_s=2.0,
            request_timeout_s=1.0,
            seed=4,
        )
        self.sim.start_in_thread(timeout=30)
        wait_until(lambda: len(self.fleet.online_ids()) == 9, timeout=20, what="9 clusters online")

    def _build(self):  # type: ignore[no-untyped-def]
        from broadcaster.broadcasts import BroadcastsConfig
        from broadcaster.fleet import FleetConfig
        from broadcaster.services import build_services

        settings = e2e_settings(self.instance, self.broker.url, **self.overrides)
        return build_services(
            settings,
            fleet_config=FleetConfig(health_interval_s=E2E_HEALTH_S, health_batch_interval_s=0.2),
            broadcasts_config=BroadcastsConfig(
                lead_s=1.5, emergency_lead_s=0.6, gap_s=0.3, receipt_grace_s=15
            ),
        )

    @property
    def broadcasts(self):  # type: ignore[no-untyped-def]
        return self.services.broadcasts

    @property
    def fleet(self):  # type: ignore[no-untyped-def]
        return self.services.fleet

    def restart(self) -> None:
        self.services.close()
        self.services = self._build()
        self.services.start()

    def wait_state(self, broadcast_id: int, *states: str, timeout: float = 30.0) -> dict:
        return wait_until(
            lambda: (b := self.broadcasts.get(broadcast_id)) is not None and b["state"] in states and b,
            timeout=timeout,
            interval=0.05,
            what=f"broadcast {broadcast_id} in {states} (now {(self.broadcasts.get(broadcast_id) or {}).get('state')})",
        )

    def timeline(self, speaker_id: str | None = None) -> list[dict]:
        return self.sim.timeline(speaker_id)

    def close(self) -> None:
        try:
            self.sim.stop()
        finally:
            self.services.close()


@pytest.fixture
def controller(mosquitto, tmp_path: Path) -> Iterator[E2EController]:  # type: ignore[no-untyped-def]
    """The controller on a real broker with 9 simulated clusters (zones thon-1..thon-3)."""
    harness = E2EController(mosquitto, tmp_path / "instance")
    yield harness
    harness.close()


def e2e_client(controller: E2EController):  # type: ignore[no-untyped-def]
    """A Flask test client of the real web app over the controller's services (API tests)."""
    from broadcaster.web import create_app

    app = create_app(controller.services.settings, controller.services, {"TESTING": True})
    return app.test_client()

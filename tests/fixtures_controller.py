"""Fixtures of the controller tests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from broadcaster.demo import DEMO_SPEAKERS, DEMO_ZONES


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


# ----------------------------------------------------------------------------- the commune

# The demo commune, defined once (broadcaster.demo): zones thon-1..thon-3 with three clusters each.
COMMUNE_ZONES: dict[str, str] = dict(DEMO_ZONES)
COMMUNE_NODES: dict[str, str] = {sid: zone for sid, _, zone in DEMO_SPEAKERS}


def seed_commune(sessions, *, credentials: bool = False) -> None:  # type: ignore[no-untyped-def]
    """The demo commune's zones and clusters as registry rows (``credentials``: through the
    registry, with MQTT password hashes, as the admin page makes them)."""
    from broadcaster.fleet.registry import create_speaker, create_zone
    from broadcaster.models import Speaker, Zone

    with sessions.begin() as session:
        for zone, name in DEMO_ZONES:
            if credentials:
                create_zone(session, zone, name)
            else:
                session.add(Zone(id=zone, name=name))
        for sid, name, zone in DEMO_SPEAKERS:
            if credentials:
                create_speaker(session, sid, name, zone)
            else:
                session.add(Speaker(id=sid, name=name, zone_id=zone))


# ----------------------------------------------------------------------------- unit harness


def unit_settings(instance: Path, **overrides: object):  # type: ignore[no-untyped-def]
    from broadcaster.settings import load_settings

    data: dict[str, object] = {
        "instance": instance,
        "tts": {"order": ["espeak-ng"]},
        "scheduling": {"schedules_dir": instance / "schedules"},
        **overrides,
    }
    return load_settings(data, environ={})


def unit_services(  # type: ignore[no-untyped-def]
    tmp_path: Path,
    *,
    transport=None,
    speech=None,
    fake_fleet: bool = False,
    scheduler: bool = False,
    flaky: bool = False,
    commune: bool = True,
    broadcasts: dict[str, object] | None = None,
    fleet: dict[str, object] | None = None,
    db_url: str | None = None,
    **settings: object,
):
    """The real controller (``build_services``) with the unit-test parts injected: the in-memory
    transport, FakeSpeech, a real database (``flaky``: whose dispatcher commits can be made to
    fail), the demo commune in the registry, and (``fake_fleet``) a FakeFleet whose live state a
    test sets. Nothing is started.

    The database is ``db_url``, else the instance's SQLite file, or under the ``database``
    fixture's ``postgresql`` run a fresh PostgreSQL database (tests/fixtures_postgres.py)."""
    from broadcaster.broadcasts import BroadcastsConfig
    from broadcaster.db import create_schema, make_engine, make_session_factory
    from broadcaster.fleet import FleetConfig
    from broadcaster.services import build_services
    from broadcaster.transport.memory import MemoryBroker, MemoryTransport
    from tests.fakes import FakeFleet, FakeSpeech, FlakyCommitSessions
    from tests.fixtures_postgres import db_url_for

    instance = tmp_path / "instance"
    config = unit_settings(instance, db=db_url or db_url_for(instance / "broadcaster.db"), **settings)
    config.ensure_instance()
    engine = make_engine(config.db_url)
    create_schema(engine)
    sessions = make_session_factory(engine)
    if commune:
        seed_commune(sessions)
    if flaky:
        sessions = FlakyCommitSessions(sessions)
    defaults = {"lead_s": 0.3, "emergency_lead_s": 0.2, "gap_s": 0.1, "receipt_grace_s": 5.0}
    return build_services(
        config,
        transport=transport or MemoryTransport(MemoryBroker()),
        speech=speech or FakeSpeech(tmp_path / "audio"),
        fleet=FakeFleet(sessions) if fake_fleet else None,
        scheduler=scheduler,
        database=(engine, sessions),
        broadcasts_config=BroadcastsConfig(**{**defaults, **(broadcasts or {})}),
        fleet_config=FleetConfig(**{"health_interval_s": 30, **(fleet or {})}),
    )


class UnitController:
    """The real broadcast lifecycle and fleet on a MemoryBroker with fake nodes, a real SQLite file,
    FakeSpeech, and the demo commune (``loa-01``..``loa-09`` in ``thon-1``..``thon-3``).
    ``flaky``: the transport is a FlakyTransport and the database fails dispatcher commits on
    demand (tests/fakes/faults.py). Config keys prefixed ``fleet_`` go to the fleet, the rest to
    the broadcasts."""

    def __init__(
        self, tmp_path: Path, *, connect: bool = True, flaky: bool = False, **config: object
    ) -> None:
        from broadcaster.transport.memory import MemoryBroker, MemoryTransport
        from tests.fakes import FakeNode, FlakyTransport

        self.broker = MemoryBroker()
        self.transport = FlakyTransport(self.broker) if flaky else MemoryTransport(self.broker)
        fleet_cfg = {k[6:]: v for k, v in config.items() if k.startswith("fleet_")}
        bc_cfg = {k: v for k, v in config.items() if not k.startswith("fleet_")}
        self.services = unit_services(
            tmp_path, transport=self.transport, flaky=flaky, broadcasts=bc_cfg, fleet=fleet_cfg
        )
        self.sessions = self.services.sessions
        self.manager_sessions = self.sessions
        self.engine = self.services.db_engine
        self.fleet = self.services.fleet
        self.speech = self.services.speech
        self.manager = self.services.broadcasts
        self.nodes = {sid: FakeNode(self.broker, sid, zone) for sid, zone in COMMUNE_NODES.items()}
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

E2E_NODES = COMMUNE_NODES
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
    ``sim_options`` go to the Simulator (e.g. ``{"player": "file", "player_dir": path}``); ``speech``
    replaces the settings' speech service (e.g. one over an engine the test controls);
    ``broadcasts`` overrides the broadcasts settings.
    """

    def __init__(
        self,
        broker,
        instance: Path,
        sim_options: dict | None = None,
        speech=None,
        broadcasts: dict | None = None,
        **overrides: object,
    ) -> None:  # type: ignore[no-untyped-def]
        from speakers.simulator import Simulator

        self.broker = broker
        self.instance = instance
        self.overrides = overrides
        self.broadcasts_options = broadcasts or {}
        self.speech = speech  # a speech service of the test's own (default: the settings')
        broker.add_nodes(E2E_NODES)
        self.services = self._build()
        seed_commune(self.services.sessions, credentials=True)
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
            **(sim_options or {}),
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
            speech=self.speech,
            fleet_config=FleetConfig(health_interval_s=E2E_HEALTH_S, health_batch_interval_s=0.2),
            broadcasts_config=BroadcastsConfig(
                **{"lead_s": 1.5, "emergency_lead_s": 0.6, "gap_s": 0.3, "receipt_grace_s": 15}
                | self.broadcasts_options
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

    def log_messages(self, broadcast_id: int) -> list[str]:
        """The decision log's messages about one broadcast, oldest first."""
        from sqlalchemy import select

        from broadcaster.models import LogEntry

        with self.services.sessions() as session:
            query = select(LogEntry.message).where(LogEntry.broadcast_id == broadcast_id)
            return list(session.scalars(query.order_by(LogEntry.id)))

    def close(self) -> None:
        try:
            self.sim.stop()
        finally:
            self.services.close()


@pytest.fixture
def controller(mosquitto, tmp_path: Path) -> Iterator[E2EController]:  # type: ignore[no-untyped-def]
    """The controller on a real broker with 9 simulated clusters (zones thon-1..thon-3).
    Emergencies are rendered whole before they air here (the tests of the play path look at each
    item's one timeline entry); tests/test_emergency_stream.py covers emergencies streamed as they
    are synthesized, the default."""
    harness = E2EController(mosquitto, tmp_path / "instance", broadcasts={"stream_emergencies": False})
    yield harness
    harness.close()


def e2e_client(controller: E2EController):  # type: ignore[no-untyped-def]
    """A Flask test client of the real web app over the controller's services (API tests)."""
    from broadcaster.web import create_app

    app = create_app(controller.services.settings, controller.services, {"TESTING": True})
    return app.test_client()

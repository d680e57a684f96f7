"""Harness of the federation tests: controllers (levels) in one process, each with its web app
served on a free loopback port (werkzeug in a thread), so a lower level reaches its upper level
over real HTTP through the real link.

- :class:`Level` (unit harness): the real controller (``unit_services``: real lifecycle, real
  fleet, SQLite) on an in-memory broker with the demo commune's 9 FakeNodes, or none;
- :class:`Switch`: a WSGI wrapper that makes a level's server refuse every request while "cut".
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from tests.fixtures_controller import COMMUNE_NODES, unit_services, wait_until
from tests.fixtures_web import LiveServer

# Fast link settings for tests: short polls and retries, frequent reports.
FAST_FEDERATION: dict[str, Any] = {
    "poll_wait_s": 2.0,
    "timeout_s": 5.0,
    "retry_min_s": 0.1,
    "retry_max_s": 0.5,
    "collect_interval_s": 0.2,
    "clusters_interval_s": 30.0,
    "minutes_interval_s": 30.0,
    "clash_timeout_s": 30.0,
}


class Switch:
    """WSGI middleware: while ``cut`` is set, every request gets 503 (the link is down)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.cut = threading.Event()
        self.refused = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if self.cut.is_set():
            self.refused += 1
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"link cut by the test"]
        return self.app(environ, start_response)


class Level:
    """One controller of the chain (see the module docstring); ``api`` is a Flask test client
    with an API token."""

    def __init__(self, root: Path, name: str, *, nodes: bool = True, **federation: Any) -> None:
        from broadcaster.transport.memory import MemoryBroker, MemoryTransport
        from broadcaster.web import create_app
        from broadcaster.web.tokens import create_token
        from tests.fakes import FakeNode

        self.name = name
        self.broker = MemoryBroker()
        self.transport = MemoryTransport(self.broker)
        self.services = unit_services(
            root / name,
            transport=self.transport,
            commune=nodes,
            federation={**FAST_FEDERATION, **federation},
            alerts={"instance_name": name},
        )
        self.nodes = (
            {sid: FakeNode(self.broker, sid, zone) for sid, zone in COMMUNE_NODES.items()} if nodes else {}
        )
        s = self.services
        s.fleet.start()
        s.broadcasts.start()
        self.transport.start()
        for node in self.nodes.values():
            node.connect()
        if self.nodes:
            wait_until(lambda: len(s.fleet.online_ids()) == len(self.nodes), what=f"{name}: nodes online")
        assert s.federation is not None
        s.federation.start()
        self.app = create_app(s.settings, s, {"TESTING": True})
        self.switch = Switch(self.app.wsgi_app)
        self.app.wsgi_app = self.switch  # type: ignore[method-assign]
        self.server = LiveServer(self.app)
        self.url = self.server.url
        self.client = self.app.test_client()
        self.token = create_token(s.sessions, "tests")

    @property
    def federation(self) -> Any:
        return self.services.federation

    @property
    def sessions(self) -> Any:
        return self.services.sessions

    def add_unit(self, unit: str, display: str = "") -> str:
        from broadcaster.federation.units import add_unit

        token = add_unit(self.sessions, unit, display)
        self.federation.outbound.refresh_units()
        self.services.targets.invalidate()
        return token

    def link_to(self, upper: Level, unit: str) -> None:
        from broadcaster.federation.admin import set_upstream

        set_upstream(self.sessions, upper.url, upper.add_unit(unit))
        wait_until(lambda: self.federation.link is not None and self.federation.link.status()["state"] == "ok",
                   timeout=10, what=f"{self.name}: link up")  # fmt: skip

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.client.post(path, json=body, headers={"Authorization": f"Bearer {self.token}"})

    def get(self, path: str) -> Any:
        return self.client.get(path, headers={"Authorization": f"Bearer {self.token}"})

    def broadcast(self, broadcast_id: int) -> dict[str, Any]:
        return self.services.broadcasts.get(broadcast_id) or {}

    def inbox(self) -> list[dict[str, Any]]:
        from broadcaster.federation.views import inbox

        with self.sessions() as session:
            return inbox(session)

    def close(self) -> None:
        self.server.stop()
        s = self.services
        s.federation.stop()
        s.broadcasts.stop()
        s.fleet.stop()
        for node in self.nodes.values():
            node.stop()
        self.transport.stop()
        s.db_engine.dispose()


__all__ = ["FAST_FEDERATION", "Level", "Switch"]


class RealLevel:
    """A controller as ``broadcaster serve`` runs it (``build_services``: its own managed
    mosquitto on a free loopback port, SQLite, espeak-ng) with ``clusters`` simulated clusters
    (the real agent code, ``speakers/simulator.py``), its web app served on loopback."""

    def __init__(
        self,
        root: Path,
        name: str,
        *,
        clusters: int = 2,
        broadcasts: dict[str, Any] | None = None,
        **federation: Any,
    ) -> None:
        from broadcaster.broadcasts import BroadcastsConfig
        from broadcaster.fleet import FleetConfig
        from broadcaster.services import build_services
        from broadcaster.settings import load_settings
        from broadcaster.web import create_app
        from broadcaster.web.tokens import create_token
        from speakers.simulator import Simulator

        self.name = name
        instance = root / name
        settings = load_settings(
            {
                "instance": instance,
                "tts": {"order": ["espeak-ng"]},
                "scheduling": {"schedules_dir": instance / "schedules"},
                "alerts": {"instance_name": name},
                "federation": {**FAST_FEDERATION, **federation},
            },
            environ={},
        )
        self.services = s = build_services(
            settings,
            scheduler=False,  # one APScheduler per process; not needed here
            fleet_config=FleetConfig(health_interval_s=1.0, health_batch_interval_s=0.2),
            broadcasts_config=BroadcastsConfig(
                **{
                    "lead_s": 1.0,
                    "emergency_lead_s": 0.5,
                    "gap_s": 0.3,
                    "receipt_grace_s": 15,
                    **(broadcasts or {}),
                }
            ),
        )
        zone = f"{name}-thon"
        s.registry.create_zone(zone, f"Thôn của {name}")
        self.passwords: dict[str, str] = {}
        for i in range(1, clusters + 1):
            sid = f"{name}-loa-{i}"
            _, self.passwords[sid] = s.registry.create_speaker(sid, f"Cụm loa {i} ({name})", zone)
        s.start()
        self.sim = None
        if clusters:
            broker = s.broker
            assert broker is not None
            self.sim = Simulator(
                f"mqtt://{broker.host}:{broker.port}",
                clusters,
                nodes={sid: zone for sid in self.passwords},
                credentials=lambda sid: (sid, self.passwords[sid]),
                health_interval_s=1.0,
                keepalive_s=5,
                reconnect_min_s=0.2,
                reconnect_max_s=2.0,
                request_timeout_s=1.0,
                cache_root=instance / "sim-cache",
            )
            self.sim.start_in_thread(timeout=30)
            wait_until(
                lambda: len(s.fleet.online_ids()) == clusters, timeout=20, what=f"{name}: clusters online"
            )
        self.app = create_app(settings, s, {"TESTING": True})
        self.switch = Switch(self.app.wsgi_app)
        self.app.wsgi_app = self.switch  # type: ignore[method-assign]
        self.server = LiveServer(self.app)
        self.url = self.server.url
        self.client = self.app.test_client()
        self.token = create_token(s.sessions, "tests")

    federation = Level.federation
    sessions = Level.sessions
    add_unit = Level.add_unit
    link_to = Level.link_to
    post = Level.post
    get = Level.get
    broadcast = Level.broadcast
    inbox = Level.inbox

    def close(self) -> None:
        self.server.stop()
        try:
            if self.sim is not None:
                self.sim.stop()
        finally:
            self.services.close()


__all__ += ["RealLevel"]

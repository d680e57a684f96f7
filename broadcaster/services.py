"""build_services(settings): the only place where the parts of the controller are wired together.

Nothing starts on construction; ``Services.start()`` starts, in this order, the managed broker (when
no ``mqtt_url`` is configured), the fleet monitor and the broadcast dispatcher (which subscribe on
the transport), the MQTT link, the scheduler and, with ``--demo``, the simulated clusters.
``stop()`` stops them in reverse order and joins their threads.

The managed broker lives in ``<instance>/mosquitto/``: ``broadcaster.broker.sync`` starts it with
the registry's accounts and keeps it in step with registry changes (``_broker_sync``).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.db import create_schema, make_engine, make_session_factory
from broadcaster.settings import Settings

if TYPE_CHECKING:
    from broadcaster.broadcasts import BroadcastManager, BroadcastsConfig
    from broadcaster.fleet import Fleet, FleetConfig
    from broadcaster.fleet.registry import Registry, RegistryChange
    from broadcaster.scheduling import SchedulerService
    from broadcaster.speech import SpeechService
    from broadcaster.textnorm import Normalizer
    from broadcaster.transport import Transport

_LOGGER = logging.getLogger(__name__)

CONTROLLER_USER = "controller"
# The demo's clusters report health every 10 s (not 30) so a new user sees them live at once.
DEMO_HEALTH_INTERVAL_S = 10.0


def open_database(settings: Settings) -> sessionmaker[Session]:
    """Open (and migrate) the database alone, for CLI commands that need nothing else."""
    engine = make_engine(settings.db_url)
    create_schema(engine)
    return make_session_factory(engine)


def controller_client_id(settings: Settings) -> str:
    """Stable per instance, so the broker keeps our persistent session across restarts."""
    digest = hashlib.sha1(str(settings.instance.resolve()).encode()).hexdigest()[:10]
    return f"loa-controller-{digest}"


@dataclass
class Services:
    settings: Settings
    db_engine: Engine
    sessions: sessionmaker[Session]
    speech: SpeechService
    transport: Transport
    fleet: Fleet
    broadcasts: BroadcastManager
    scheduler: SchedulerService | None
    registry: Registry
    normalizer: Normalizer | None = None
    fleet_config: FleetConfig | None = None
    broadcasts_config: BroadcastsConfig | None = None
    extras: dict[str, Any] = field(default_factory=dict)  # managed broker, demo simulator, credentials
    started: bool = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start everything (see the module docstring). Raises with a clear message when the
        broker, the MQTT URL or the scheduler lock is not usable; what started is stopped again."""
        if self.started:
            return
        self.started = True
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        settings = self.settings
        if settings.demo:
            from broadcaster import demo

            self.extras["demo_credentials"] = demo.seed(self)
            demo.ensure_admin(self)
        if settings.mqtt_url is None:
            url = self._start_managed_broker()
        else:
            url = settings.mqtt_url
        transport = self.transport
        if hasattr(transport, "url") and getattr(transport, "url", None) is None:
            transport.url = url  # type: ignore[attr-defined]
        self.fleet.start()
        self.broadcasts.start()
        transport.start()
        wait = getattr(transport, "wait_connected", None)
        if wait is not None and not wait(10.0):
            _LOGGER.warning("MQTT broker not reachable yet; the controller keeps trying in the background")
        if self.scheduler is not None:
            self.scheduler.start()
        if settings.demo:
            from broadcaster import demo

            self.extras["simulator"] = demo.start_simulator(self)
        _LOGGER.info("controller started")

    def stop(self) -> None:
        """Stop in reverse order; safe to call twice and after a failed start."""
        if not self.started:
            return
        self.started = False
        simulator = self.extras.pop("simulator", None)
        steps: list[tuple[str, Any]] = [
            ("simulator", simulator.stop if simulator is not None else None),
            ("scheduler", self.scheduler.shutdown if self.scheduler is not None else None),
            ("broadcasts", self.broadcasts.stop),
            ("transport", self.transport.stop),
            ("fleet", self.fleet.stop),
            ("broker", self._stop_managed_broker if "broker" in self.extras else None),
        ]
        for name, fn in steps:
            if fn is None:
                continue
            try:
                fn()
            except Exception:
                _LOGGER.exception("stopping %s failed", name)
        _LOGGER.info("controller stopped")

    def close(self) -> None:
        """Stop and release the database engine (tests, CLI)."""
        self.stop()
        self.db_engine.dispose()

    # ------------------------------------------------------------------ managed broker

    def _start_managed_broker(self) -> str:
        from broadcaster.broker.sync import start_managed_broker

        broker, syncer = start_managed_broker(self.settings, self.registry, self.sessions, CONTROLLER_USER)
        self.extras["broker"] = broker
        self.extras["broker_sync"] = syncer
        if self._broker_sync not in self.registry.on_change:
            self.registry.on_change.append(self._broker_sync)
        return broker.controller_url

    def _broker_sync(self, change: RegistryChange) -> None:
        """Registry hook: keep the managed broker's accounts in step (batched, see broker/sync.py)."""
        syncer = self.extras.get("broker_sync")
        if syncer is not None:
            syncer.registry_changed(change)

    def _stop_managed_broker(self) -> None:
        from broadcaster.broker.sync import stop_managed_broker

        stop_managed_broker(self.extras["broker"], self.extras.pop("broker_sync", None))


def build_services(
    settings: Settings,
    *,
    fleet_config: FleetConfig | None = None,
    broadcasts_config: BroadcastsConfig | None = None,
    transport: Transport | None = None,
    scheduler: bool = True,
) -> Services:
    """Wire the controller. Opens and migrates the database; starts nothing.

    ``fleet_config``/``broadcasts_config`` default to the settings' ``fleet``/``broadcasts``
    sections when present, else to their defaults (the demo sends health every 10 s). Tests may
    pass their own ``transport``.
    """
    from broadcaster.broadcasts import BroadcastManager
    from broadcaster.fleet import Fleet, FleetConfig
    from broadcaster.fleet.registry import Registry
    from broadcaster.speech import SpeechService
    from broadcaster.textnorm import Normalizer
    from broadcaster.transport.mqtt import MqttTransport
    from speakers.protocol import Topics

    settings.ensure_instance()
    engine = make_engine(settings.db_url)
    create_schema(engine)
    sessions = make_session_factory(engine)
    speech = SpeechService.from_settings(settings)
    normalizer = Normalizer.from_config(settings.textnorm)
    if fleet_config is None:
        if settings.demo and "fleet" not in settings.model_fields_set:
            fleet_config = FleetConfig(health_interval_s=DEMO_HEALTH_INTERVAL_S)
        else:
            fleet_config = settings.fleet
    if broadcasts_config is None:
        broadcasts_config = settings.broadcasts
    topics = Topics(settings.mqtt_prefix)
    if transport is None:
        transport = MqttTransport(settings.mqtt_url, controller_client_id(settings), topics)
    registry = Registry(sessions)
    fleet = Fleet(sessions, transport, fleet_config)
    broadcasts = BroadcastManager(
        sessions,
        speech,
        transport,
        fleet,
        broadcasts_config,
        timezone=settings.timezone,
        max_chars=settings.textnorm.max_chars,
    )
    registry.on_change.append(fleet.registry_changed)
    registry.on_change.append(broadcasts.registry_changed)
    scheduler_service = None
    if scheduler:
        from broadcaster.scheduling import SchedulerService

        scheduler_service = SchedulerService(settings, sessions, broadcasts, speech)
        broadcasts.defer = scheduler_service.schedule_broadcast
        broadcasts.undefer = scheduler_service.unschedule_broadcast
    return Services(
        settings=settings,
        db_engine=engine,
        sessions=sessions,
        speech=speech,
        transport=transport,
        fleet=fleet,
        broadcasts=broadcasts,
        scheduler=scheduler_service,
        registry=registry,
        normalizer=normalizer,
        fleet_config=fleet_config,
        broadcasts_config=broadcasts_config,
    )


__all__ = ["Services", "build_services", "controller_client_id", "open_database"]

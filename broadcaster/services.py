"""build_services(settings): the only place where the parts of the controller are wired together.

Nothing starts on construction; ``Services.start()`` starts, in this order, the managed broker (when
no ``mqtt_url`` is configured), the fleet monitor and the broadcast dispatcher (which subscribe on
the transport), the MQTT link, the scheduler and the federation (upper levels, CAP feeds).
``stop()`` stops them in reverse order and joins their threads. The demo (``serve --demo``) is not
wired here: ``broadcaster.demo`` seeds and runs it around ``start()``/``stop()``.

The managed broker lives in ``<instance>/mosquitto/``: ``broadcaster.broker.sync`` starts it with
the registry's accounts and keeps it in step with registry changes (``_broker_sync``).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.db import create_schema, make_engine, make_session_factory
from broadcaster.settings import Settings

if TYPE_CHECKING:
    from broadcaster.alerts import AlertNotifier
    from broadcaster.broadcasts import AnnouncementValidator, BroadcastManager, BroadcastsConfig
    from broadcaster.broadcasts.views import BroadcastTitles, BroadcastViews
    from broadcaster.broker import BrokerSync, ManagedBroker
    from broadcaster.federation.service import Federation
    from broadcaster.fleet import Fleet, FleetConfig
    from broadcaster.fleet.registry import Registry, RegistryChange
    from broadcaster.fleet.sources import SourceAlerts
    from broadcaster.fleet.targets import TargetResolver
    from broadcaster.lexicon import Lexicon
    from broadcaster.reports import Reports
    from broadcaster.runtime_settings import RuntimeSettings
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
    """The controller's parts, wired by :func:`build_services`. Typed fields, nothing hidden."""

    settings: Settings
    db_engine: Engine
    sessions: sessionmaker[Session]
    speech: SpeechService
    transport: Transport
    fleet: Fleet
    broadcasts: BroadcastManager
    scheduler: SchedulerService | None
    registry: Registry
    targets: TargetResolver
    validator: AnnouncementValidator
    titles: BroadcastTitles
    views: BroadcastViews
    lexicon: Lexicon
    runtime: RuntimeSettings
    reports: Reports
    normalizer: Normalizer | None = None
    fleet_config: FleetConfig | None = None
    broadcasts_config: BroadcastsConfig | None = None
    alerts: AlertNotifier | None = None  # fleet alerts by e-mail and webhook
    source_alerts: SourceAlerts | None = None  # relay sources that stalled (controller-level alerts)
    broker: ManagedBroker | None = None  # the managed Mosquitto, while it runs
    broker_sync: BrokerSync | None = None
    federation: Federation | None = None  # upper levels and CAP feeds (docs/federation.md)
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
        if settings.mqtt_url is None:
            url = self._start_managed_broker()
        else:
            url = settings.mqtt_url
        transport = self.transport
        if hasattr(transport, "url") and getattr(transport, "url", None) is None:
            transport.url = url  # type: ignore[attr-defined]
        self.fleet.start()
        if self.alerts is not None:
            self.alerts.start()
        if self.source_alerts is not None:
            self.source_alerts.close_stale()
        self.broadcasts.start()
        transport.start()
        wait = getattr(transport, "wait_connected", None)
        if wait is not None and not wait(10.0):
            _LOGGER.warning("MQTT broker not reachable yet; the controller keeps trying in the background")
        if self.scheduler is not None:
            self.scheduler.start()
        if self.federation is not None:
            self.federation.start()
        _LOGGER.info("controller started")

    def stop(self) -> None:
        """Stop in reverse order; safe to call twice and after a failed start."""
        if not self.started:
            return
        self.started = False
        steps: list[tuple[str, Any]] = [
            ("federation", self.federation.stop if self.federation is not None else None),
            ("scheduler", self.scheduler.shutdown if self.scheduler is not None else None),
            ("broadcasts", self.broadcasts.stop),
            ("transport", self.transport.stop),
            ("alerts", self.alerts.stop if self.alerts is not None else None),
            ("fleet", self.fleet.stop),
            ("broker", self._stop_managed_broker if self.broker is not None else None),
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
        self.broker = broker
        self.broker_sync = syncer
        if self._broker_sync not in self.registry.on_change:
            self.registry.on_change.append(self._broker_sync)
        return broker.controller_url

    def _broker_sync(self, change: RegistryChange) -> None:
        """Registry hook: keep the managed broker's accounts in step (batched, see broker/sync.py)."""
        syncer = self.broker_sync
        if syncer is not None:
            syncer.registry_changed(change)

    def _stop_managed_broker(self) -> None:
        from broadcaster.broker.sync import stop_managed_broker

        broker, syncer = self.broker, self.broker_sync
        self.broker = self.broker_sync = None
        if broker is not None:
            stop_managed_broker(broker, syncer)


def build_services(
    settings: Settings,
    *,
    fleet_config: FleetConfig | None = None,
    broadcasts_config: BroadcastsConfig | None = None,
    transport: Transport | None = None,
    speech: SpeechService | None = None,
    fleet: Fleet | None = None,
    scheduler: bool = True,
    database: tuple[Engine, sessionmaker[Session]] | None = None,
) -> Services:
    """Wire the controller. Opens and migrates the database; starts nothing.

    ``fleet_config``/``broadcasts_config`` default to the settings' ``fleet``/``broadcasts``
    sections (with ``--demo`` and no fleet section, clusters report health every 10 s). The unit
    tests inject their parts: ``transport``, ``speech`` and ``fleet`` (tests/fakes) and ``database``
    (an engine and a session factory over it, e.g. one that fails commits).
    """
    from broadcaster.alerts import AlertNotifier
    from broadcaster.broadcasts import AnnouncementValidator, BroadcastManager, Limits
    from broadcaster.broadcasts.views import BroadcastTitles, BroadcastViews
    from broadcaster.fleet import Fleet, FleetConfig
    from broadcaster.fleet.registry import Registry
    from broadcaster.fleet.targets import TargetResolver
    from broadcaster.lexicon import Lexicon
    from broadcaster.reports import Reports
    from broadcaster.runtime_settings import RuntimeSettings
    from broadcaster.speech import SpeechService
    from broadcaster.textnorm import Normalizer
    from broadcaster.transport.mqtt import MqttTransport
    from broadcaster.tts.usage import SqlUsageCounter
    from speakers.protocol import Topics

    settings.ensure_instance()
    if database is None:
        engine = make_engine(settings.db_url)
        create_schema(engine)
        database = (engine, make_session_factory(engine))
    engine, sessions = database
    if speech is None:
        speech = SpeechService.from_settings(settings, usage=SqlUsageCounter(sessions))
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
    targets = TargetResolver(sessions)
    titles = BroadcastTitles(sessions)
    lexicon = Lexicon(sessions)
    validator = AnnouncementValidator(
        Limits.from_settings(settings, broadcasts_config),
        targets=targets,
        engine_names=lambda: {e["name"] for e in speech.engines()},
        speakable=lambda text: speech.normalize(text, lexicon.overrides()),
        audio_exists=speech.store.has,
        tz=ZoneInfo(settings.timezone),
    )
    if fleet is None:
        fleet = Fleet(sessions, transport, fleet_config, titles=titles.lookup)
    from broadcaster.live import StreamHub

    live_dir = settings.instance / "live"
    live_dir.mkdir(parents=True, exist_ok=True)
    hub = StreamHub(transport, settings.live, settings.audio, workdir=live_dir)
    from broadcaster.fleet.sources import SourceAlerts

    source_alerts = SourceAlerts(sessions, getattr(fleet, "notify_alert", None))
    hub.source_listener = source_alerts
    broadcasts = BroadcastManager(
        sessions,
        speech,
        transport,
        fleet,
        broadcasts_config,
        hub=hub,
        targets=targets,
        validator=validator,
        titles=titles,
        timezone=settings.timezone,
        deferred_grace_s=float(settings.scheduling.misfire_grace_s),
    )
    registry.on_change.append(fleet.registry_changed)
    registry.on_change.append(targets.invalidate)
    alerts = (
        AlertNotifier(settings.alerts, fleet, timezone=settings.timezone)
        if isinstance(fleet, Fleet)
        else None
    )
    from broadcaster.federation.build import build_federation

    federation = build_federation(
        settings, sessions=sessions, broadcasts=broadcasts, speech=speech, fleet=fleet, alerts=alerts
    )
    scheduler_service = None
    if scheduler:
        from broadcaster.scheduling import SchedulerService

        scheduler_service = SchedulerService(settings, sessions, broadcasts, speech, validator, transport)
        if scheduler_service.lookahead is not None:
            registry.on_change.append(scheduler_service.lookahead.mark)
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
        targets=targets,
        validator=validator,
        titles=titles,
        views=BroadcastViews(sessions),
        lexicon=lexicon,
        runtime=RuntimeSettings(sessions, approval_required=settings.web.approval_required),
        reports=Reports(sessions, settings.timezone),
        normalizer=normalizer,
        alerts=alerts,
        source_alerts=source_alerts,
        federation=federation,
        fleet_config=fleet_config,
        broadcasts_config=broadcasts_config,
    )


__all__ = ["Services", "build_services", "controller_client_id", "open_database"]

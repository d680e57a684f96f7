"""build_services(settings): the only place where the parts of the controller are wired together.

Nothing starts on construction; ``Services.start()`` starts, in this order, the managed broker (when
no ``mqtt_url`` is configured), the fleet monitor and the broadcast dispatcher (which subscribe on
the transport), the MQTT link and the scheduler. ``stop()`` stops them in reverse order and joins
their threads. The demo (``serve --demo``) is not wired here: ``broadcaster.demo`` seeds and runs it
around ``start()``/``stop()``.

The managed broker (``broadcaster.broker.ManagedBroker``) lives in ``<instance>/mosquitto/``; its
users are the controller (password generated once and kept there) and every enabled speaker of the
registry with its stored mosquitto hash. Registry changes (a speaker added, moved, disabled, its
password reset) are applied to the broker's password file and ACL by a worker thread that
coalesces a burst of changes (an import of thousands of speakers) into one reload within
``BROKER_SYNC_WINDOW_S``. Its port is chosen
once and kept in ``<instance>/mosquitto/port`` so nodes find it again after a restart.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
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
    from broadcaster.broker import ManagedBroker
    from broadcaster.fleet import Fleet, FleetConfig
    from broadcaster.fleet.registry import Registry, RegistryChange
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
    broker: ManagedBroker | None = None  # the managed Mosquitto, while it runs
    broker_sync: BrokerSync | None = None
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
        self.broadcasts.start()
        transport.start()
        wait = getattr(transport, "wait_connected", None)
        if wait is not None and not wait(10.0):
            _LOGGER.warning("MQTT broker not reachable yet; the controller keeps trying in the background")
        if self.scheduler is not None:
            self.scheduler.start()
        _LOGGER.info("controller started")

    def stop(self) -> None:
        """Stop in reverse order; safe to call twice and after a failed start."""
        if not self.started:
            return
        self.started = False
        steps: list[tuple[str, Any]] = [
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
        from broadcaster.broker import BrokerError, ManagedBroker

        workdir = (self.settings.instance / "mosquitto").resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        port_file = workdir / "port"
        port = None
        if port_file.exists():
            try:
                port = int(port_file.read_text().strip())
            except ValueError:
                port = None
        hashes = self.registry.password_hashes()
        zones = self.registry.zones_of_speakers()

        def make(port: int | None) -> ManagedBroker:
            return ManagedBroker(
                workdir,
                port=port,
                controller_user=CONTROLLER_USER,
                prefix=self.settings.mqtt_prefix,
                password_hashes=hashes,
                node_zones={sid: zones.get(sid) for sid in hashes},
            )

        broker = make(port)
        try:
            broker.start()
        except BrokerError:
            if port is None:
                raise
            _LOGGER.warning("managed broker: port %s unusable, choosing another", port)
            broker = make(None)
            broker.start()
        port_file.write_text(f"{broker.port}\n")
        self.broker = broker
        self.broker_sync = BrokerSync(broker, self.sessions)
        if self._broker_sync not in self.registry.on_change:
            self.registry.on_change.append(self._broker_sync)
        _LOGGER.info("managed broker on 127.0.0.1:%s (%s clusters)", broker.port, len(hashes))
        return broker.controller_url

    def _broker_sync(self, change: RegistryChange) -> None:
        """Registry hook: keep the managed broker's password file and ACL in step (batched)."""
        syncer = self.broker_sync
        if syncer is None or change.speaker_id is None:
            return
        syncer.mark(change.speaker_id)

    def _stop_managed_broker(self) -> None:
        syncer, self.broker_sync = self.broker_sync, None
        if syncer is not None:
            syncer.stop()
        broker, self.broker = self.broker, None
        if broker is not None:
            broker.stop()


# How long the broker-sync worker gathers registry changes before one reload (~0.1 s each).
BROKER_SYNC_WINDOW_S = 0.1


class BrokerSync:
    """Applies registry changes to the managed broker from a worker thread, a burst at a time:
    ``mark(speaker_id)`` is instant; within ``window_s`` every marked speaker is read from the
    database, its account added, changed or removed, the files written once and mosquitto
    reloaded once."""

    def __init__(
        self, broker: Any, sessions: sessionmaker[Session], window_s: float = BROKER_SYNC_WINDOW_S
    ) -> None:
        self.broker = broker
        self.sessions = sessions
        self.window_s = window_s
        self.batches = 0
        self._dirty: set[str] = set()
        self._busy = False
        self._stopping = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="broker-sync", daemon=True)
        self._thread.start()

    def mark(self, speaker_id: str) -> None:
        with self._cond:
            self._dirty.add(speaker_id)
            self._cond.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every marked change is applied; True when it was."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._dirty or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self._cond.wait(remaining)
            return True

    def stop(self, timeout: float = 10.0) -> None:
        """Apply what is pending, then end the worker."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._dirty and not self._stopping:
                    self._cond.wait()
                if not self._dirty:
                    return
                # Gather the rest of the burst (each mark() notifies: wait out the whole window).
                deadline = time.monotonic() + self.window_s
                while not self._stopping and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
                batch, self._dirty = self._dirty, set()
                self._busy = True
            try:
                self._apply(batch)
            except Exception:
                _LOGGER.exception("managed broker: applying %s registry change(s) failed", len(batch))
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _apply(self, speaker_ids: set[str]) -> None:
        from broadcaster.broker import BrokerError
        from broadcaster.models import Speaker

        with self.sessions() as session:
            rows = {sid: session.get(Speaker, sid) for sid in speaker_ids}
            wanted = {
                sid: (row.mqtt_password_hash, row.zone_id)
                for sid, row in rows.items()
                if row is not None and row.enabled and row.mqtt_password_hash
            }
        with self.broker.batch():
            for sid in sorted(speaker_ids):
                try:
                    if sid in wanted:
                        hashed, zone = wanted[sid]
                        self.broker.add_or_update_user(sid, password_hash=hashed, zone=zone)
                    else:
                        self.broker.remove_user(sid)
                except (BrokerError, ValueError) as exc:
                    _LOGGER.error("managed broker: speaker %s not applied: %s", sid, exc)
        self.broker.reload()
        self.batches += 1


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
    broadcasts = BroadcastManager(
        sessions,
        speech,
        transport,
        fleet,
        broadcasts_config,
        targets=targets,
        validator=validator,
        titles=titles,
        timezone=settings.timezone,
        deferred_grace_s=float(settings.scheduling.misfire_grace_s),
    )
    registry.on_change.append(fleet.registry_changed)
    registry.on_change.append(targets.invalidate)
    alerts = AlertNotifier(settings.alerts, fleet, timezone=settings.timezone) if isinstance(fleet, Fleet) else None
    scheduler_service = None
    if scheduler:
        from broadcaster.scheduling import SchedulerService

        scheduler_service = SchedulerService(settings, sessions, broadcasts, speech, validator)
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
        fleet_config=fleet_config,
        broadcasts_config=broadcasts_config,
    )


__all__ = ["BrokerSync", "Services", "build_services", "controller_client_id", "open_database"]

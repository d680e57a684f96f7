"""Live state of every cluster: online or not, latest health, what plays, alerts.

Online/offline comes from the retained ``status`` message and the last will (``online: false``),
plus staleness: a node that sent nothing for ``stale_factor`` health intervals is shown offline with a
``stale`` alert, because a half-open TCP link can keep a dead node "online" at the broker for minutes.

One worker thread owns the state. It drains the ingest queue, updates the live state, raises and
clears alerts, and writes health samples in batches (one commit per ``health_batch_size`` samples or
``health_batch_interval_s``, whichever comes first); samples older than the retention are deleted
hourly. Alerts (kinds and rules in ``alerting.py``) live in the ``alerts`` table and in the
snapshot; raising and clearing one is also written to the decision log, and once committed, handed
to the alert listeners (the notifier) as an :class:`AlertChange`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.fleet.alerting import (
    ALERT_MESSAGES,
    AlertChange,
    AlertOp,
    LiveState,
    evaluate,
    note_health,
    note_receipt,
)
from broadcaster.fleet.config import FleetConfig
from broadcaster.fleet.ingest import Ingest
from broadcaster.models import Alert, HealthSample, LogEntry, Speaker, Zone
from broadcaster.queues import drain
from broadcaster.transport import Transport
from speakers.protocol import Event, Health, Status

_LOGGER = logging.getLogger(__name__)

_RETENTION_EVERY_S = 3600.0
_PLAYING_STATES = {"playing"}
_IDLE_STATES = {"done", "failed", "preempted", "stopped", "expired"}
# Registry rows (name, zone) are re-read at most this often for snapshots.
_REGISTRY_TTL_S = 2.0
_MIN_PENDING = 20_000


def _ts(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def _iso(epoch: float | None) -> str | None:
    value = _ts(epoch)
    return None if value is None else value.isoformat()


class Fleet:
    """The live fleet. Built by ``build_services``; ``start()`` subscribes and starts the worker."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        transport: Transport,
        config: FleetConfig | None = None,
        clock: Callable[[], float] = time.time,
        *,
        titles: Callable[[str], str | None] | None = None,
    ) -> None:
        """``titles``: broadcast id as nodes report it -> title, for "now playing"."""
        self.sessions = sessions
        self.transport = transport
        self.config = config or FleetConfig()
        self.clock = clock
        self.ingest = Ingest(transport, self._enqueue, clock)
        self.titles = titles
        self._queue: queue.Queue[tuple[str, str, Any, float] | None] = queue.Queue()
        self._live: dict[str, LiveState] = {}
        # When each cluster last said it started or stopped playing: the dashboard shows whichever
        # is fresher, this receipt or the latest health report (which comes only every 10-30 s).
        self._play_receipt_at: dict[str, float] = {}
        self._lock = threading.RLock()
        self._online_listeners: list[Callable[[str, bool], None]] = []
        self._alert_listeners: list[Callable[[AlertChange], None]] = []
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._started_at = clock()
        self._pending_health: list[dict[str, Any]] = []
        self._pending_since: float | None = None
        self._registry: dict[str, tuple[str, str | None, bool]] = {}  # id -> (name, zone, enabled)
        self._zone_names: dict[str, str] = {}
        self._registry_at = -1e9
        self._last_retention = -1e9
        # Unwritten samples kept while the database fails: ten batches, and at least a few minutes
        # of a 2,000-cluster fleet reporting every 30 s.
        self._max_pending = max(10 * self.config.health_batch_size, _MIN_PENDING)
        self.stats = {
            "health_received": 0,
            "health_written": 0,
            "health_dropped": 0,
            "commits": 0,
            "commit_failures": 0,
            "alert_writes_dropped": 0,
            "queue_max": 0,
        }

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._thread is not None:
            return
        self._started_at = self.clock()
        self._load_alerts()
        self.ingest.install()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="fleet-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stopping.set()
        self._queue.put(None)
        self._thread.join(timeout=30)
        self._thread = None

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is processed and committed (tests, benchmarks)."""
        done = threading.Event()
        self._queue.put(("flush", "", done, 0.0))
        return done.wait(timeout)

    # ------------------------------------------------------------------ read API

    def snapshot(self) -> list[dict[str, Any]]:
        """One dict per registered cluster: id, name, zone, online, last_seen, health, playing,
        volume, amplifier_on, alerts, malformed."""
        registry = self._registry_rows(force=True)
        with self._lock:
            return [self._speaker_dict(sid, row) for sid, row in sorted(registry.items())]

    def speaker(self, speaker_id: str) -> dict[str, Any] | None:
        registry = self._registry_rows(force=True)
        row = registry.get(speaker_id)
        if row is None:
            return None
        with self._lock:
            return self._speaker_dict(speaker_id, row)

    def alerts(self, active_only: bool = True) -> list[dict[str, Any]]:
        with self.sessions() as session:
            query = select(Alert).order_by(Alert.raised_at.desc(), Alert.id.desc())
            if active_only:
                query = query.where(Alert.cleared_at.is_(None))
            return [
                {
                    "id": a.id,
                    "speaker": a.speaker_id,
                    "kind": a.kind,
                    "message": a.message,
                    "raised_at": a.raised_at.isoformat(),
                    "cleared_at": a.cleared_at.isoformat() if a.cleared_at else None,
                    "active": a.cleared_at is None,
                }
                for a in session.scalars(query.limit(1000))
            ]

    def is_online(self, speaker_id: str) -> bool:
        with self._lock:
            live = self._live.get(speaker_id)
            return live is not None and live.online()

    def online_ids(self) -> set[str]:
        with self._lock:
            return {sid for sid, live in self._live.items() if live.online()}

    def round_trips_s(self) -> dict[str, float]:
        """Latest clock round trip (health ``clock_rtt_ms``) of each online cluster, in seconds: the
        broadcast lifecycle derives the emergency lead from it (arbitration.Policy.emergency_lead)."""
        with self._lock:
            found: dict[str, float] = {}
            for sid, live in self._live.items():
                rtt = (live.health or {}).get("clock_rtt_ms") if live.online() else None
                if isinstance(rtt, int | float) and 0 <= rtt < 60_000:
                    found[sid] = rtt / 1000
            return found

    def metrics(self) -> dict[str, Any]:
        with self._lock:
            online = sum(1 for live in self._live.values() if live.online())
            known = len(self._live)
        return {
            **self.ingest.metrics(),
            **self.stats,
            "speakers_seen": known,
            "speakers_online": online,
            "queue": self._queue.qsize(),
            "health_pending": len(self._pending_health),
        }

    # ------------------------------------------------------------------ subscriptions

    def add_online_listener(self, callback: Callable[[str, bool], None]) -> None:
        """``callback(speaker_id, online)`` (fleet worker thread) when a cluster comes or goes."""
        self._online_listeners.append(callback)

    def add_alert_listener(self, callback: Callable[[AlertChange], None]) -> None:
        """``callback(change)`` for each alert raised or resolved, on the fleet worker thread once the
        change is committed; it must only enqueue (a slow listener holds up the whole fleet)."""
        self._alert_listeners.append(callback)

    def notify_alert(self, change: AlertChange) -> None:
        """An alert written by another part of the controller (a relay source, ``sources.py``):
        told to the alert listeners like the fleet's own."""
        for listener in list(self._alert_listeners):
            try:
                listener(change)
            except Exception:
                _LOGGER.exception("alert listener failed")

    def add_event_listener(self, callback: Callable[[str, Event], None]) -> None:
        """``callback(speaker_id, event)`` on the network thread for every receipt; must only enqueue."""
        self.ingest.event_listeners.append(callback)

    def registry_changed(self, *_: Any) -> None:
        """Registry hook: re-read names and zones at the next look."""
        self._registry_at = -1e9

    # ------------------------------------------------------------------ worker

    def _enqueue(self, kind: str, speaker: str, message: Any, received_at: float) -> None:
        self._queue.put((kind, speaker, message, received_at))

    def _run(self) -> None:
        tick = min(1.0, self.config.health_batch_interval_s, self.config.health_interval_s / 2)
        while True:
            # Drain what is already there: one pass, one commit.
            items, stop = drain(self._queue, tick, 5000)
            self.stats["queue_max"] = max(self.stats["queue_max"], self._queue.qsize() + len(items))
            try:
                self._process(items, final=stop)
            except Exception:
                _LOGGER.exception("fleet worker: batch failed")
            if stop:
                return

    def _process(self, items: list[tuple[str, str, Any, float]], final: bool = False) -> None:
        online_changes: list[tuple[str, bool]] = []
        flushes: list[threading.Event] = []
        alert_ops: list[AlertOp] = []  # (speaker, kind, message, raise?)
        now = self.clock()
        for kind, speaker, message, received_at in items:
            if kind == "flush":
                flushes.append(message)
                continue
            with self._lock:
                live = self._live.setdefault(speaker, LiveState())
                was_online = live.online()
                live.last_seen = received_at
                if isinstance(message, Status):
                    live.status_online = message.online
                    live.status_at = received_at
                    live.zone_reported = message.zone
                    live.stale = False
                    if not message.online:
                        live.playing = None
                elif isinstance(message, Health):
                    self.stats["health_received"] += 1
                    data = message.to_dict()
                    data.pop("v", None)
                    data.pop("type", None)
                    live.health = data
                    live.health_at = received_at
                    note_health(live, data, self.config.thresholds)
                    live.stale = False
                    if live.status_online is None:
                        live.status_online = True  # health implies a live link; status may come later
                    if self.config.store_health:
                        self._pending_health.append(
                            {"speaker_id": speaker, "ts": _ts(received_at), "data": data}
                        )
                        if self._pending_since is None:
                            self._pending_since = time.monotonic()
                elif isinstance(message, Event):
                    note_receipt(live, message, self.config.thresholds)
                    if message.state in _PLAYING_STATES:
                        live.playing = message.broadcast_id
                        self._play_receipt_at[speaker] = received_at
                    elif message.state in _IDLE_STATES and live.playing == message.broadcast_id:
                        live.playing = None
                        self._play_receipt_at[speaker] = received_at
                is_online = live.online()
                alert_ops.extend(evaluate(speaker, live, self.config))
            if is_online != was_online:
                online_changes.append((speaker, is_online))
        # Staleness and never-seen clusters.
        stale_ops, stale_changes = self._check_staleness(now)
        alert_ops.extend(stale_ops)
        for speaker, online in stale_changes:
            online_changes.append((speaker, online))
        self._write(alert_ops, force_flush=final or bool(flushes))
        for speaker, online in online_changes:
            _LOGGER.info("cluster %s is %s", speaker, "online" if online else "offline")
            for listener in list(self._online_listeners):
                try:
                    listener(speaker, online)
                except Exception:
                    _LOGGER.exception("online listener failed")
        for done in flushes:
            done.set()

    def _check_staleness(self, now: float) -> tuple[list[AlertOp], list[tuple[str, bool]]]:
        ops: list[AlertOp] = []
        changes: list[tuple[str, bool]] = []
        limit = self.config.stale_after_s
        with self._lock:
            for speaker, live in self._live.items():
                if live.stale or not live.status_online:
                    continue
                fresh = max(x for x in (live.health_at, live.status_at, live.last_seen, 0.0) if x is not None)
                if now - fresh > limit:
                    live.stale = True
                    live.playing = None
                    ops.extend(evaluate(speaker, live, self.config))
                    changes.append((speaker, False))
        # Registered clusters never heard of since start-up.
        if now - self._started_at > limit:
            registry = self._registry_rows()
            with self._lock:
                for speaker, (_, _, enabled) in registry.items():
                    if not enabled or speaker in self._live:
                        continue
                    live = self._live.setdefault(speaker, LiveState())
                    live.alerts["offline"] = (None, ALERT_MESSAGES["never"])
                    ops.append((speaker, "offline", ALERT_MESSAGES["never"], True))
        return ops, changes

    def _write(self, alert_ops: list[AlertOp], force_flush: bool) -> None:
        """Commit alert changes and the due health samples (and the hourly retention).

        A failed commit is retried once. When the retry fails too, the alert changes are written on
        their own and the samples one by one: the sample that fails is dropped (logged, counted in
        ``health_dropped``), so one bad sample never blocks every later commit. If the database is
        down the rest stays pending for the next pass, at most ``_max_pending`` samples (the oldest
        are dropped first)."""
        self._bound_pending()
        health_due = bool(self._pending_health) and (
            force_flush
            or len(self._pending_health) >= self.config.health_batch_size
            or (
                self._pending_since is not None
                and time.monotonic() - self._pending_since >= self.config.health_batch_interval_s
            )
        )
        retention_due = time.monotonic() - self._last_retention >= _RETENTION_EVERY_S
        if not alert_ops and not health_due and not retention_due:
            return
        if health_due and self.config.health_batch_size == 1:
            # The "one commit per message" mode (kept for the benchmark and tiny fleets).
            self._write_one_by_one(retry=True)
            health_due = False
            if not alert_ops and not retention_due:
                return
        rows = list(self._pending_health) if health_due else []
        for attempt in (1, 2):
            try:
                self._commit(rows, alert_ops, retention_due)
            except Exception:
                self.stats["commit_failures"] += 1
                _LOGGER.exception(
                    "fleet: commit of %s samples and %s alert changes failed (attempt %s)",
                    len(rows),
                    len(alert_ops),
                    attempt,
                )
                continue
            self._written(len(rows))
            return
        # Both failed: alerts alone, then the samples one by one.
        if alert_ops:
            try:
                self._commit([], alert_ops, False)
            except Exception:
                self.stats["alert_writes_dropped"] += len(alert_ops)
                _LOGGER.exception("fleet: %s alert changes could not be written; dropped", len(alert_ops))
        if rows:
            self._write_one_by_one(retry=False)

    def _commit(self, rows: list[dict[str, Any]], alert_ops: list[AlertOp], retention: bool) -> None:
        changes: list[AlertChange] = []
        with self.sessions.begin() as session:
            if rows:
                session.execute(insert(HealthSample), rows)
            for speaker, kind, message, raise_it in alert_ops:
                self._apply_alert(session, speaker, kind, message, raise_it, changes)
            if retention:
                cutoff = datetime.now(UTC) - timedelta(days=self.config.health_retention_days)
                result = session.execute(delete(HealthSample).where(HealthSample.ts < cutoff))
                if result.rowcount:
                    _LOGGER.info("deleted %s health samples older than %s", result.rowcount, cutoff)
        if retention:
            self._last_retention = time.monotonic()
        self.stats["commits"] += 1
        if changes:
            self._tell_alert_listeners(changes)

    def _tell_alert_listeners(self, changes: list[AlertChange]) -> None:
        """Committed alert changes, with the cluster's name and zone, to every alert listener."""
        if not self._alert_listeners:
            return
        try:
            registry = self._registry_rows()
        except Exception:
            _LOGGER.exception("fleet: registry unreadable; alerts told without names")
            registry = self._registry
        for change in changes:
            name, zone, _ = registry.get(change.speaker, (None, None, True))
            named = replace(change, speaker_name=name, zone=zone, zone_name=self._zone_names.get(zone or ""))
            for listener in list(self._alert_listeners):
                try:
                    listener(named)
                except Exception:
                    _LOGGER.exception("alert listener failed")

    def _written(self, count: int) -> None:
        """The first ``count`` pending samples are in the database."""
        self.stats["health_written"] += count
        del self._pending_health[:count]
        self._pending_since = time.monotonic() if self._pending_health else None

    def _write_one_by_one(self, retry: bool) -> None:
        """One commit per pending sample. A sample that fails (twice when ``retry``) is dropped; when
        nothing could be written at all the database is taken to be down: the rest waits."""
        written = 0
        while self._pending_health:
            row = self._pending_health[0]
            tries = 2 if retry else 1
            for attempt in range(tries):
                try:
                    self._commit([row], [], False)
                except Exception:
                    self.stats["commit_failures"] += 1
                    if attempt == tries - 1:
                        self._pending_health.pop(0)
                        self.stats["health_dropped"] += 1
                        _LOGGER.exception(
                            "fleet: health sample of %s at %s could not be written; dropped",
                            row.get("speaker_id"),
                            row.get("ts"),
                        )
                    continue
                self._written(1)
                written += 1
                break
            else:
                if written == 0:
                    break  # the database refuses everything: keep the rest for the next pass
        if not self._pending_health:
            self._pending_since = None

    def _bound_pending(self) -> None:
        """Never hold more than ``_max_pending`` unwritten samples (the database may be down for
        long): the oldest go first, counted in ``health_dropped``."""
        excess = len(self._pending_health) - self._max_pending
        if excess > 0:
            del self._pending_health[:excess]
            self.stats["health_dropped"] += excess
            _LOGGER.error("fleet: %s unwritten health samples dropped (database unavailable?)", excess)

    def _apply_alert(
        self,
        session: Session,
        speaker: str,
        kind: str,
        message: str,
        raise_it: bool,
        changes: list[AlertChange],
    ) -> None:
        now = datetime.now(UTC)
        if raise_it:
            alert = Alert(speaker_id=speaker, kind=kind, message=message, raised_at=now)
            session.add(alert)
            session.flush()
            changes.append(AlertChange("raised", alert.id, speaker, kind, message, now))
            with self._lock:
                live = self._live.get(speaker)
                if live is not None and kind in live.alerts and live.alerts[kind][1] == message:
                    live.alerts[kind] = (alert.id, message)
            session.add(LogEntry(ts=now, kind="alert", message=f"{speaker}: {message}", speaker_id=speaker))
            _LOGGER.warning("alert %s on %s: %s", kind, speaker, message)
        else:
            for alert in session.scalars(
                select(Alert).where(
                    Alert.speaker_id == speaker, Alert.kind == kind, Alert.cleared_at.is_(None)
                )
            ):
                alert.cleared_at = now
                changes.append(
                    AlertChange("resolved", alert.id, speaker, kind, alert.message, alert.raised_at, now)
                )
            session.add(
                LogEntry(
                    ts=now,
                    kind="alert_cleared",
                    message=f"{speaker}: hết cảnh báo: {message}",
                    speaker_id=speaker,
                )
            )

    def _load_alerts(self) -> None:
        """Active alerts of a previous run stay active until the condition is seen to be gone."""
        with self.sessions() as session:
            rows = session.scalars(select(Alert).where(Alert.cleared_at.is_(None))).all()
        with self._lock:
            for alert in rows:
                if alert.speaker_id is None:
                    continue
                live = self._live.setdefault(alert.speaker_id, LiveState())
                live.alerts[alert.kind] = (alert.id, alert.message)

    # ------------------------------------------------------------------ helpers

    def _registry_rows(self, force: bool = False) -> dict[str, tuple[str, str | None, bool]]:
        if force or time.monotonic() - self._registry_at > _REGISTRY_TTL_S:
            with self.sessions() as session:
                rows = session.execute(
                    select(Speaker.id, Speaker.name, Speaker.zone_id, Speaker.enabled)
                ).all()
                zones = session.execute(select(Zone.id, Zone.name)).all()
            self._registry = {r.id: (r.name, r.zone_id, r.enabled) for r in rows}
            self._zone_names = {z.id: z.name for z in zones}
            self._registry_at = time.monotonic()
        return self._registry

    def _speaker_dict(self, speaker: str, row: tuple[str, str | None, bool]) -> dict[str, Any]:
        name, zone, enabled = row
        live = self._live.get(speaker) or LiveState()
        health = dict(live.health) if live.health is not None else None
        amplifier_on = health.get("amplifier_on") if health else None
        receipt_at = self._play_receipt_at.get(speaker)
        if health is not None and (receipt_at is None or (live.health_at or 0.0) > receipt_at):
            playing_id = health.get("playing")  # the health report is the freshest word
        else:
            # A receipt came after the last health report: it says what plays now. The node switches
            # its amplifier on before it plays, so a playing cluster's amplifier is on.
            playing_id = live.playing
            if live.playing and live.online():
                amplifier_on = True
        playing = None
        if playing_id and live.online():
            title = None
            if self.titles is not None:
                try:
                    title = self.titles(playing_id)
                except Exception:
                    _LOGGER.exception("title lookup failed")
            playing = {"broadcast_id": _int_or_str(playing_id), "title": title}
        return {
            "id": speaker,
            "name": name,
            "zone": zone,
            "enabled": enabled,
            "online": live.online(),
            "stale": live.stale,
            "last_seen": _iso(live.last_seen),
            "health": health,
            "health_at": _iso(live.health_at),
            "playing": playing,
            "volume": health.get("volume") if health else None,
            "amplifier_on": amplifier_on,
            "alerts": [{"kind": k, "message": m} for k, (_, m) in sorted(live.alerts.items())],
            "malformed": self.ingest.malformed_by_speaker.get(speaker, 0),
        }


def _int_or_str(value: str) -> int | str:
    """The broadcast a node reports: ``"12"`` and re-airings ``"12-r1"`` (see broadcasts) -> 12."""
    try:
        return int(value.partition("-r")[0])
    except (TypeError, ValueError):
        return value

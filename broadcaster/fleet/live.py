"""The fleet worker: live state of every cluster from what the nodes publish, health history, alerts.

Online/offline comes from the retained ``status`` message and the last will (``online: false``),
plus staleness: a node that sent nothing for ``stale_factor`` health intervals is shown offline with a
``stale`` alert, because a half-open TCP link can keep a dead node "online" at the broker for minutes.

One worker thread (:class:`Fleet`) owns the state. It drains the ingest queue, records each message
on the live board (``board.py``, which also serves the snapshot and speaker cards to readers), raises
and clears alerts, and writes health samples in batches (one commit per ``health_batch_size`` samples
or ``health_batch_interval_s``, whichever comes first); samples older than the retention are deleted
hourly. Alerts (kinds and rules in ``alerting.py``) live in the ``alerts`` table (``alertbook.py``)
and in the snapshot; raising and clearing one is also written to the decision log, and once
committed, handed to the alert listeners (the notifier) as an :class:`AlertChange`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.fleet.alertbook import AlertBook
from broadcaster.fleet.alerting import AlertChange, AlertOp, LiveState, evaluate, note_health, note_receipt
from broadcaster.fleet.board import LiveBoard
from broadcaster.fleet.config import FleetConfig
from broadcaster.fleet.ingest import Ingest
from broadcaster.models import HealthSample
from broadcaster.queues import drain
from broadcaster.transport import Transport
from speakers.protocol import Event, Health, Status

_LOGGER = logging.getLogger(__name__)

_RETENTION_EVERY_S = 3600.0
_PLAYING_STATES = {"playing"}
_IDLE_STATES = {"done", "failed", "preempted", "stopped", "expired"}
_MIN_PENDING = 20_000


def _ts(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


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
        self.board = LiveBoard(sessions, self.ingest, titles)
        self.alert_book = AlertBook(sessions, self.board)
        self._queue: queue.Queue[tuple[str, str, Any, float] | None] = queue.Queue()
        self._online_listeners: list[Callable[[str, bool], None]] = []
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._started_at = clock()
        self._pending_health: list[dict[str, Any]] = []
        self._pending_since: float | None = None
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
        self.alert_book.load()
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

    # ------------------------------------------------------------------ read API (the live board)

    def snapshot(self) -> list[dict[str, Any]]:
        """One dict per registered cluster: id, name, zone, online, last_seen, health, playing,
        volume, amplifier_on, alerts, malformed."""
        return self.board.snapshot()

    def speaker(self, speaker_id: str) -> dict[str, Any] | None:
        return self.board.speaker(speaker_id)

    def alerts(self, active_only: bool = True) -> list[dict[str, Any]]:
        return self.alert_book.alerts(active_only)

    def is_online(self, speaker_id: str) -> bool:
        return self.board.is_online(speaker_id)

    def online_ids(self) -> set[str]:
        return self.board.online_ids()

    def round_trips_s(self) -> dict[str, float]:
        """Latest clock round trip (health ``clock_rtt_ms``) of each online cluster, in seconds: the
        broadcast lifecycle derives the emergency lead from it (arbitration.Policy.emergency_lead)."""
        return self.board.round_trips_s()

    def metrics(self) -> dict[str, Any]:
        known, online = self.board.counts()
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
        self.alert_book.add_listener(callback)

    def notify_alert(self, change: AlertChange) -> None:
        """An alert written by another part of the controller (a relay source, ``sources.py``):
        told to the alert listeners like the fleet's own."""
        self.alert_book.notify(change)

    def add_event_listener(self, callback: Callable[[str, Event], None]) -> None:
        """``callback(speaker_id, event)`` on the network thread for every receipt; must only enqueue."""
        self.ingest.event_listeners.append(callback)

    def registry_changed(self, *_: Any) -> None:
        """Registry hook: re-read names and zones at the next look."""
        self.board.registry_changed()

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
            with self.board.lock:
                live = self.board.live.setdefault(speaker, LiveState())
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
                        self.board.play_receipt_at[speaker] = received_at
                    elif message.state in _IDLE_STATES and live.playing == message.broadcast_id:
                        live.playing = None
                        self.board.play_receipt_at[speaker] = received_at
                is_online = live.online()
                alert_ops.extend(evaluate(speaker, live, self.config))
            if is_online != was_online:
                online_changes.append((speaker, is_online))
        # Staleness and never-seen clusters.
        stale_ops, stale_changes = self.board.check_staleness(now, self._started_at, self.config)
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
            self.alert_book.apply(session, alert_ops, changes)
            if retention:
                cutoff = datetime.now(UTC) - timedelta(days=self.config.health_retention_days)
                result = session.execute(delete(HealthSample).where(HealthSample.ts < cutoff))
                if result.rowcount:
                    _LOGGER.info("deleted %s health samples older than %s", result.rowcount, cutoff)
        if retention:
            self._last_retention = time.monotonic()
        self.stats["commits"] += 1
        if changes:
            self.alert_book.tell(changes)

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

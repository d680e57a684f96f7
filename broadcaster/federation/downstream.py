"""The upper level's side of the link: answer the units' sync requests and audio fetches, keep
each unit's outbox in sequence, and wake a unit's held poll when something is queued for it.

``handle_sync`` (a web request thread): authenticate; apply the unit's reports above the last one
applied, in order, in one transaction with the acknowledgement of its cursor (each report is
applied once, whatever retries happen); then, when nothing is queued for it, hold the request up to
the ``wait`` it asked (long poll) and answer with the items above its cursor, signed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.federation import signing
from broadcaster.federation.aggregate import apply_report
from broadcaster.federation.config import FederationConfig
from broadcaster.federation.models import FedBulletin, FedOutbox, FedUnit
from broadcaster.federation.units import AuthFailure, authenticate
from broadcaster.federation.wire import MAX_ITEMS, Item, SyncRequest, SyncResponse, WireError

_LOGGER = logging.getLogger(__name__)

SYNC_PATH = "/federation/v1/sync"
AUDIO_PATH = "/federation/v1/audio/"
# What a forwarder does with a report applied here (a district passes it on to its province).
Forward = Callable[[Session, str, dict[str, Any]], None]


@dataclass
class Answer:
    """An HTTP answer for the web layer: status, body bytes, headers."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def error_body(code: str, message: str) -> bytes:
    return signing.canonical_json({"version": signing.VERSION, "error": {"code": code, "message": message}})


class Hub:
    """See the module docstring. ``lock`` is the controller's federation write lock (report
    numbers drawn by a forwarder); ``forward`` is set on a level that has an upstream."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        config: FederationConfig,
        lock: threading.RLock,
        *,
        store: Any = None,
        forward: Forward | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sessions = sessions
        self.config = config
        self.lock = lock
        self.store = store
        self.forward = forward
        self.clock = clock
        self._cond = threading.Condition()
        self._versions: dict[str, int] = {}
        self._unit_locks: dict[str, threading.Lock] = {}
        self._closing = False
        self._held = 0  # polls held open right now
        self.stats = {
            "syncs": 0,
            "refused": 0,
            "reports_applied": 0,
            "reports_duplicate": 0,
            "reports_malformed": 0,
            "polls_not_held": 0,
        }

    # ------------------------------------------------------------------ waking held polls

    def wake(self, units: list[str] | None = None) -> None:
        with self._cond:
            for unit in units if units is not None else list(self._versions):
                self._versions[unit] = self._versions.get(unit, 0) + 1
            self._cond.notify_all()

    def close(self) -> None:
        """Release every held poll at once (shutdown)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    def _version(self, unit: str) -> int:
        with self._cond:
            return self._versions.setdefault(unit, 0)

    def _wait(self, unit: str, since: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._closing and self._versions.get(unit, 0) == since:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)

    def _hold(self) -> bool:
        with self._cond:
            if self._held >= self.config.max_held_polls:
                self.stats["polls_not_held"] += 1
                return False
            self._held += 1
            return True

    def _release(self) -> None:
        with self._cond:
            self._held -= 1

    def _unit_lock(self, unit: str) -> threading.Lock:
        with self._cond:
            return self._unit_locks.setdefault(unit, threading.Lock())

    # ------------------------------------------------------------------ requests

    def _refuse(self, failure: AuthFailure) -> Answer:
        self.stats["refused"] += 1
        body = error_body(failure.code, failure.message)
        headers = {"Content-Type": "application/json"}
        if failure.key is not None:
            headers.update(
                signing.sign_response(failure.key, failure.status, failure.nonce, body, self.clock())
            )
        return Answer(failure.status, body, headers)

    def handle_sync(self, headers: Mapping[str, str], body: bytes, path: str = SYNC_PATH) -> Answer:
        try:
            return self._sync(headers, body, path)
        except SQLAlchemyError as exc:  # the database is busy or down: the unit retries, nothing applied
            _LOGGER.warning("federation: sync from %s not applied: %s", headers.get(signing.HEADER_UNIT), exc)
            self.stats["unavailable"] = self.stats.get("unavailable", 0) + 1
            return Answer(
                503, error_body("unavailable", "database busy; retry"), {"Content-Type": "application/json"}
            )

    def _sync(self, headers: Mapping[str, str], body: bytes, path: str) -> Answer:
        if len(body) > self.config.max_message_bytes:
            return self._refuse(
                AuthFailure(413, "too_large", f"message over {self.config.max_message_bytes} bytes")
            )
        try:
            who = authenticate(
                self.sessions,
                "POST",
                path,
                headers,
                body,
                now=self.clock(),
                window_s=self.config.replay_window_s,
                lock=self.lock,  # federation writes go one at a time (SQLite: no writer starves)
            )
        except AuthFailure as failure:
            return self._refuse(failure)
        try:
            request = SyncRequest.from_dict(_json(body))
            if request.unit != who.unit:
                raise WireError("'unit' differs from the signed unit header")
        except WireError as exc:
            _LOGGER.warning("federation: malformed sync from %s: %s", who.unit, exc.message)
            return self._refuse(AuthFailure(exc.status, exc.code, exc.message, who.key, who.nonce))
        self.stats["syncs"] += 1
        since = self._version(who.unit)
        acked, cursor = self._apply(who.unit, request)
        items, more = self._items(who.unit, cursor)
        poll_after = 0.0
        if not items and request.wait > 0:
            if self._hold():
                try:
                    self._wait(who.unit, since, min(request.wait, self.config.poll_wait_s))
                finally:
                    self._release()
                items, more = self._items(who.unit, cursor)
            else:  # every held poll's thread is taken: the officers' pages must find a free one
                poll_after = self.config.poll_after_s
        response = SyncResponse(
            acked, tuple(items), more, datetime.fromtimestamp(self.clock(), UTC).isoformat(), poll_after
        )
        out = signing.canonical_json(response.to_dict())
        answer_headers = {"Content-Type": "application/json"}
        answer_headers.update(signing.sign_response(who.key, 200, who.nonce, out, self.clock()))
        return Answer(200, out, answer_headers)

    def _apply(self, unit: str, request: SyncRequest) -> tuple[int, int]:
        """Apply the reports above the last applied and record the unit's cursor; one transaction."""
        with self._unit_lock(unit), self.lock, self.sessions.begin() as session:
            row = session.get(FedUnit, unit, with_for_update=True)
            assert row is not None  # authenticated a moment ago; units are never deleted
            if row.link_id != request.link:
                if row.link_id is not None:
                    _LOGGER.info("federation: unit %s starts a new link: report numbers restart", unit)
                row.link_id = request.link
                row.last_report_seq = 0
            rows: dict[tuple[Any, ...], Any] = {}
            for report in request.reports:
                if report.seq <= row.last_report_seq:
                    self.stats["reports_duplicate"] += 1
                    continue
                try:
                    forwarded = apply_report(session, unit, report, rows)  # checks everything before writing
                    if forwarded is not None and self.forward is not None:
                        self.forward(session, forwarded[0], forwarded[1])
                    self.stats["reports_applied"] += 1
                except WireError as exc:
                    self.stats["reports_malformed"] += 1
                    _LOGGER.warning(
                        "federation: report %s (%s) of unit %s refused: %s",
                        report.seq,
                        report.kind,
                        unit,
                        exc.message,
                    )
                row.last_report_seq = report.seq
            row.acked_seq = max(row.acked_seq, min(request.ack, row.next_seq - 1))
            row.last_seen = datetime.fromtimestamp(self.clock(), UTC)
            row.last_error = None
            return row.last_report_seq, row.acked_seq

    def _items(self, unit: str, cursor: int) -> tuple[list[Item], bool]:
        with self.sessions() as session:
            rows = list(
                session.scalars(
                    select(FedOutbox)
                    .where(FedOutbox.unit == unit, FedOutbox.seq > cursor)
                    .order_by(FedOutbox.seq)
                    .limit(MAX_ITEMS + 1)
                )
            )
        return [Item(r.seq, r.kind, dict(r.data)) for r in rows[:MAX_ITEMS]], len(rows) > MAX_ITEMS

    def handle_audio(self, headers: Mapping[str, str], sha256: str, path: str) -> Answer:
        try:
            who = authenticate(
                self.sessions,
                "GET",
                path,
                headers,
                b"",
                now=self.clock(),
                window_s=self.config.replay_window_s,
                lock=self.lock,  # federation writes go one at a time (SQLite: no writer starves)
            )
        except AuthFailure as failure:
            return self._refuse(failure)
        with self.sessions() as session:
            rows = session.scalars(select(FedBulletin).where(FedBulletin.audio_sha256 == sha256)).all()
            key = next((r.audio_key for r in rows if who.unit in (r.units or [])), None)
        if key is None or self.store is None or not self.store.has(key):
            failure = AuthFailure(404, "not_found", "no such audio for this unit", who.key, who.nonce)
            return self._refuse(failure)
        data = self.store.read_bytes(key)
        headers_out = {"Content-Type": "audio/mpeg"}
        headers_out.update(signing.sign_response(who.key, 200, who.nonce, data, self.clock()))
        return Answer(200, data, headers_out)

    # ------------------------------------------------------------------ the outbox

    def enqueue(self, session: Session, unit: str, kind: str, bulletin_id: int, data: dict[str, Any]) -> int:
        """Queue an item for ``unit`` inside the caller's transaction; call ``wake`` after commit."""
        row = session.get(FedUnit, unit, with_for_update=True)
        if row is None or row.revoked:
            return 0
        seq = row.next_seq
        row.next_seq = seq + 1
        session.add(FedOutbox(unit=unit, seq=seq, kind=kind, bulletin_id=bulletin_id, data=data))
        return seq


def _json(body: bytes) -> Any:
    import json

    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise WireError("the body is not UTF-8 JSON") from exc


__all__ = ["AUDIO_PATH", "SYNC_PATH", "Answer", "Forward", "Hub", "error_body"]

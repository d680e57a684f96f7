"""One thread that owns every airing in progress: inbox, batched transaction, retries, recovery.

Everything that changes an airing arrives as an item in the inbox: node receipts (from the MQTT
network thread), render results (from the render pools), "air" (a scheduled item is due), and
calls (approve, cancel, stop all...) whose callers wait for the answer. The thread drains the inbox
in batches and applies each batch plus one tick of arbitration in **one** transaction, so no two
threads ever arbitrate at once and a receipt storm from 2,000 clusters costs a few commits.

When a batch's transaction fails (SQLite locked, a flush error), nothing of it is kept: every
waiting caller gets the exception at once, the in-memory airings are rebuilt from the database
(they may have moved ahead of what was rolled back), and the batch's other items are applied once
more in a fresh transaction; if that fails too they are dropped, counted and logged.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from broadcaster.broadcasts import recovery
from broadcaster.broadcasts.chunks import ChunkServer
from broadcaster.broadcasts.errors import BroadcastError
from broadcaster.broadcasts.ledger import Ledger
from broadcaster.broadcasts.lifecycle import Lifecycle
from broadcaster.broadcasts.receipts import Receipts
from broadcaster.broadcasts.rendering import Rendered
from broadcaster.domain import Tier
from broadcaster.queues import drain
from speakers.protocol import Event

_LOGGER = logging.getLogger(__name__)

# How long a public call waits for the dispatcher before giving up (it never does slow work).
CALL_TIMEOUT_S = 30.0
# The dispatcher wakes at least this often to look at timers (quiet hours, validity, timeouts).
MAX_SLEEP_S = 0.5
# At most this many inbox items go into one transaction.
MAX_BATCH = 2000


@dataclass(frozen=True)
class _Call:
    fn: Callable[[Session], Any]
    future: Future[Any]


@dataclass(frozen=True)
class _Receipt:
    speaker: str
    event: Event


@dataclass(frozen=True)
class _Air:
    broadcast_id: int


@dataclass(frozen=True)
class _Online:
    speaker: str


@dataclass(frozen=True)
class _Render:
    broadcast_id: int
    tier: Tier
    air: bool


@dataclass(frozen=True)
class _Defer:
    broadcast_id: int
    at: float


_Item = _Call | _Receipt | _Air | _Online | _Render | _Defer | Rendered


@dataclass
class DispatcherStats:
    batches_failed: int = 0
    ticks_failed: int = 0
    items_retried: int = 0
    items_dropped: int = 0
    reloads: int = 0


class Dispatcher:
    """See the module docstring."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        lifecycle: Lifecycle,
        receipts: Receipts,
        chunks: ChunkServer,
        ledger: Ledger,
        resolve_slots: Callable[[list[tuple[str, Event]]], None] | None = None,
    ) -> None:
        """``resolve_slots(receipts)``: called on this thread after a commit with the offline
        receipts whose airing has no record yet (it creates the record and posts them again)."""
        self.sessions = sessions
        self.lifecycle = lifecycle
        self.receipts = receipts
        self.chunks = chunks
        self.ledger = ledger
        self.resolve_slots = resolve_slots
        self.stats = DispatcherStats()
        self._inbox: queue.Queue[_Item | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()  # one batch at a time (thread or inline)
        self._closed = False
        self._needs_reload = False

    # ------------------------------------------------------------------ posting

    def post_receipt(self, speaker: str, event: Event) -> None:  # network thread: enqueue only
        self._inbox.put(_Receipt(speaker, event))

    def post_online(self, speaker: str) -> None:
        self._inbox.put(_Online(speaker))

    def post(self, fn: Callable[[Session], Any]) -> None:
        """Run ``fn(session)`` in the next batch without waiting for it (callbacks from other
        threads, e.g. the stream hub's, which must never block on the dispatcher)."""
        self._put(_Call(fn, Future()))

    def post_air(self, broadcast_id: int) -> None:
        self._put(_Air(broadcast_id))

    def post_rendered(self, result: Rendered) -> None:
        self._put(result)

    def post_render(self, broadcast_id: int, tier: Tier, *, air: bool) -> None:
        """Render a new broadcast (ahead of time, or to air at once when ``air``)."""
        self._put(_Render(broadcast_id, tier, air))

    def post_defer(self, broadcast_id: int, at: float) -> None:
        """Air a scheduled broadcast at ``at`` (epoch seconds)."""
        self._put(_Defer(broadcast_id, at))

    def call(self, fn: Callable[[Session], Any]) -> Any:
        """Run ``fn(session)`` in the dispatcher's batch transaction and return its result (run the
        batch inline when the thread is not started yet). Raises BroadcastError when stopped."""
        if self._closed:
            raise BroadcastError("Bộ điều khiển đang dừng; hãy thử lại sau.", code="unavailable")
        future: Future[Any] = Future()
        self._put(_Call(fn, future))
        return future.result(timeout=CALL_TIMEOUT_S)

    def _put(self, item: _Item) -> None:
        if self._closed:
            _LOGGER.info("dispatcher stopped: %s dropped", type(item).__name__)
            return
        self._inbox.put(item)
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._drain_inline()

    # ------------------------------------------------------------------ thread

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="broadcasts-dispatcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the batch in progress and end the thread. Afterwards nothing is processed, not
        even inline: a render that finishes later cannot put anything on air."""
        self._closed = True
        thread = self._thread
        if thread is not None:
            self._inbox.put(None)
            thread.join(timeout=timeout)
            self._thread = None

    def _run(self) -> None:
        try:
            with self._lock:
                self._load(reloaded=False)
        except Exception:
            _LOGGER.exception("dispatcher: recovery of airings in progress failed")
        while True:
            batch, stop = drain(self._inbox, self.chunks.wait_s(MAX_SLEEP_S), MAX_BATCH)
            with self._lock:
                try:
                    self._handle_batch(batch)
                except Exception:
                    _LOGGER.exception("dispatcher: batch failed")
            if stop:
                return

    def _drain_inline(self) -> None:
        with self._lock:
            batch: list[_Item] = []
            try:
                while True:
                    item = self._inbox.get_nowait()
                    if item is not None:
                        batch.append(item)
            except queue.Empty:
                pass
            if batch:
                self._handle_batch(batch)

    # ------------------------------------------------------------------ batches

    def _handle_batch(self, batch: list[_Item]) -> None:
        if self._needs_reload:
            self._reload()
        renderer = self.lifecycle.renderer
        air_before = set(renderer.air_when_rendered)
        try:
            answers = self._apply(batch)
        except Exception as exc:
            self.stats.batches_failed += 1
            _LOGGER.exception("dispatcher: batch of %s items failed and was rolled back", len(batch))
            for item in batch:
                if isinstance(item, _Call) and not item.future.done():
                    item.future.set_exception(exc)
            self._retry(batch, air_before)
            return
        self._finish(answers)

    def _apply(self, batch: list[_Item]) -> list[tuple[Future[Any], Any, BaseException | None]]:
        """Apply ``batch`` and tick in one transaction; returns the calls' answers (given once
        committed). A failing tick is logged and its partial work kept (what was published stays
        recorded), and the in-memory state is re-read after the commit."""
        answers: list[tuple[Future[Any], Any, BaseException | None]] = []
        lifecycle = self.lifecycle
        try:
            with self.sessions.begin() as session:
                for item in batch:
                    if isinstance(item, _Call):
                        try:
                            answers.append((item.future, item.fn(session), None))
                        except Exception as exc:  # BroadcastError is raised before any change
                            answers.append((item.future, None, exc))
                        continue
                    try:
                        if isinstance(item, _Receipt):
                            self.receipts.handle(session, item.speaker, item.event)
                        elif isinstance(item, _Air):
                            lifecycle.air(session, item.broadcast_id)
                        elif isinstance(item, Rendered):
                            lifecycle.rendered(session, item)
                        elif isinstance(item, _Render):
                            lifecycle.renderer.request(item.broadcast_id, item.tier, air=item.air)
                        elif isinstance(item, _Defer):
                            lifecycle.defer(item.broadcast_id, item.at)
                        elif isinstance(item, _Online):
                            lifecycle.decisions.rejoin(session, item.speaker)  # streams it should play
                        # The tick below serves the reconnected cluster's waiting items.
                    except Exception:
                        _LOGGER.exception("dispatcher: %s failed", type(item).__name__)
                try:
                    lifecycle.tick(session)
                except Exception:
                    # E.g. a TransportError from a publish half-way through a dispatch: the receipts
                    # and decisions of this batch are still committed; memory is re-read below.
                    self.stats.ticks_failed += 1
                    self._needs_reload = True
                    _LOGGER.exception("dispatcher: tick failed; state is re-read from the database")
        finally:
            self.ledger.forget_rows()
        if self._needs_reload:
            self._reload()
        return answers

    def _finish(self, answers: list[tuple[Future[Any], Any, BaseException | None]]) -> None:
        for future, result, error in answers:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
        self.chunks.publish_due()
        unmatched = self.receipts.take_unmatched()
        if unmatched and self.resolve_slots is not None:
            try:
                self.resolve_slots(unmatched)
            except Exception:
                _LOGGER.exception("dispatcher: %s offline receipts could not be matched", len(unmatched))

    def _retry(self, batch: list[_Item], air_before: set[int]) -> None:
        """After a rolled-back batch: rebuild memory from the database, then apply the batch's
        items other than calls (their callers already have the error) once more."""
        renderer = self.lifecycle.renderer
        replay = [item for item in batch if not isinstance(item, _Call)]
        # A render whose result was rolled back is outstanding again; intentions to air when
        # rendered that the rolled-back batch consumed (or a rolled-back cancel dropped) come back.
        rendered = {item.broadcast_id for item in replay if isinstance(item, Rendered)}
        renderer.rendering |= rendered
        renderer.air_when_rendered |= air_before
        if not self._reload() or not replay:
            if replay:
                self._drop(replay, rendered)
            return
        try:
            answers = self._apply(replay)
        except Exception:
            _LOGGER.exception("dispatcher: retry of %s items failed too", len(replay))
            self._drop(replay, rendered)
            self._reload()
            return
        self.stats.items_retried += len(replay)
        self._finish(answers)

    def _drop(self, items: list[_Item], rendered: set[int]) -> None:
        self.stats.items_dropped += len(items)
        # A dropped render result: render again (a cache hit) when the state is next re-read.
        self.lifecycle.renderer.rendering -= rendered
        self._needs_reload = True
        kinds = ", ".join(sorted({type(item).__name__ for item in items}))
        _LOGGER.error("dispatcher: dropped %s items after a failed retry: %s", len(items), kinds)

    def _reload(self) -> bool:
        """Rebuild the in-memory airings from the database. False (and retried before the next
        batch) when the database fails again."""
        lifecycle = self.lifecycle
        lifecycle.airings.clear()
        lifecycle.deferred.clear()
        lifecycle.renderer.reset()
        lifecycle.targets.invalidate()
        try:
            self._load(reloaded=True)
        except Exception:
            self._needs_reload = True
            _LOGGER.exception("dispatcher: could not re-read the airings in progress")
            return False
        self._needs_reload = False
        self.stats.reloads += 1
        return True

    def _load(self, *, reloaded: bool) -> None:
        try:
            with self.sessions.begin() as session:
                recovery.load(self.lifecycle, session, reloaded=reloaded)
        finally:
            self.ledger.forget_rows()


__all__ = ["CALL_TIMEOUT_S", "Dispatcher", "DispatcherStats"]

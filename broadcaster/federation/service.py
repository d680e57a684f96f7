"""``Federation``: the parts of the link between levels, wired, with one worker thread.

Built by ``build_services`` (``services.federation``), started after the broadcast dispatcher and
stopped before it. The ``federation`` thread, every 0.2 s: finds new broadcasts that name
downstream units and sends them down (``outbound``); every second: expires and decides what waits
in the inbox (``intake.tick``), gathers the reports going up (``collect``) and starts or stops the
Loa xã link when ``broadcaster upstream set/clear`` changed it (no restart needed). CAP feeds run
on threads of their own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.federation.base import Upstream
from broadcaster.federation.collect import Collector
from broadcaster.federation.config import FederationConfig
from broadcaster.federation.desk import InboxDesk
from broadcaster.federation.downstream import Hub
from broadcaster.federation.intake import UPSTREAM, Intake
from broadcaster.federation.link import LoaLink
from broadcaster.federation.models import FedBulletin, FedInbox, FedLink
from broadcaster.federation.outbound import Outbound
from broadcaster.federation.reportqueue import LINK_ROW, ReportQueue
from broadcaster.federation.units import purge_nonces

_LOGGER = logging.getLogger(__name__)

# The scan for new broadcasts to send down runs this often: an emergency waits at most this long.
SCAN_INTERVAL_S = 0.2
# Timers (inbox expiry, clash defaults, link supervision) run this often.
TICK_INTERVAL_S = 1.0
# Old nonces are purged this often.
PURGE_INTERVAL_S = 300.0


class Federation:
    def __init__(
        self,
        config: FederationConfig,
        *,
        sessions: sessionmaker[Session],
        broadcasts: Any,
        speech: Any,
        fleet: Any = None,
        timezone: str = "Asia/Ho_Chi_Minh",
        name: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.sessions = sessions
        self.broadcasts = broadcasts
        self.speech = speech
        self.clock = clock
        self.lock = threading.RLock()
        store = speech.store
        self.queue = ReportQueue(sessions, config.report_queue_max, self.lock)
        self.hub = Hub(sessions, config, self.lock, store=store, forward=self._forward_up, clock=clock)
        self.outbound = Outbound(sessions, self.hub, config, self.lock, store=store, sender=name, clock=clock)
        self.intake = Intake(
            sessions,
            broadcasts,
            store,
            self.queue,
            config,
            self.lock,
            clock=clock,
            forward=self.outbound.forward,
            forward_cancel=self.outbound.cancel,
        )
        self.desk = InboxDesk(sessions, self.intake, self.intake.rows)
        self.collector = Collector(
            sessions, self.queue, fleet, config, self.lock, timezone=timezone, clock=clock
        )
        self.link: LoaLink | None = None
        self.adapters: list[Upstream] = []
        self._link_key: tuple[str, str, str] | None = None
        self._stop = threading.Event()
        self._poke = threading.Event()
        self._thread: threading.Thread | None = None
        self.notices: list[dict[str, Any]] = []
        self.intake.on_emergency.append(self._emergency_notice)
        self.stats = {"ticks_failed": 0}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self.intake.recover()
        for adapter in self.adapters:
            adapter.start()
        self._supervise_link()
        self._thread = threading.Thread(target=self._run, name="federation", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._poke.set()
        self.hub.close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        for adapter in self.adapters:
            adapter.stop()
        if self.link is not None:
            self.link.stop()
            self.link = None
            self._link_key = None

    def poke(self) -> None:
        """Look for new broadcasts to send down now (after a submit that names units)."""
        self._poke.set()

    def withdraw(self, broadcast_id: int) -> bool:
        """Withdraw the bulletins a broadcast sent down (each unit gets a cancellation)."""
        with self.sessions() as session:
            ids = list(
                session.scalars(
                    select(FedBulletin.id).where(
                        FedBulletin.broadcast_id == broadcast_id,
                        FedBulletin.inbox_id.is_(None),  # not a province's bulletin we passed on
                        FedBulletin.state == "sent",
                    )
                )
            )
        return any([self.outbound.cancel(i) for i in ids])

    def add_adapter(self, adapter: Upstream) -> None:
        """Another upstream (a CAP feed, a province's own system): started and stopped with us."""
        self.adapters.append(adapter)

    # ------------------------------------------------------------------ the worker

    def _run(self) -> None:
        last_tick = last_purge = last_collect = 0.0
        while not self._stop.is_set():
            self._poke.wait(SCAN_INTERVAL_S)
            self._poke.clear()
            if self._stop.is_set():
                return
            now = time.monotonic()
            self._step("scan", self.outbound.scan)
            if now - last_tick >= TICK_INTERVAL_S:
                last_tick = now
                self._step("inbox", self.intake.tick)
                self._step("preview", lambda: self.desk.prepare_preview(self.speech))
                self._step("link", self._supervise_link)
            if self.link is not None and now - last_collect >= self.config.collect_interval_s:
                last_collect = now
                self._step("collect", self.collector.tick)
                if self.queue.size():
                    self.link.reports_waiting()
            if now - last_purge >= PURGE_INTERVAL_S:
                last_purge = now
                self._step(
                    "purge", lambda: purge_nonces(self.sessions, self.clock(), self.config.replay_window_s)
                )

    def _step(self, name: str, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception:
            self.stats["ticks_failed"] += 1
            _LOGGER.exception("federation: %s failed (retried at the next tick)", name)

    def _supervise_link(self) -> None:
        with self.sessions() as session:
            row = session.get(FedLink, LINK_ROW)
            key = (row.url, row.token, row.link_id) if row is not None and row.state != "revoked" else None
        if key == self._link_key and (self.link is None or self.link.running or key is None):
            return
        if self.link is not None:
            self.link.stop()
            self.link = None
        self._link_key = key
        if key is not None:
            self.link = LoaLink(
                self.sessions, self.config, self.queue, self.intake, self.lock, clock=self.clock
            )
            self.link.start()
            _LOGGER.info("federation: link to %s started", key[0])

    # ------------------------------------------------------------------ forwarding up (a district)

    def _forward_up(self, session: Session, kind: str, data: dict[str, Any]) -> None:
        """A report of one of our units, applied here: pass it up when we have an upstream, with the
        unit's path, and for a bulletin that came from above, under the upstream's id."""
        if session.get(FedLink, LINK_ROW) is None:
            return
        if kind in ("bulletin", "delivery"):
            fb = session.get(FedBulletin, int(data["bulletin"]))
            if fb is None or fb.inbox_id is None:
                return
            inbox = session.get(FedInbox, fb.inbox_id)
            if inbox is None or inbox.origin != UPSTREAM:
                return
            self.queue.enqueue(session, kind, {**data, "bulletin": inbox.ref})
        else:
            self.queue.enqueue(session, kind, data, coalesce=f"{kind}:{data.get('unit', '')}")

    # ------------------------------------------------------------------ notices for the officer

    def _emergency_notice(self, info: dict[str, Any]) -> None:
        self.notices.append({**info, "at": self.clock()})
        del self.notices[:-20]

    def open_items(self) -> dict[str, int]:
        """Counts for the officer's banner and the navigation: inbox, held (a clash question), and
        emergencies from above not yet seen."""
        with self.sessions() as session:
            rows = session.execute(
                select(FedInbox.state, FedInbox.tier, FedInbox.seen, func.count()).group_by(
                    FedInbox.state, FedInbox.tier, FedInbox.seen
                )
            ).all()
        return {
            "inbox": sum(n for s, _, _, n in rows if s == "inbox"),
            "held": sum(n for s, _, _, n in rows if s == "held"),
            "emergency": sum(
                n for s, t, seen, n in rows if t == "emergency" and not seen and s == "submitted"
            ),
        }

    def has_upstream(self) -> bool:
        with self.sessions() as session:
            return session.get(FedLink, LINK_ROW) is not None or bool(self.adapters)

    def has_units(self) -> bool:
        return bool(self.outbound.units())

    def status(self) -> list[dict[str, Any]]:
        out = [self.link.status()] if self.link is not None else []
        return out + [a.status() for a in self.adapters]


__all__ = ["Federation"]

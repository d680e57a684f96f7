"""Bulletins going down, on the upper level.

A broadcast whose targets name downstream units (``unit:*``, ``unit:xa-b``, ``unit:huyen-a/xa-b``)
is made by the real lifecycle like any other (the web form and ``POST /api/broadcasts``; its local
clusters, if any, air it here). :class:`Outbound` watches new broadcasts, records a
``fed_bulletins`` row for each that names units, and releases it to the units' outboxes once the
broadcast is approved; a broadcast cancelled or rejected before that is dropped, and a released
bulletin whose broadcast is cancelled sends a cancellation down. A district also forwards what its
province sent (``forward``): emergencies to every unit, the rest as the province routed it.

Routes: the bulletin carries, per unit, the paths below that unit it is for: ``*`` (the unit and
everything below it) or ``xa-b`` (only that commune below a district).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.domain import Tier
from broadcaster.federation.config import FederationConfig
from broadcaster.federation.downstream import Hub
from broadcaster.federation.models import FedBulletin, FedInbox
from broadcaster.federation.units import active_units
from broadcaster.federation.wire import AudioRef, Bulletin
from broadcaster.fleet.targets import UNIT_PREFIX
from broadcaster.models import Broadcast, BroadcastState

_LOGGER = logging.getLogger(__name__)

# New broadcasts are looked for this far below the highest id seen: a transaction that drew a
# lower id may commit after a higher one.
_RESCAN = 50
# How often the list of downstream units is re-read (a unit added from the command line).
_UNITS_TTL_S = 5.0
_DROPPED = (BroadcastState.CANCELLED.value, BroadcastState.FAILED.value, BroadcastState.MISSED.value)


def unit_targets(targets: Iterable[str]) -> list[str]:
    return [t for t in targets if isinstance(t, str) and t.startswith(UNIT_PREFIX)]


def plan_routes(targets: Iterable[str], units: Iterable[str]) -> dict[str, list[str]]:
    """Unit targets -> {direct unit: route}. ``unit:*`` and ``unit:u`` give ``["*"]``;
    ``unit:u/x`` gives ``["x"]`` (only x below u)."""
    known = list(units)
    routes: dict[str, list[str]] = {}
    for target in unit_targets(targets):
        path = target[len(UNIT_PREFIX) :]
        if path == "*":
            for unit in known:
                routes[unit] = ["*"]
            continue
        head, _, rest = path.partition("/")
        if head not in known:
            continue
        current = routes.setdefault(head, [])
        if current != ["*"]:
            if not rest:
                routes[head] = ["*"]
            elif rest not in current:
                current.append(rest)
    return routes


def forward_routes(route: Iterable[str], tier: Tier, units: Iterable[str]) -> dict[str, list[str]]:
    """What a district passes on of a bulletin routed to it: an emergency to every unit; else
    ``*`` to every unit, ``u`` or ``u/...`` to that unit."""
    route = list(route)
    if tier is Tier.EMERGENCY or "*" in route:
        return {unit: ["*"] for unit in units}
    return plan_routes([f"{UNIT_PREFIX}{r}" for r in route], units)


class Outbound:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        hub: Hub,
        config: FederationConfig,
        lock: threading.RLock,
        *,
        store: Any = None,
        sender: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sessions = sessions
        self.hub = hub
        self.config = config
        self.lock = lock
        self.store = store
        self.sender = sender
        self.clock = clock
        self._low: int | None = None
        self._seen: set[int] = set()
        self._units: list[str] = []
        self._units_at = -1e18

    def units(self) -> list[str]:
        now = time.monotonic()
        if now - self._units_at > _UNITS_TTL_S:
            with self.sessions() as session:
                self._units = active_units(session)
            self._units_at = now
        return self._units

    def refresh_units(self) -> None:
        self._units_at = -1e18

    # ------------------------------------------------------------------ the scan

    def scan(self) -> None:
        """Record new broadcasts that name units, release the approved ones, send cancellations."""
        if not self.units():  # a commune: nothing below it, nothing to look at
            return
        with self.sessions() as session:
            top = session.scalar(select(func.max(Broadcast.id))) or 0
            if self._low is None:
                self._low = max(0, top - 4 * _RESCAN)
            rows = session.execute(
                select(Broadcast.id, Broadcast.targets).where(Broadcast.id > max(0, self._low - _RESCAN))
            ).all()
        fresh = [(bid, targets) for bid, targets in rows if bid not in self._seen]
        if fresh:
            with self.lock, self.sessions.begin() as session:
                for bid, targets in fresh:
                    self._seen.add(bid)
                    wanted = unit_targets(targets or [])
                    if not wanted:
                        continue
                    if session.scalar(select(FedBulletin.id).where(FedBulletin.broadcast_id == bid)) is None:
                        session.add(
                            FedBulletin(broadcast_id=bid, tier="normal", targets=wanted, state="waiting")
                        )
            self._low = max(self._low, *(bid for bid, _ in fresh))
            self._seen = {b for b in self._seen if b > self._low - 4 * _RESCAN}
        self._release()
        self._cancellations()

    def _release(self) -> None:
        woken: set[str] = set()
        with self.lock, self.sessions.begin() as session:
            for fb in session.scalars(select(FedBulletin).where(FedBulletin.state == "waiting")):
                bc = session.get(Broadcast, fb.broadcast_id) if fb.broadcast_id is not None else None
                if bc is None or bc.state in _DROPPED:
                    fb.state = "dropped"
                    continue
                if bc.state == BroadcastState.PENDING_APPROVAL.value:
                    continue
                woken |= self._send(session, fb, bc)
        if woken:
            self.hub.wake(sorted(woken))

    def _send(self, session: Session, fb: FedBulletin, bc: Broadcast) -> set[str]:
        ann = bc.announcement
        now = self.clock()
        fb.tier, fb.title, fb.text, fb.repeat = bc.tier, ann.title, ann.text, ann.repeat
        fb.sender = self.sender
        # An uploaded recording: the announcement has its audio and nothing was normalized.
        if (
            ann.audio_key
            and not ann.normalized_text
            and self.store is not None
            and self.store.has(ann.audio_key)
        ):
            meta = self.store.meta(ann.audio_key) or {}
            fb.format, fb.audio_key = "audio", ann.audio_key
            fb.audio_sha256, fb.audio_size = meta.get("sha256"), meta.get("size")
            fb.duration_s = float(meta.get("duration_s") or bc.duration_s or 0.0)
        if bc.scheduled_at is not None and bc.scheduled_at.timestamp() > now:
            fb.at = bc.scheduled_at
        if Tier(bc.tier) is Tier.NORMAL:
            base = fb.at.timestamp() if fb.at is not None else now
            fb.valid_until = datetime.fromtimestamp(base, UTC) + timedelta(hours=self.config.normal_valid_h)
        else:
            fb.valid_until = bc.valid_until
        routes = plan_routes(fb.targets or [], self.units())
        return self._enqueue(session, fb, routes, now)

    def _enqueue(
        self, session: Session, fb: FedBulletin, routes: dict[str, list[str]], now: float
    ) -> set[str]:
        session.flush()
        sent: set[str] = set()
        for unit, route in sorted(routes.items()):
            data = self.bulletin(fb, route).to_dict()
            if self.hub.enqueue(session, unit, "bulletin", fb.id, data):
                sent.add(unit)
        fb.units = sorted(sent)
        fb.state = "sent"
        fb.sent_at = datetime.fromtimestamp(now, UTC)
        _LOGGER.info(
            "federation: bulletin %s (%s) sent to %s", fb.id, fb.tier, ", ".join(fb.units) or "no unit"
        )
        return sent

    @staticmethod
    def bulletin(fb: FedBulletin, route: list[str]) -> Bulletin:
        audio = None
        if fb.format == "audio" and fb.audio_key and fb.audio_sha256:
            audio = AudioRef(
                fb.audio_key, fb.audio_sha256, int(fb.audio_size or 0), float(fb.duration_s or 0.0)
            )
        return Bulletin(
            id=str(fb.id),
            tier=Tier(fb.tier),
            title=fb.title,
            text=fb.text,
            format="audio" if audio else "text",
            audio=audio,
            repeat=fb.repeat,
            at=fb.at,
            valid_until=fb.valid_until,
            route=tuple(route),
            sender=fb.sender,
        )

    def _cancellations(self) -> None:
        now = datetime.fromtimestamp(self.clock(), UTC)
        with self.sessions() as session:
            ids = list(
                session.scalars(
                    select(FedBulletin.id)
                    .join(Broadcast, Broadcast.id == FedBulletin.broadcast_id)
                    .where(
                        FedBulletin.state == "sent",
                        FedBulletin.inbox_id.is_(None),
                        Broadcast.state == BroadcastState.CANCELLED.value,
                        (FedBulletin.valid_until.is_(None)) | (FedBulletin.valid_until > now),
                    )
                )
            )
        for bulletin_id in ids:
            self.cancel(bulletin_id)

    # ------------------------------------------------------------------ cancel and forward

    def cancel(self, bulletin_id: int) -> bool:
        """Withdraw a bulletin sent down: each unit gets a cancellation. False if not sent."""
        with self.lock, self.sessions.begin() as session:
            fb = session.get(FedBulletin, bulletin_id)
            if fb is None or fb.state != "sent":
                return False
            fb.state = "cancelled"
            units = [
                u for u in fb.units or [] if self.hub.enqueue(session, u, "cancel", fb.id, {"id": str(fb.id)})
            ]
        self.hub.wake(units)
        _LOGGER.info("federation: bulletin %s withdrawn from %s", bulletin_id, ", ".join(units))
        return True

    def forward(self, inbox_id: int, bulletin: Bulletin) -> int | None:
        """Pass a bulletin from our upstream on to our units; the new bulletin's id, or None."""
        routes = forward_routes(bulletin.route, bulletin.tier, self.units())
        if not routes:
            return None
        with self.lock, self.sessions.begin() as session:
            inbox = session.get(FedInbox, inbox_id)
            if inbox is None:
                return None
            audio = bulletin.audio if inbox.format == "audio" else None
            fb = FedBulletin(
                inbox_id=inbox_id,
                tier=bulletin.tier.value,
                title=bulletin.title,
                text=bulletin.text,
                format="audio" if audio else "text",
                audio_key=audio.key if audio else None,
                audio_sha256=audio.sha256 if audio else None,
                audio_size=audio.size if audio else None,
                duration_s=audio.duration_s if audio else None,
                repeat=bulletin.repeat,
                targets=[f"{UNIT_PREFIX}{r}" for r in bulletin.route],
                at=bulletin.at,
                valid_until=bulletin.valid_until,
                sender=bulletin.sender or self.sender,
                state="waiting",
            )
            session.add(fb)
            session.flush()
            inbox.forwarded_id = fb.id
            sent = self._enqueue(session, fb, routes, self.clock())
            fid = fb.id
        self.hub.wake(sorted(sent))
        return fid


__all__ = ["Outbound", "forward_routes", "plan_routes", "unit_targets"]

"""What a unit reports up, gathered from its own records:

- proof of play of every upstream item that aired here, per cluster (state, start, end, seconds
  played, measured level, reason), as it changes, and the item's state;
- its clusters (online, faults, last health), at once when that changes and at least every
  ``federation.clusters_interval_s``;
- minutes aired per day and cluster (yesterday and today), every ``federation.minutes_interval_s``.

The reports go to the persisted queue (``reportqueue``): nothing is lost while the link is down.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.broadcasts.ledger import TERMINAL
from broadcaster.federation.config import FederationConfig
from broadcaster.federation.intake import UPSTREAM
from broadcaster.federation.models import FedInbox
from broadcaster.federation.reportqueue import ReportQueue
from broadcaster.federation.wire import iso
from broadcaster.models import Broadcast, BroadcastState, DeliveryState
from broadcaster.reports import minutes_per_day

_LOGGER = logging.getLogger(__name__)


def delivery_snapshot(bc: Broadcast) -> dict[str, list[Any]]:
    return {
        d.speaker_id: [d.state, iso(d.started_at), iso(d.finished_at), d.seconds_played, d.rms_dbfs, d.reason]
        for d in bc.deliveries
    }


def delivery_report(ref: str, speaker: str, values: list[Any]) -> dict[str, Any]:
    state, started, finished, seconds, rms, reason = values
    return {
        "bulletin": ref,
        "unit": "",
        "speaker": speaker,
        "state": state,
        "started_at": started,
        "finished_at": finished,
        "seconds_played": seconds,
        "rms_dbfs": rms,
        "reason": reason,
    }


def cluster_rows(snapshot: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "id": s["id"],
            "name": s.get("name") or "",
            "zone": s.get("zone"),
            "online": bool(s.get("online")),
            "faults": sorted(a["kind"] for a in s.get("alerts") or []),
            "last_health": s.get("health_at"),
        }
        for s in snapshot
    ]


class Collector:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        queue: ReportQueue,
        fleet: Any,
        config: FederationConfig,
        lock: threading.RLock,
        *,
        timezone: str = "Asia/Ho_Chi_Minh",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sessions = sessions
        self.queue = queue
        self.fleet = fleet
        self.config = config
        self.lock = lock
        self.tz = ZoneInfo(timezone)
        self.clock = clock
        self._clusters_at = -1e18
        self._clusters_sig: Any = None
        self._minutes_at = -1e18

    def tick(self) -> None:
        self.proof_of_play()
        now = self.clock()
        self.clusters(now)
        if now - self._minutes_at >= self.config.minutes_interval_s:
            self._minutes_at = now
            self.minutes(now)

    def proof_of_play(self) -> int:
        """Report what changed on the upstream items aired here; returns the reports queued."""
        queued = 0
        with self.lock, self.sessions.begin() as session:
            rows = session.scalars(
                select(FedInbox).where(
                    FedInbox.origin == UPSTREAM, FedInbox.broadcast_id.is_not(None), FedInbox.final.is_(False)
                )
            ).all()
            for row in rows:
                bc = session.get(Broadcast, row.broadcast_id)
                if bc is None:
                    row.final = True
                    continue
                before = dict(row.reported or {})
                old = before.get("d", {})
                snap = delivery_snapshot(bc)
                for speaker, values in snap.items():
                    if old.get(speaker) != values:
                        self.queue.enqueue(session, "delivery", delivery_report(row.ref, speaker, values))
                        queued += 1
                if before.get("state") != bc.state:
                    reason = bc.reason if BroadcastState(bc.state).finished else None
                    data = {"bulletin": row.ref, "unit": "", "state": bc.state, "reason": reason}
                    self.queue.enqueue(session, "bulletin", data)
                    queued += 1
                row.reported = {"d": snap, "state": bc.state}
                if BroadcastState(bc.state).finished and all(
                    DeliveryState(d.state) in TERMINAL for d in bc.deliveries
                ):
                    row.final = True
        return queued

    def clusters(self, now: float) -> bool:
        snapshot = getattr(self.fleet, "snapshot", None)
        if snapshot is None:
            return False
        rows = cluster_rows(snapshot())
        signature = [(r["id"], r["online"], r["faults"]) for r in rows]
        if signature == self._clusters_sig and now - self._clusters_at < self.config.clusters_interval_s:
            return False
        self._clusters_sig, self._clusters_at = signature, now
        data = {"unit": "", "at": iso(datetime.fromtimestamp(now, UTC)), "clusters": rows}
        self.queue.add("clusters", data, coalesce="clusters:")
        return True

    def minutes(self, now: float) -> None:
        today = datetime.fromtimestamp(now, self.tz).date()
        with self.sessions() as session:
            rows = minutes_per_day(session, today - timedelta(days=1), today, tz=self.tz)
        days = [
            {
                "date": r["date"],
                "speaker": r["speaker"],
                "broadcasts": r["broadcasts"],
                "seconds": r["seconds"],
            }
            for r in rows
        ]
        self.queue.add("minutes", {"unit": "", "days": days}, coalesce="minutes:")


__all__ = ["Collector", "cluster_rows", "delivery_report", "delivery_snapshot"]

"""The reports waiting to go up: bounded, persisted, in order, each sent until acknowledged.

Every report gets the next number of ``FedLink.next_report_seq`` (never reused, even after the
queue empties: the upper level applies a report only if its number is above the last it applied,
so a number used twice would be a report lost). A snapshot report (``clusters``, ``minutes``) names
a ``coalesce`` key: a newer one replaces the older one still waiting. When the queue is full, the
oldest snapshots go first, then the oldest reports; what was dropped is counted on the link row.

Writers hold ``lock`` (one per controller): two threads must not draw the same number.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.federation.models import FedLink, FedReport
from broadcaster.federation.wire import Report

_LOGGER = logging.getLogger(__name__)

LINK_ROW = 1
SNAPSHOT_KINDS = ("clusters", "minutes")


class ReportQueue:
    def __init__(self, sessions: sessionmaker[Session], max_size: int, lock: threading.RLock) -> None:
        self.sessions = sessions
        self.max_size = max_size
        self.lock = lock

    def enqueue(
        self, session: Session, kind: str, data: dict[str, Any], *, coalesce: str | None = None
    ) -> int | None:
        """Add a report inside the caller's transaction (the caller holds ``lock``). None when this
        controller has no upstream (the top level): nothing to report to."""
        link = session.get(FedLink, LINK_ROW)
        if link is None or link.state == "revoked":
            return None
        if coalesce is not None:
            session.execute(delete(FedReport).where(FedReport.coalesce_key == coalesce))
        seq = link.next_report_seq
        link.next_report_seq = seq + 1
        session.add(FedReport(seq=seq, kind=kind, coalesce_key=coalesce, data=data))
        session.flush()
        count = session.scalar(select(func.count()).select_from(FedReport)) or 0
        if count > self.max_size:
            self._drop(session, link, count - self.max_size)
        return seq

    def add(self, kind: str, data: dict[str, Any], *, coalesce: str | None = None) -> int | None:
        with self.lock, self.sessions.begin() as session:
            return self.enqueue(session, kind, data, coalesce=coalesce)

    def _drop(self, session: Session, link: FedLink, excess: int) -> None:
        victims = list(
            session.scalars(
                select(FedReport.seq)
                .where(FedReport.kind.in_(SNAPSHOT_KINDS))
                .order_by(FedReport.seq)
                .limit(excess)
            )
        )
        if len(victims) < excess:
            victims += list(
                session.scalars(
                    select(FedReport.seq)
                    .where(FedReport.seq.not_in(victims) if victims else FedReport.seq > 0)
                    .order_by(FedReport.seq)
                    .limit(excess - len(victims))
                )
            )
        session.execute(delete(FedReport).where(FedReport.seq.in_(victims)))
        link.dropped_reports = (link.dropped_reports or 0) + len(victims)
        if link.dropped_reports == len(victims) or link.dropped_reports % 1000 < len(victims):
            _LOGGER.warning(
                "report queue full (%s): %s report(s) dropped so far", self.max_size, link.dropped_reports
            )

    def pending(self, limit: int) -> list[Report]:
        with self.sessions() as session:
            rows = session.scalars(select(FedReport).order_by(FedReport.seq).limit(limit))
            return [Report(r.seq, r.kind, dict(r.data)) for r in rows]

    def ack(self, upto: int) -> int:
        """Forget every report up to ``upto`` (the upper level applied them)."""
        with self.lock, self.sessions.begin() as session:
            result = session.execute(delete(FedReport).where(FedReport.seq <= upto))
            return int(getattr(result, "rowcount", 0) or 0)

    def size(self) -> int:
        with self.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(FedReport)) or 0)


__all__ = ["LINK_ROW", "SNAPSHOT_KINDS", "ReportQueue"]

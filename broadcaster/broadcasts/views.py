"""Read-only views of broadcasts for the API, the web pages and the fleet (plain dicts)."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.broadcasts.state import parse_wire_id
from broadcaster.models import Broadcast

# Titles kept in memory by BroadcastTitles; beyond this the oldest half is forgotten.
_TITLE_MEMORY = 5000


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def broadcast_view(bc: Broadcast, *, deliveries: bool) -> dict[str, Any]:
    ann = bc.announcement
    out: dict[str, Any] = {
        "id": bc.id,
        "announcement_id": bc.announcement_id,
        "state": bc.state,
        "tier": bc.tier,
        "targets": list(bc.targets or []),
        "title": ann.title,
        "text": ann.text,
        "normalized_text": ann.normalized_text,
        "approval": ann.approval,
        "author": ann.author,
        "source": ann.source,
        "scheduled_at": _iso(bc.scheduled_at),
        "start_at": _iso(bc.start_at),
        "finished_at": _iso(bc.finished_at),
        "valid_until": _iso(bc.valid_until),
        "created": _iso(bc.created),
        "engine": bc.engine_used,
        "audio_key": bc.audio_key,
        "duration_s": bc.duration_s,
        "schedule_id": bc.schedule_id,
        "fire_time": _iso(bc.fire_time),
        "reason": bc.reason,
    }
    if deliveries:
        out["deliveries"] = [
            {
                "speaker": d.speaker_id,
                "state": d.state,
                "started_at": _iso(d.started_at),
                "finished_at": _iso(d.finished_at),
                "seconds_played": d.seconds_played,
                "rms_dbfs": d.rms_dbfs,
                "reason": d.reason,
            }
            for d in bc.deliveries
        ]
    else:
        counts: dict[str, int] = {}
        for d in bc.deliveries:
            counts[d.state] = counts.get(d.state, 0) + 1
        out["delivery_counts"] = counts
    return out


def get_broadcast(session: Session, broadcast_id: int) -> dict[str, Any] | None:
    if not 0 < broadcast_id < 2**63:
        return None
    bc = session.get(Broadcast, broadcast_id)
    return None if bc is None else broadcast_view(bc, deliveries=True)


def list_broadcasts(
    session: Session, *, limit: int = 50, offset: int = 0, state: str | None = None
) -> list[dict[str, Any]]:
    query = select(Broadcast).order_by(Broadcast.id.desc()).limit(max(1, min(limit, 1000)))
    query = query.offset(max(0, offset))
    if state is not None:
        query = query.where(Broadcast.state == state)
    return [broadcast_view(bc, deliveries=False) for bc in session.scalars(query)]


class BroadcastTitles:
    """Title of a broadcast by id or by the id nodes report (``"12"``, ``"12-r1"``); for the fleet's
    "now playing" and the dashboard. Thread-safe, cached."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self._titles: dict[int, str] = {}
        self._lock = threading.Lock()

    def remember(self, broadcast_id: int, title: str) -> None:
        with self._lock:
            if len(self._titles) >= _TITLE_MEMORY:
                for old in sorted(self._titles)[: _TITLE_MEMORY // 2]:
                    del self._titles[old]
            self._titles[broadcast_id] = title

    def lookup(self, broadcast_id: str | int) -> str | None:
        parsed = parse_wire_id(str(broadcast_id))
        if parsed is None:
            return None
        bid = parsed[0]
        with self._lock:
            title = self._titles.get(bid)
        if title is not None:
            return title
        with self.sessions() as session:
            bc = session.get(Broadcast, bid)
            if bc is None:
                return None
            title = bc.announcement.title or bc.announcement.text[:60]
        self.remember(bid, title)
        return title


__all__ = ["BroadcastTitles", "broadcast_view", "get_broadcast", "list_broadcasts"]

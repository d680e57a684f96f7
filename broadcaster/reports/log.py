"""The broadcast log: what was aired, where, and with what result, filtered and paged.

One dict per broadcast (:func:`broadcast_dict`) with its deliveries per cluster and the airings of
each (an interrupted airing and its re-airing both show), labels from ``broadcasts/views.py``.
Times are ISO 8601 with the local offset. The search ``q`` ignores case and accents.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, selectinload

from broadcaster.broadcasts.views import (
    broadcast_state_label,
    delivery_state_label,
    interruptions,
    kind_label,
    tier_label,
)
from broadcaster.domain import Tier
from broadcaster.models import Announcement, Broadcast, BroadcastState, Delivery, Speaker
from broadcaster.reports.common import (
    MAX_LIMIT,
    ReportError,
    fold,
    int_arg,
    parse_when,
    speaker_index,
    zone_info,
)

# Broadcasts read per query while searching (the search runs here, not in the database).
_SCAN_BATCH = 500


@dataclass
class LogFilters:
    """Filters of the broadcast log. ``start``/``end`` bound the broadcast's time (when it started,
    else when it was scheduled, else when it was created); ``q`` searches title and text ignoring
    case and accents."""

    start: datetime | None = None
    end: datetime | None = None
    tier: str | None = None
    state: str | None = None
    speaker: str | None = None
    zone: str | None = None
    q: str | None = None
    limit: int = 100
    offset: int = 0

    @classmethod
    def from_args(cls, args: Mapping[str, Any], tz: str | tzinfo = "Asia/Ho_Chi_Minh") -> LogFilters:
        """From query parameters ``from``, ``to`` (a date = that whole local day, or an ISO time),
        ``tier``, ``state``, ``speaker``, ``zone``, ``q``, ``limit``, ``offset``."""
        zone = zone_info(tz)
        known = {"from", "to", "tier", "state", "speaker", "zone", "q", "limit", "offset"}
        unknown = sorted(set(args) - known)
        if unknown:
            raise ReportError(f"unknown filter(s): {', '.join(unknown)}", unknown[0])

        def get(name: str) -> str | None:
            value = args.get(name)
            return value.strip() or None if isinstance(value, str) else value

        tier, state = get("tier"), get("state")
        if tier is not None and tier not in {t.value for t in Tier}:
            raise ReportError(f"tier must be one of normal, priority, emergency (got {tier!r})", "tier")
        if state is not None and state not in {s.value for s in BroadcastState}:
            raise ReportError(
                f"state must be one of {', '.join(s.value for s in BroadcastState)} (got {state!r})", "state"
            )
        return cls(
            start=parse_when(get("from"), zone, "from"),
            end=parse_when(get("to"), zone, "to", end_of_day=True),
            tier=tier,
            state=state,
            speaker=get("speaker"),
            zone=get("zone"),
            q=get("q"),
            limit=int_arg(get("limit"), "limit", 100, 1, MAX_LIMIT),
            offset=int_arg(get("offset"), "offset", 0, 0, 10**9),
        )


def _when_column() -> Any:
    return func.coalesce(Broadcast.start_at, Broadcast.scheduled_at, Broadcast.created)


def _iso(value: datetime | None, zone: tzinfo) -> str | None:
    return None if value is None else value.astimezone(zone).isoformat()


def _log_query(filters: LogFilters) -> Select[Any]:
    when = _when_column()
    query = (
        select(Broadcast)
        .options(
            selectinload(Broadcast.deliveries),
            selectinload(Broadcast.announcement),
            selectinload(Broadcast.attempts),
        )
        .order_by(when.desc(), Broadcast.id.desc())
    )
    if filters.start is not None:
        query = query.where(when >= filters.start)
    if filters.end is not None:
        query = query.where(when <= filters.end)
    if filters.tier:
        query = query.where(Broadcast.tier == filters.tier)
    if filters.state:
        query = query.where(Broadcast.state == filters.state)
    if filters.speaker:
        query = query.where(
            Broadcast.id.in_(select(Delivery.broadcast_id).where(Delivery.speaker_id == filters.speaker))
        )
    if filters.zone:
        query = query.where(
            Broadcast.id.in_(
                select(Delivery.broadcast_id)
                .join(Speaker, Speaker.id == Delivery.speaker_id)
                .where(Speaker.zone_id == filters.zone)
            )
        )
    return query


def broadcast_dict(
    broadcast: Broadcast, speakers: Mapping[str, tuple[str, str | None]], zone: tzinfo
) -> dict[str, Any]:
    ann: Announcement = broadcast.announcement
    deliveries = []
    counts: dict[str, int] = defaultdict(int)
    total = 0.0
    attempts: dict[str, list[Any]] = defaultdict(list)
    for a in broadcast.attempts:
        attempts[a.speaker_id].append(a)
    for d in broadcast.deliveries:
        name, zone_id = speakers.get(d.speaker_id, (d.speaker_id, None))
        counts[d.state] += 1
        # Every airing counts, an interrupted first one included (older rows: the delivery's own).
        runs = attempts.get(d.speaker_id)
        total += sum(a.seconds_played or 0.0 for a in runs) if runs else d.seconds_played or 0.0
        deliveries.append(
            {
                "speaker": d.speaker_id,
                "speaker_name": name,
                "zone": zone_id,
                "state": d.state,
                "state_label": delivery_state_label(d.state),
                "started_at": _iso(d.started_at, zone),
                "finished_at": _iso(d.finished_at, zone),
                "seconds_played": d.seconds_played,
                "rms_dbfs": d.rms_dbfs,
                "reason": d.reason,
                "airings": [
                    {
                        "attempt": a.attempt,
                        "started_at": _iso(a.started_at, zone),
                        "ended_at": _iso(a.ended_at, zone),
                        "outcome": a.outcome,
                        "seconds_played": a.seconds_played,
                        "reason": a.reason,
                    }
                    for a in runs or ()
                ],
            }
        )
    when = broadcast.start_at or broadcast.scheduled_at or broadcast.created
    return {
        "id": broadcast.id,
        "time": _iso(when, zone),
        "created": _iso(broadcast.created, zone),
        "scheduled_at": _iso(broadcast.scheduled_at, zone),
        "start_at": _iso(broadcast.start_at, zone),
        "finished_at": _iso(broadcast.finished_at, zone),
        "fire_time": _iso(broadcast.fire_time, zone),
        "schedule_id": broadcast.schedule_id,
        "announcement_id": broadcast.announcement_id,
        "title": ann.title if ann else "",
        "text": ann.text if ann else "",
        "normalized_text": ann.normalized_text if ann else "",
        "tier": broadcast.tier,
        "tier_label": tier_label(broadcast.tier),
        "state": broadcast.state,
        "state_label": broadcast_state_label(broadcast.state),
        "targets": list(broadcast.targets or []),
        "source": ann.source if ann else None,
        "author": (ann.author if ann else None) or broadcast.created_by,
        "engine": broadcast.engine_used,
        "duration_s": broadcast.duration_s,
        "reason": broadcast.reason,
        # Relays and live speech: what they aired (the channel's name, «Phát trực tiếp»).
        "kind": broadcast.kind or "announcement",
        "kind_label": kind_label(broadcast.kind),
        "channel_id": broadcast.channel_id,
        "source_name": broadcast.source_name,
        "end_at": _iso(broadcast.end_at, zone),
        "audio_key": broadcast.audio_key,
        "interruptions": interruptions(broadcast),
        "seconds_played": round(total, 1),
        "counts": dict(counts),
        "deliveries": deliveries,
    }


def broadcast_log(
    session: Session,
    filters: LogFilters | Mapping[str, Any] | None = None,
    *,
    tz: str | tzinfo = "Asia/Ho_Chi_Minh",
) -> list[dict[str, Any]]:
    """Broadcasts matching ``filters``, newest first, each with its per-cluster deliveries."""
    zone = zone_info(tz)
    if filters is None:
        filters = LogFilters()
    elif not isinstance(filters, LogFilters):
        names = {f.name for f in fields(LogFilters)}
        unknown = set(filters) - names
        if unknown:
            raise ReportError(f"unknown filter(s): {', '.join(sorted(unknown))}")
        filters = LogFilters(**dict(filters))
    limit = max(1, min(filters.limit, MAX_LIMIT))
    speakers = speaker_index(session)
    query = _log_query(filters)
    if not filters.q:
        rows = session.scalars(query.limit(limit).offset(max(0, filters.offset))).all()
        return [broadcast_dict(b, speakers, zone) for b in rows]
    # Accent- and case-insensitive search is done here: SQLite's LIKE folds ASCII only.
    needle = fold(filters.q)
    out: list[dict[str, Any]] = []
    skipped = 0
    scan = 0
    while len(out) < limit:
        batch = session.scalars(query.limit(_SCAN_BATCH).offset(scan)).all()
        if not batch:
            break
        scan += len(batch)
        for b in batch:
            ann = b.announcement
            haystack = fold(f"{ann.title}\n{ann.text}\n{b.source_name or ''}") if ann else ""
            if needle not in haystack:
                continue
            if skipped < filters.offset:
                skipped += 1
                continue
            out.append(broadcast_dict(b, speakers, zone))
            if len(out) >= limit:
                break
    return out

"""Minutes aired per cluster per day: the figure a district asks for.

Days are counted in the commune's time zone; each airing counts (an interrupted first airing and its
re-airing both), at most :data:`~broadcaster.reports.common.MAX_DAYS` days per report.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from broadcaster.models import Broadcast, Delivery, DeliveryAttempt, Zone
from broadcaster.reports.common import MAX_DAYS, ReportError, parse_day, speaker_index, zone_info


def _airings_in(
    session: Session, lo: datetime, hi: datetime, speaker: str | None
) -> list[tuple[str, int, float | None, datetime]]:
    """(cluster, broadcast, seconds, when it started) of every airing that started in [lo, hi):
    each attempt (an interrupted first airing and its re-airing both count), and for deliveries
    recorded before attempts existed, the delivery itself."""
    attempt_at = func.coalesce(DeliveryAttempt.started_at, DeliveryAttempt.ended_at)
    query = select(
        DeliveryAttempt.speaker_id,
        DeliveryAttempt.broadcast_id,
        DeliveryAttempt.seconds_played,
        attempt_at.label("played_at"),
    ).where(DeliveryAttempt.seconds_played > 0, attempt_at >= lo, attempt_at < hi)
    played_at = func.coalesce(
        Delivery.started_at, Delivery.finished_at, Broadcast.start_at, Broadcast.created
    )
    has_attempts = (
        select(DeliveryAttempt.id)
        .where(
            DeliveryAttempt.broadcast_id == Delivery.broadcast_id,
            DeliveryAttempt.speaker_id == Delivery.speaker_id,
        )
        .exists()
    )
    legacy = (
        select(
            Delivery.speaker_id, Delivery.broadcast_id, Delivery.seconds_played, played_at.label("played_at")
        )
        .join(Broadcast, Broadcast.id == Delivery.broadcast_id)
        .where(Delivery.seconds_played > 0, played_at >= lo, played_at < hi, ~has_attempts)
    )
    if speaker:
        query = query.where(DeliveryAttempt.speaker_id == speaker)
        legacy = legacy.where(Delivery.speaker_id == speaker)
    return [tuple(row) for row in [*session.execute(query), *session.execute(legacy)]]  # type: ignore[misc]


def minutes_per_day(
    session: Session,
    start: date | str,
    end: date | str,
    *,
    tz: str | tzinfo = "Asia/Ho_Chi_Minh",
    zone: str | None = None,
    speaker: str | None = None,
) -> list[dict[str, Any]]:
    """Minutes aired per cluster per local day, ``start``..``end`` inclusive.

    One row per day and registered cluster (zero when it aired nothing: a silent cluster is news
    too), plus clusters since deleted that aired in the range. Seconds are what the nodes
    measured for every airing (an interrupted airing and its re-airing both count), counted on the
    day playing started."""
    local = zone_info(tz)
    first, last = parse_day(start, "from"), parse_day(end, "to")
    if last < first:
        raise ReportError("'to' is before 'from'", "to")
    if (last - first).days + 1 > MAX_DAYS:
        raise ReportError(f"at most {MAX_DAYS} days per report", "to")
    lo = datetime.combine(first, time(), local).astimezone(UTC)
    hi = datetime.combine(last + timedelta(days=1), time(), local).astimezone(UTC)
    totals: dict[tuple[date, str], float] = defaultdict(float)
    counts: dict[tuple[date, str], set[int]] = defaultdict(set)
    for speaker_id, broadcast_id, seconds, at in _airings_in(session, lo, hi, speaker):
        if at.tzinfo is None:  # coalesce() of typed columns keeps UtcDateTime; belt and braces
            at = at.replace(tzinfo=UTC)
        day = at.astimezone(local).date()
        totals[(day, speaker_id)] += seconds or 0.0
        counts[(day, speaker_id)].add(broadcast_id)

    speakers = speaker_index(session)
    zone_names = dict(session.execute(select(Zone.id, Zone.name)).all())
    ids = set(speakers) | {sid for _, sid in totals}
    if speaker:
        ids &= {speaker}
    if zone:
        ids = {sid for sid in ids if speakers.get(sid, (None, None))[1] == zone}
    rows = []
    day = first
    while day <= last:
        for sid in ids:
            name, zone_id = speakers.get(sid, (sid, None))
            seconds = totals.get((day, sid), 0.0)
            rows.append(
                {
                    "date": day.isoformat(),
                    "speaker": sid,
                    "speaker_name": name,
                    "zone": zone_id,
                    "zone_name": zone_names.get(zone_id) if zone_id else None,
                    "broadcasts": len(counts.get((day, sid), ())),
                    "seconds": round(seconds, 1),
                    "minutes": round(seconds / 60.0, 2),
                }
            )
        day += timedelta(days=1)
    rows.sort(key=lambda r: (r["date"], r["zone"] or "", r["speaker"]))
    return rows

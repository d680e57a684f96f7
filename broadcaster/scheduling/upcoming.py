"""The week view: airings between two instants, planned (from the triggers) and past (from the
broadcasts: aired, missed, deferred)."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from broadcaster.models import Announcement, Broadcast, Channel, Schedule
from broadcaster.scheduling.apsched import fire_times
from broadcaster.scheduling.book import trigger_of
from broadcaster.scheduling.spec import ScheduleError


def _window(value: datetime, zone: tzinfo) -> datetime:
    return (value.replace(tzinfo=zone) if value.tzinfo is None else value).astimezone(UTC)


def upcoming(
    session: Session, zone: tzinfo, start: datetime, end: datetime, limit: int
) -> list[dict[str, Any]]:
    """Airings between ``start`` and ``end`` (naive = ``zone``), sorted by time.

    Each: ``{schedule_id, broadcast_id, title, name, tier, targets, at, state, approval, kind,
    relay}``; ``relay`` is the channel's name for a relay (``duration_s`` then says how long), else None.
    Future airings come from the schedules' triggers (``broadcast_id`` None until they air, at
    most ``limit`` per schedule); aired, missed and deferred ones from the broadcasts."""
    start, end = _window(start, zone), _window(end, zone)
    items: dict[tuple[Any, ...], dict[str, Any]] = {}
    channels = dict(session.execute(select(Channel.id, Channel.name)).all())
    for row in session.scalars(select(Schedule).where(Schedule.enabled.is_(True))):
        try:
            trigger = trigger_of(row, zone)
        except ScheduleError:
            continue
        for at in fire_times(trigger, start, end, limit):
            items[("s", row.id, at)] = {
                "schedule_id": row.id,
                "broadcast_id": None,
                "title": row.title or row.name,
                "name": row.name,
                "tier": row.tier,
                "targets": list(row.targets),
                "at": at,
                "state": None,
                "approval": row.approval,
                "kind": row.kind,
                "relay": channels.get(row.channel_id, row.name) if row.channel_id is not None else None,
                "duration_s": row.duration_s,
            }
    when = Broadcast.fire_time
    query = (
        select(Broadcast, Announcement.title, Announcement.approval)
        .join(Announcement, Broadcast.announcement_id == Announcement.id)
        .where(
            ((when >= start) & (when <= end))
            | ((Broadcast.scheduled_at >= start) & (Broadcast.scheduled_at <= end))
        )
    )
    for broadcast, title, approval in session.execute(query).all():
        at = broadcast.fire_time or broadcast.scheduled_at
        if at is None:
            continue
        key = ("s", broadcast.schedule_id, at) if broadcast.schedule_id else ("b", broadcast.id)
        item = items.get(key) or {
            "schedule_id": broadcast.schedule_id,
            "name": title,
            "kind": "once" if broadcast.schedule_id is None else None,
            "duration_s": None,
        }
        item.update(
            broadcast_id=broadcast.id,
            title=title or item.get("title") or "",
            tier=broadcast.tier,
            targets=list(broadcast.targets),
            at=at,
            state=broadcast.state,
            approval=approval,
            relay=broadcast.source_name if broadcast.kind == "relay" else None,
        )
        items[key] = item
    out = sorted(items.values(), key=lambda i: (i["at"], i["schedule_id"] or 0, i["broadcast_id"] or 0))
    for item in out:
        item["at"] = item["at"].astimezone(zone).isoformat()
    return out


__all__ = ["upcoming"]

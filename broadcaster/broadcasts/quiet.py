"""Quiet hours of a zone ("21:00"-"05:00" in the controller's time zone; may wrap midnight)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo


def _parse(value: str) -> time:
    hour, minute = value.split(":")
    return time(int(hour), int(minute))


def quiet_until(start: str | None, end: str | None, now: datetime, tz: ZoneInfo) -> datetime | None:
    """When ``now`` (aware) falls in the quiet hours ``start``-``end``, the aware instant they end;
    otherwise None. Quiet hours are half-open: ``start`` <= t < ``end``."""
    if not start or not end or start == end:
        return None
    local = now.astimezone(tz)
    t = local.time()
    qs, qe = _parse(start), _parse(end)
    inside = qs <= t < qe if qs < qe else (t >= qs or t < qe)
    if not inside:
        return None
    end_local = datetime.combine(local.date(), qe, tzinfo=tz)
    if end_local <= local:
        end_local += timedelta(days=1)
    return end_local

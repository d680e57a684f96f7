"""Shared by the reports: their error, the limits, parsing of dates and days, accent-free search.

Days and times typed by an officer (or an API caller) are read in the commune's time zone; a bad
one is a :class:`ReportError` naming the parameter at fault.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from broadcaster.models import Speaker

# Rows of the log per page at most: a page the officer's browser can still show at once.
MAX_LIMIT = 1000
# Days per minutes report at most: one year (and a leap day).
MAX_DAYS = 366


class ReportError(ValueError):
    """A bad report request (filter, date range); ``field`` names the parameter at fault."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def zone_info(tz: str | tzinfo) -> tzinfo:
    return ZoneInfo(tz) if isinstance(tz, str) else tz


def fold(text: str) -> str:
    """Case- and accent-insensitive form for searching: "Bản TIN Đường" -> "ban tin duong"."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def int_arg(value: Any, name: str, default: int, lo: int, hi: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ReportError(f"{name} must be a whole number (got {value!r})", name) from None
    if not lo <= number <= hi:
        raise ReportError(f"{name} must be between {lo} and {hi}", name)
    return number


def parse_when(value: Any, zone: tzinfo, name: str, *, end_of_day: bool = False) -> datetime | None:
    """``YYYY-MM-DD`` (start of that local day, or its end when ``end_of_day``) or an ISO 8601 time
    (naive = local) -> aware UTC. None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime.combine(value + timedelta(days=1) if end_of_day else value, time())
        parsed = parsed.replace(tzinfo=zone) - (timedelta(microseconds=1) if end_of_day else timedelta())
    else:
        text = str(value).strip()
        try:
            if len(text) == 10:
                return parse_when(date.fromisoformat(text), zone, name, end_of_day=end_of_day)
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ReportError(
                f"{name} must be a date YYYY-MM-DD or an ISO 8601 time (got {text!r})", name
            ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC)


def parse_day(value: Any, name: str) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise ReportError(f"{name} must be a date YYYY-MM-DD (got {value!r})", name) from None


def speaker_index(session: Session) -> dict[str, tuple[str, str | None]]:
    """Cluster id -> (name, zone) of every registered cluster."""
    return {
        s.id: (s.name, s.zone_id) for s in session.execute(select(Speaker.id, Speaker.name, Speaker.zone_id))
    }

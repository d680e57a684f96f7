"""What was aired: the broadcast log with filters, minutes aired per cluster per day, CSV export.

These are the figures a district asks for. Used by the REST API and the web UI. Days are counted
in ``settings.timezone``; times in JSON are ISO 8601 with the local offset, in CSV plain local
``YYYY-MM-DD HH:MM:SS`` so Excel reads them as dates.

* ``log.py``: the broadcast log (:class:`LogFilters`, :func:`broadcast_log`);
* ``minutes.py``: minutes aired per cluster per day (:func:`minutes_per_day`);
* ``export.py``: CSV of either, plain or in Excel's Vietnamese regional format;
* ``common.py``: :class:`ReportError`, the limits, parsing of dates and days, accent-free search.

:class:`Reports` runs them over a sessionmaker; every public name is importable from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, tzinfo
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from broadcaster.reports.common import MAX_DAYS, MAX_LIMIT, ReportError, fold, parse_day, parse_when
from broadcaster.reports.export import (
    CSV_FORMATS,
    LOG_CSV_COLUMNS,
    MINUTES_CSV_COLUMNS,
    check_csv_format,
    log_csv,
    log_rows,
    minutes_csv,
    to_csv,
)
from broadcaster.reports.log import LogFilters, broadcast_dict, broadcast_log
from broadcaster.reports.minutes import minutes_per_day


class Reports:
    """The reports over a sessionmaker, one short session per call, days in ``tz`` (the web pages
    use this; callers that hold a session use the functions above)."""

    def __init__(self, sessions: sessionmaker[Session], tz: str | tzinfo = "Asia/Ho_Chi_Minh") -> None:
        self.sessions = sessions
        self.tz = tz

    def filters(self, args: Mapping[str, Any]) -> LogFilters:
        """``LogFilters.from_args`` in this service's time zone; raises ``ReportError``."""
        return LogFilters.from_args(args, self.tz)

    def log(self, filters: LogFilters | Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        with self.sessions() as session:
            return broadcast_log(session, filters, tz=self.tz)

    def minutes(
        self, start: date | str, end: date | str, *, zone: str | None = None, speaker: str | None = None
    ) -> list[dict[str, Any]]:
        with self.sessions() as session:
            return minutes_per_day(session, start, end, tz=self.tz, zone=zone, speaker=speaker)


__all__ = [
    "CSV_FORMATS",
    "LOG_CSV_COLUMNS",
    "MAX_DAYS",
    "MAX_LIMIT",
    "MINUTES_CSV_COLUMNS",
    "LogFilters",
    "ReportError",
    "Reports",
    "broadcast_dict",
    "broadcast_log",
    "check_csv_format",
    "fold",
    "log_csv",
    "log_rows",
    "minutes_csv",
    "minutes_per_day",
    "parse_day",
    "parse_when",
    "to_csv",
]

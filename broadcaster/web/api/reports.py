"""The log, the minutes report and their CSV: ``/api/log``, ``/api/reports/minutes``."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Response, jsonify, request

from broadcaster.reports import (
    LogFilters,
    broadcast_log,
    check_csv_format,
    log_csv,
    minutes_csv,
    minutes_per_day,
    parse_day,
)
from broadcaster.web.api import (
    bp,
    check_query,
    services,
)

_LOGGER = logging.getLogger(__name__)


# ------------------------------------------------------------------ log and reports


def _log(*, csv: bool = False) -> list[dict[str, Any]]:
    settings = services().settings
    args = dict(request.args)
    if csv:
        args.pop("format", None)
    filters = LogFilters.from_args(args, settings.timezone)
    with services().sessions() as session:
        return broadcast_log(session, filters, tz=settings.timezone)


def _csv_response(text: str, filename: str) -> Response:
    return Response(
        text.encode("utf-8"),
        mimetype="text/csv",
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{filename}"',
        },
    )


@bp.get("/log")
def log() -> Response:
    return jsonify(broadcasts=_log())


@bp.get("/log.csv")
def log_as_csv() -> Response:
    excel = check_csv_format(request.args.get("format"))
    return _csv_response(log_csv(_log(csv=True), excel=excel), "nhat-ky-phat-thanh.csv")


def _minutes(*, csv: bool = False) -> tuple[str, str, list[dict[str, Any]]]:
    check_query({"from", "to", "zone", "speaker", *(("format",) if csv else ())})
    settings = services().settings
    today = datetime.now(ZoneInfo(settings.timezone)).date()
    start = parse_day(request.args.get("from") or (today - timedelta(days=6)).isoformat(), "from")
    end = parse_day(request.args.get("to") or today.isoformat(), "to")
    with services().sessions() as session:
        rows = minutes_per_day(
            session,
            start,
            end,
            tz=settings.timezone,
            zone=request.args.get("zone") or None,
            speaker=request.args.get("speaker") or None,
        )
    return start.isoformat(), end.isoformat(), rows


@bp.get("/reports/minutes")
def minutes() -> Response:
    start, end, rows = _minutes()
    return jsonify({"from": start, "to": end, "rows": rows})


@bp.get("/reports/minutes.csv")
def minutes_as_csv() -> Response:
    excel = check_csv_format(request.args.get("format"))
    start, end, rows = _minutes(csv=True)
    return _csv_response(minutes_csv(rows, excel=excel), f"so-phut-phat-{start}-{end}.csv")

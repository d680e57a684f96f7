"""The broadcast log: what aired where (filters, pages), minutes aired per cluster per day, and
both as CSV for the district."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from flask import Response, abort, render_template, request

from broadcaster import reports
from broadcaster.broadcasts.views import BROADCAST_STATE_LABELS, TIER_LABELS
from broadcaster.web.auth import login_required
from broadcaster.web.ui import bp, error_text, now, report_service, target_names, tz

PAGE_SIZE = 25
_LOG_ARGS = ("state", "tier", "q", "zone", "speaker")


def _date_arg(name: str, default: date) -> date:
    try:
        return date.fromisoformat(request.args.get(name, "")) if request.args.get(name) else default
    except ValueError:
        return default


def _log_range() -> tuple[date, date]:
    """The log's local days (default: the last seven), at most a year."""
    today = now().astimezone(tz()).date()
    day_from = _date_arg("from", today - timedelta(days=6))
    day_to = _date_arg("to", today)
    if day_to < day_from:
        day_from, day_to = day_to, day_from
    day_from = max(day_from, day_to - timedelta(days=365))
    return day_from, day_to


def _log_filters(day_from: date, day_to: date, *, limit: int, offset: int) -> reports.LogFilters:
    args = {k: request.args[k] for k in _LOG_ARGS if request.args.get(k)}
    args.update(
        {"from": day_from.isoformat(), "to": day_to.isoformat(), "limit": str(limit), "offset": str(offset)}
    )
    return report_service().filters(args)


@bp.route("/log")
@login_required
def log() -> str:
    try:
        page = max(1, int(request.args.get("page", "1")))
    except ValueError:
        page = 1
    day_from, day_to = _log_range()
    items: list[dict[str, Any]] = []
    minutes: list[dict[str, Any]] = []
    error = None
    try:
        filters = _log_filters(day_from, day_to, limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE)
        items = report_service().log(filters)
        minutes = report_service().minutes(day_from, day_to)
    except reports.ReportError as exc:
        error = f"Bộ lọc không hợp lệ: {error_text(exc)}"
    has_more = len(items) > PAGE_SIZE
    query = {k: request.args[k] for k in _LOG_ARGS if request.args.get(k)}
    query.update({"from": day_from.isoformat(), "to": day_to.isoformat()})
    return render_template(
        "log.html",
        items=items[:PAGE_SIZE],
        page=page,
        has_more=has_more,
        query=query,
        states=BROADCAST_STATE_LABELS,
        tiers=list(TIER_LABELS.items()),
        minutes=minutes_table(minutes),
        day_from=day_from,
        day_to=day_to,
        names=target_names(),
        error=error,
    )


def minutes_table(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows ``{date, speaker, speaker_name, minutes}`` as a cluster x day grid."""
    days: list[str] = []
    speakers: dict[str, str] = {}
    grid: dict[tuple[str, str], float] = {}
    for row in rows:
        day = str(row.get("date") or row.get("day") or "")
        speaker = str(row.get("speaker") or "")
        if day not in days:
            days.append(day)
        speakers.setdefault(speaker, str(row.get("speaker_name") or speaker))
        grid[(speaker, day)] = grid.get((speaker, day), 0.0) + float(row.get("minutes") or 0)
    days.sort()
    order = sorted(speakers, key=lambda s: speakers[s])
    return {
        "days": days,
        "day_labels": {d: _day_label(d) for d in days},
        "speakers": [{"id": s, "name": speakers[s]} for s in order],
        "cell": {f"{s}|{d}": round(v, 1) for (s, d), v in grid.items()},
        "total": {s: round(sum(v for (sp, _), v in grid.items() if sp == s), 1) for s in order},
    }


def _day_label(value: str) -> str:
    try:
        return date.fromisoformat(value).strftime("%d/%m")
    except ValueError:
        return value


def _csv_response(text: str, filename: str) -> Response:
    # reports.to_csv starts with a BOM so Excel (what officers use) opens Vietnamese UTF-8 correctly.
    return Response(
        text.encode("utf-8"),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _excel() -> bool:
    """``?format=excel``: Excel's Vietnamese regional format (``;`` and decimal commas)."""
    try:
        return reports.check_csv_format(request.args.get("format"))
    except reports.ReportError:
        abort(400, description="Định dạng tải về không hợp lệ: chọn CSV hoặc Excel.")


def _filename(stem: str, excel: bool) -> str:
    return f"{stem}{'-excel' if excel else ''}.csv"


@bp.route("/log.csv")
@login_required
def log_csv() -> Response:
    excel = _excel()
    day_from, day_to = _log_range()
    try:
        filters = _log_filters(day_from, day_to, limit=reports.MAX_LIMIT, offset=0)
    except reports.ReportError as exc:
        abort(400, description=f"Bộ lọc không hợp lệ: {error_text(exc)}")
    log_items = report_service().log(filters)
    return _csv_response(
        reports.log_csv(log_items, excel=excel), _filename(f"nhat-ky-phat-{day_from}-{day_to}", excel)
    )


@bp.route("/log/minutes.csv")
@login_required
def minutes_csv() -> Response:
    excel = _excel()
    day_from, day_to = _log_range()
    rows = report_service().minutes(day_from, day_to)
    return _csv_response(
        reports.minutes_csv(rows, excel=excel), _filename(f"so-phut-phat-{day_from}-{day_to}", excel)
    )

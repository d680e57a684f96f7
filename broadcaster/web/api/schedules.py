"""Schedules and the week view: ``/api/schedules``, ``/api/upcoming``."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from flask import Response, jsonify, request

from broadcaster.reports import parse_when
from broadcaster.web.api import (
    actor,
    bp,
    check_query,
    fail,
    json_body,
    services,
    zone,
)

_LOGGER = logging.getLogger(__name__)


# ------------------------------------------------------------------ schedules


@bp.get("/schedules")
def list_schedules() -> Response:
    return jsonify(schedules=services().scheduler.list_schedules())


@bp.post("/schedules")
def create_schedule() -> tuple[Response, int, dict[str, str]]:
    data = json_body()
    scheduler = services().scheduler
    schedule_id = scheduler.create_schedule(data, author=actor())
    location = f"/api/schedules/{schedule_id}"
    return jsonify(scheduler.get_schedule(schedule_id)), 201, {"Location": location}


@bp.get("/schedules/<id:schedule_id>")
def get_schedule(schedule_id: int) -> Response:
    return jsonify(services().scheduler.get_schedule(schedule_id))


@bp.patch("/schedules/<id:schedule_id>")
def update_schedule(schedule_id: int) -> Response:
    return jsonify(services().scheduler.update_schedule(schedule_id, json_body()))


@bp.delete("/schedules/<id:schedule_id>")
def delete_schedule(schedule_id: int) -> tuple[str, int]:
    services().scheduler.delete_schedule(schedule_id)
    return "", 204


@bp.post("/schedules/reload")
def reload_schedules() -> Response:
    return jsonify(services().scheduler.reload_yaml())


@bp.get("/schedules/upcoming")
def upcoming() -> Response:
    check_query({"from", "to"})
    tz = zone()
    start = parse_when(request.args.get("from"), tz, "from") or datetime.now(UTC)
    end = parse_when(request.args.get("to"), tz, "to", end_of_day=True) or start + timedelta(days=7)
    if end < start:
        fail(400, "'to' trước 'from' ('to' is before 'from').", field="to")
    if end - start > timedelta(days=62):
        fail(400, "Khoảng thời gian tối đa 62 ngày (at most 62 days).", field="to")
    return jsonify(
        start=start.astimezone(tz).isoformat(),
        end=end.astimezone(tz).isoformat(),
        airings=services().scheduler.upcoming(start, end),
    )

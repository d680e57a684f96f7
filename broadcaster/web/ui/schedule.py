"""The schedule: a week of airings (one-off items and recurring bulletins), the list of recurring
bulletins, and editing or deleting one."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for

from broadcaster.broadcasts.views import tier_label
from broadcaster.domain import Tier
from broadcaster.models import Approval, Role
from broadcaster.web.auth import current_user, has_role, login_required, roles_required
from broadcaster.web.ui import (
    SCHEDULING_ERRORS,
    WEEKDAYS,
    bp,
    check_tier_allowed,
    describe_targets,
    engine_choices,
    error_text,
    needs_approval,
    now,
    parse_time,
    repeat_limit,
    scheduler,
    service_error_to_form,
    services,
    target_names,
    tz,
    zones_with_speakers,
)
from broadcaster.web.ui.compose import tier_choices
from broadcaster.web.ui.forms import (
    form_values,
    schedule_data,
    schedule_values,
    validate_announcement,
    validate_schedule,
)

_LOGGER = logging.getLogger(__name__)


def _week_start(value: str | None) -> date:
    today = now().astimezone(tz()).date()
    try:
        day = date.fromisoformat(value) if value else today
    except ValueError:
        day = today
    return day - timedelta(days=day.weekday())


def _week_days(start: date, airings: list[dict[str, Any]], names: dict[str, str]) -> list[dict[str, Any]]:
    """Seven days from ``start`` (local), each with its airings in time order."""
    zone = tz()
    today = now().astimezone(zone).date()
    days = []
    for i in range(7):
        day = start + timedelta(days=i)
        days.append(
            {
                "date": day,
                "label": WEEKDAYS[i][1],
                "short": day.strftime("%d/%m"),
                "today": day == today,
                "airings": [],
            }
        )
    for item in sorted(airings, key=lambda a: parse_time(a.get("at")) or now()):
        at = parse_time(item.get("at"))
        if at is None:
            continue
        local = at.astimezone(zone)
        index = (local.date() - start).days
        if 0 <= index < 7:
            days[index]["airings"].append(
                {
                    **item,
                    "time": local.strftime("%H:%M"),
                    "targets_text": describe_targets(item.get("targets"), names),
                    "tier_label": tier_label(item.get("tier")),
                    "past": at < now(),
                }
            )
    return days


@bp.route("/schedule")
@login_required
def schedule() -> str:
    start = _week_start(request.args.get("start"))
    start_dt = datetime.combine(start, datetime.min.time(), tz())
    end_dt = start_dt + timedelta(days=7)
    found = scheduler()
    try:
        airings = found.upcoming(start_dt.astimezone(UTC), end_dt.astimezone(UTC))
    except Exception:
        _LOGGER.exception("scheduler.upcoming failed")
        airings = []
        flash("Không tải được lịch phát. Vui lòng thử lại sau.", "error")
    names = target_names()
    try:
        schedules = found.list_schedules()
    except Exception:
        _LOGGER.exception("scheduler.list_schedules failed")
        schedules = []
    return render_template(
        "schedule.html",
        days=_week_days(start, airings, names),
        start=start,
        end=start + timedelta(days=6),
        prev=(start - timedelta(days=7)).isoformat(),
        next=(start + timedelta(days=7)).isoformat(),
        this_week=_week_start(None).isoformat(),
        schedules=schedules,
        names=names,
        weekdays=dict(WEEKDAYS),
    )


def _get_schedule(schedule_id: int) -> dict[str, Any]:
    try:
        item = scheduler().get_schedule(schedule_id)
    except (KeyError, LookupError):
        item = None
    except SCHEDULING_ERRORS:
        item = None
    if not item:
        abort(404, description="Không tìm thấy lịch phát này.")
    return item


def _schedule_page(
    schedule_id: int, item: dict[str, Any], values: dict[str, Any], errors: dict[str, str], status: int = 200
) -> Any:
    return (
        render_template(
            "schedule_edit.html",
            schedule_id=schedule_id,
            item=item,
            values=values,
            errors=errors,
            zones=zones_with_speakers(),
            engines=engine_choices(),
            tiers=tier_choices(),
            weekdays=WEEKDAYS,
            max_repeat=repeat_limit(),
            max_chars=services().settings.textnorm.max_chars,
        ),
        status,
    )


@bp.route("/schedule/<id:schedule_id>", methods=["GET", "POST"])
@login_required
def schedule_edit(schedule_id: int) -> Any:
    item = _get_schedule(schedule_id)
    if request.method == "GET":
        return _schedule_page(schedule_id, item, schedule_values(item), {})
    if not has_role(current_user(), Role.EDITOR.value, Role.APPROVER.value):
        abort(403, description="Tài khoản của bạn không có quyền sửa lịch phát.")
    values = {**schedule_values(item), **form_values(request.form), "when": "weekly"}
    values["enabled"] = "on" if request.form.get("enabled") else ""
    errors: dict[str, str] = {}
    validate_announcement(values, errors)
    if "tier" not in errors:
        check_tier_allowed(values["tier"])
        check_tier_allowed(str(item.get("tier") or Tier.NORMAL.value))
    sched = validate_schedule(values, errors)
    if errors:
        errors.setdefault("form", "Chưa lưu được: vui lòng sửa các mục được đánh dấu bên dưới.")
        return _schedule_page(schedule_id, item, values, errors, 400)
    waits = needs_approval(values["tier"])
    data = schedule_data(values, sched, approval=Approval.PENDING.value if waits else Approval.APPROVED.value)
    data["enabled"] = bool(values["enabled"])
    try:
        scheduler().update_schedule(schedule_id, data)
    except SCHEDULING_ERRORS as exc:
        service_error_to_form(exc, errors, "Không lưu được")
        return _schedule_page(schedule_id, item, values, errors, 400)
    flash("Đã lưu lịch phát." + (" Lịch đang chờ người phê duyệt." if waits else ""), "ok")
    return redirect(url_for("ui.schedule"))


@bp.route("/schedule/<id:schedule_id>/delete", methods=["POST"])
@roles_required(Role.EDITOR.value, Role.APPROVER.value)
def schedule_delete(schedule_id: int) -> Any:
    item = _get_schedule(schedule_id)
    check_tier_allowed(str(item.get("tier") or Tier.NORMAL.value))
    try:
        scheduler().delete_schedule(schedule_id)
    except SCHEDULING_ERRORS as exc:
        flash(f"Không xóa được: {error_text(exc)}", "error")
    else:
        flash(f"Đã xóa lịch phát «{item.get('title') or item.get('name') or schedule_id}».", "ok")
    return redirect(url_for("ui.schedule"))

"""The schedule: a week of airings (one-off items and recurring bulletins), the list of recurring
bulletins, and editing or deleting one.

Each airing of the week says what became of it, in the words of the one label table: aired (the
broadcast's state), missed, or planned (or waiting for an approver). A recurring bulletin shows no
airing before it was created, and airings that share a minute and clusters are marked."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for

from broadcaster.broadcasts.views import approval_label, broadcast_state_label, tier_label
from broadcaster.domain import Tier
from broadcaster.models import Approval, BroadcastState, Role
from broadcaster.web.auth import current_user, has_role, login_required, roles_required
from broadcaster.web.engines import voice_groups
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
from broadcaster.web.ui.clashes import clash_warning, mark_clashes
from broadcaster.web.ui.compose import targets_summary, tier_choices
from broadcaster.web.ui.forms import (
    RECURRING,
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


def airing_status(item: dict[str, Any], at: datetime) -> tuple[str, str]:
    """(state key for the look, Vietnamese label) of one airing of the week view."""
    if item.get("broadcast_id") is not None and item.get("state"):
        return str(item["state"]), broadcast_state_label(item["state"])
    if at < now():  # the time came and no broadcast was made: it did not air
        return BroadcastState.MISSED.value, broadcast_state_label(BroadcastState.MISSED.value)
    approval = item.get("approval")
    if approval in (Approval.PENDING.value, Approval.REJECTED.value):
        return "pending_approval" if approval == Approval.PENDING.value else "cancelled", approval_label(
            approval
        )
    return BroadcastState.SCHEDULED.value, broadcast_state_label(BroadcastState.SCHEDULED.value)


def _since_creation(airings: list[dict[str, Any]], created: dict[int, datetime]) -> list[dict[str, Any]]:
    """Drop the airings a recurring bulletin's timetable gives for times before the bulletin
    existed (they never were due); what actually aired is always kept."""
    kept = []
    for item in airings:
        at = parse_time(item.get("at"))
        born = created.get(item.get("schedule_id") or 0)
        if item.get("broadcast_id") is None and at is not None and born is not None and at < born:
            continue
        kept.append(item)
    return kept


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
    ordered = sorted(airings, key=lambda a: parse_time(a.get("at")) or now())
    clashes = mark_clashes(ordered)
    for index, item in enumerate(ordered):
        at = parse_time(item.get("at"))
        if at is None:
            continue
        local = at.astimezone(zone)
        offset = (local.date() - start).days
        if 0 <= offset < 7:
            state, label = airing_status(item, at)
            days[offset]["airings"].append(
                {
                    **item,
                    "time": local.strftime("%H:%M"),
                    "targets_text": describe_targets(item.get("targets"), names),
                    "tier_label": tier_label(item.get("tier")),
                    "past": at < now(),
                    "status": state,
                    "status_label": label,
                    "clash_with": clashes.get(index, []),
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
    created = {int(s["id"]): born for s in schedules if (born := parse_time(s.get("created"))) is not None}
    airings = _since_creation(airings, created)
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
            voice_groups=voice_groups(services().speech),
            tiers=tier_choices(),
            weekdays=WEEKDAYS,
            max_repeat=repeat_limit(),
            max_chars=services().settings.textnorm.max_chars,
            targets_summary=targets_summary(values["targets"])[0],
        ),
        status,
    )


@bp.route("/schedule/<id:schedule_id>", methods=["GET", "POST"])
@login_required
def schedule_edit(schedule_id: int) -> Any:
    item = _get_schedule(schedule_id)
    if item.get("channel") is not None:  # a relay schedule has its own form
        return redirect(url_for("ui.relay_schedule_edit", schedule_id=schedule_id), 307)
    if request.method == "GET":
        return _schedule_page(schedule_id, item, schedule_values(item), {})
    if not has_role(current_user(), Role.EDITOR.value, Role.APPROVER.value):
        abort(403, description="Tài khoản của bạn không có quyền sửa lịch phát.")
    values = {**schedule_values(item), **form_values(request.form)}
    if values["when"] not in RECURRING:
        values["when"] = "weekly"
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
    warning = clash_warning(schedule_id=schedule_id)
    if warning:
        flash(warning, "warn")
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

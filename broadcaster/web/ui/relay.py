"""«Tiếp sóng kênh …»: relay a channel now, once at a time, or every week (a relay schedule, e.g.
VOV1 news every day 6:00 for 30 minutes), and edit a relay schedule.

The form is checked by the one announcement validator (``check_stream``: channel, duration, tier,
targets) and the scheduler's spec, as the API's relays are; an editor's normal relay waits for an
approver like any item. Channels are defined by an admin (``channels.py``)."""

from __future__ import annotations

import logging
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for

from broadcaster.broadcasts import AnnouncementInvalid
from broadcaster.domain import ALL_TARGETS, Source, Tier, nfc
from broadcaster.models import Approval, Role
from broadcaster.web.auth import current_user, has_role, login_required, roles_required
from broadcaster.web.ui import (
    SCHEDULING_ERRORS,
    WEEKDAYS,
    bp,
    check_tier_allowed,
    error_text,
    needs_approval,
    scheduler,
    services,
    user_name,
    zones_with_speakers,
)
from broadcaster.web.ui.compose import tier_choices
from broadcaster.web.ui.forms import collapsed_targets, schedule_values, validate_schedule

_LOGGER = logging.getLogger(__name__)

# The validator's and the scheduler's field names -> the form's.
_FIELDS = {"duration_s": "duration", "until": "duration", "at": "date", "time": "weekly_time"}
WHEN_CHOICES = (
    ("now", "Ngay bây giờ"),
    ("once", "Một lần, vào lúc"),
    ("daily", "Hằng ngày"),
    ("weekly", "Các ngày trong tuần"),
)
# The choices that make a relay schedule (the others a relay item).
_RECURRING = ("daily", "weekly")


def _values(form: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    values = dict(base or {})
    values.update(
        channel=form.get("channel", ""),
        title=nfc(form.get("title", "")),
        tier=form.get("tier", Tier.NORMAL.value),
        targets=form.getlist("targets"),
        duration=form.get("duration", "").strip(),
        when=form.get("when", "now"),
        date=form.get("date", ""),
        time=form.get("time", ""),
        days=form.getlist("days"),
        weekly_time=form.get("weekly_time", ""),
        valid_from=form.get("valid_from", ""),
        valid_to=form.get("valid_to", ""),
        enabled=form.get("enabled", ""),
    )
    return values


def _blank() -> dict[str, Any]:
    return {
        "channel": "", "title": "", "tier": Tier.NORMAL.value, "targets": [ALL_TARGETS], "duration": "30",
        "when": "now", "date": "", "time": "", "days": [], "weekly_time": "", "valid_from": "",
        "valid_to": "", "enabled": "on",
    }  # fmt: skip


def _page(
    values: dict[str, Any], errors: dict[str, str], *, schedule_id: int | None = None, status: int = 200
) -> Any:
    channels = [
        c for c in services().broadcasts.channels.list() if c["enabled"] or str(c["id"]) == values["channel"]
    ]
    return (
        render_template(
            "relay.html",
            values=values,
            errors=errors,
            channels=channels,
            zones=zones_with_speakers(),
            tiers=tier_choices(),
            weekdays=WEEKDAYS,
            whens=WHEN_CHOICES if schedule_id is None else WHEN_CHOICES[2:],
            recurring=_RECURRING,
            schedule_id=schedule_id,
        ),
        status,
    )


def _seconds(values: dict[str, Any], errors: dict[str, str]) -> float | None:
    text = values["duration"].replace(",", ".")
    try:
        minutes = float(text)
    except ValueError:
        errors["duration"] = "Vui lòng nhập thời lượng tiếp sóng (số phút)."
        return None
    return minutes * 60


def _channel(values: dict[str, Any], errors: dict[str, str]) -> int | None:
    if not values["channel"].isdigit():
        errors["channel"] = "Vui lòng chọn kênh tiếp sóng."
        return None
    return int(values["channel"])


def _to_form(exc: BaseException, errors: dict[str, str]) -> None:
    found = getattr(exc, "errors", None) or {getattr(exc, "field", None) or "form": error_text(exc)}
    for field, message in found.items():
        errors.setdefault(_FIELDS.get(str(field), str(field)), message)


def _schedule_data(
    values: dict[str, Any], sched: dict[str, Any], channel: int, seconds: float
) -> dict[str, Any]:
    days = sched["days"]
    return {
        "title": values["title"].strip(),
        "tier": values["tier"],
        "targets": list(collapsed_targets(values)),
        "kind": "daily" if len(days) == 7 else "weekly",
        "time": sched["time"],
        "days": None if len(days) == 7 else list(days),
        "valid_from": sched["valid_from"].isoformat() if sched["valid_from"] else None,
        "valid_to": sched["valid_to"].isoformat() if sched["valid_to"] else None,
        "channel": channel,
        "duration_s": seconds,
        "approval": Approval.PENDING.value if needs_approval(values["tier"]) else Approval.APPROVED.value,
    }


@bp.route("/relay", methods=["GET", "POST"])
@roles_required(Role.EDITOR.value, Role.APPROVER.value)
def relay() -> Any:
    if request.method == "GET":
        values = _blank()
        if request.args.get("channel", "").isdigit():
            values["channel"] = request.args["channel"]
        return _page(values, {})
    values = _values(request.form, _blank())
    errors: dict[str, str] = {}
    if values["tier"] not in {t.value for t in Tier}:
        errors["tier"] = "Mức độ không hợp lệ."
    else:
        check_tier_allowed(values["tier"])
    channel, seconds = _channel(values, errors), _seconds(values, errors)
    sched = validate_schedule(values, errors) if values["when"] in ("once", *_RECURRING) else {}
    if values["when"] not in dict(WHEN_CHOICES):
        errors["when"] = "Vui lòng chọn khi nào tiếp sóng."
    if errors:
        errors.setdefault("form", "Chưa tiếp sóng được: vui lòng sửa các mục được đánh dấu bên dưới.")
        return _page(values, errors, status=400)
    assert channel is not None and seconds is not None
    waits = needs_approval(values["tier"])
    found = services()
    try:
        if values["when"] in _RECURRING:
            schedule_id = scheduler().create_schedule(
                _schedule_data(values, sched, channel, seconds), author=user_name()
            )
            _LOGGER.info("relay schedule %s created by %s", schedule_id, user_name())
            flash("Đã tạo lịch tiếp sóng." + (" Lịch đang chờ người phê duyệt." if waits else ""), "ok")
            return redirect(url_for("ui.schedule"))
        checked = found.validator.check_stream(
            channel=channel,
            duration_s=seconds,
            tier=values["tier"],
            targets=list(collapsed_targets(values)) or None,
            title=values["title"],
            at=sched.get("at"),
            max_s=found.settings.live.relay_max_s,
            channel_lookup=found.broadcasts.channels.usable,
        )
        broadcast_id = found.broadcasts.submit_stream(
            checked, author=user_name(), source=Source.WEB, approved=not waits
        )
    except (AnnouncementInvalid, *SCHEDULING_ERRORS) as exc:
        _to_form(exc, errors)
        errors.setdefault("form", f"Chưa tiếp sóng được: {error_text(exc)}")
        return _page(values, errors, status=400)
    _LOGGER.info("relay %s of channel %s by %s", broadcast_id, channel, user_name())
    flash(
        f"Đã gửi lệnh tiếp sóng kênh «{checked.channel_name}»."
        + (" Lượt phát đang chờ người phê duyệt." if waits else ""),
        "ok",
    )
    return redirect(url_for("ui.broadcast_detail", broadcast_id=broadcast_id))


@bp.route("/relay/schedule/<int:schedule_id>", methods=["GET", "POST"])
@login_required
def relay_schedule_edit(schedule_id: int) -> Any:
    try:
        item = scheduler().get_schedule(schedule_id)
    except SCHEDULING_ERRORS:
        item = None
    if not item or item.get("channel") is None:
        abort(404, description="Không tìm thấy lịch tiếp sóng này.")
    base = {
        **_blank(),
        **schedule_values(item),
        "channel": str(item["channel"]),
        "duration": f"{(item.get('duration_s') or 0) / 60:g}",
        "when": "daily" if item.get("kind") == "daily" else "weekly",
    }
    if request.method == "GET":
        return _page(base, {}, schedule_id=schedule_id)
    if not has_role(current_user(), Role.EDITOR.value, Role.APPROVER.value):
        abort(403, description="Tài khoản của bạn không có quyền sửa lịch phát.")
    values = _values(request.form, base)
    if values["when"] not in _RECURRING:
        values["when"] = "weekly"
    values["enabled"] = "on" if request.form.get("enabled") else ""
    errors: dict[str, str] = {}
    check_tier_allowed(str(item.get("tier") or Tier.NORMAL.value))
    if values["tier"] in {t.value for t in Tier}:
        check_tier_allowed(values["tier"])
    channel, seconds = _channel(values, errors), _seconds(values, errors)
    sched = validate_schedule(values, errors)
    if errors:
        errors.setdefault("form", "Chưa lưu được: vui lòng sửa các mục được đánh dấu bên dưới.")
        return _page(values, errors, schedule_id=schedule_id, status=400)
    assert channel is not None and seconds is not None
    data = {**_schedule_data(values, sched, channel, seconds), "enabled": bool(values["enabled"])}
    try:
        scheduler().update_schedule(schedule_id, data)
    except SCHEDULING_ERRORS as exc:
        _to_form(exc, errors)
        errors.setdefault("form", f"Không lưu được: {error_text(exc)}")
        return _page(values, errors, schedule_id=schedule_id, status=400)
    flash("Đã lưu lịch tiếp sóng.", "ok")
    return redirect(url_for("ui.schedule"))

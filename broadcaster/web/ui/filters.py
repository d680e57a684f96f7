"""Template filters and globals of the officer UI. Every state is named through the one label
table (``broadcaster.broadcasts.views``); this module adds only the look (pill colours) and the
Vietnamese ways of writing times and numbers."""

from __future__ import annotations

from typing import Any

from flask import g, url_for

from broadcaster.broadcasts import views
from broadcaster.models import Role
from broadcaster.speech import ENGINE_LABELS_VI
from broadcaster.web.auth import csrf_token, current_user, has_role
from broadcaster.web.ui import WEEKDAYS, bp, describe_targets, fmt_local, now, parse_time, services
from broadcaster.web.users import ROLE_LABELS_VI, list_users

# CSS class of a state pill: ok (green), run (blue), wait (grey), warn (amber), bad (red).
STATE_CLASS = {
    "done": "ok",
    "playing": "run",
    "sending": "run",
    "rendering": "run",
    "sent": "run",
    "received": "run",
    "scheduled": "wait",
    "pending": "wait",
    "pending_approval": "warn",
    "partial": "warn",
    "interrupted": "warn",
    "preempted": "warn",
    "stopped": "warn",
    "cancelled": "wait",
    "expired": "warn",
    "missed": "bad",
    "failed": "bad",
}
# What a cluster measured while playing (RMS, dB below full scale) in words an officer reads: more
# than this many dB under the audio's loudness target sounds clearly quieter than the others ...
QUIETER_BELOW_TARGET_DB = 10.0
# ... and below this level speech is barely audible from a loudspeaker horn.
SILENT_BELOW_DBFS = -50.0


@bp.app_template_filter("localtime")
def localtime(value: Any, fmt: str = "%H:%M %d/%m/%Y") -> str:
    return fmt_local(value, fmt)


@bp.app_template_filter("ago")
def ago(value: Any) -> str:
    dt = parse_time(value)
    if dt is None:
        return "chưa có"
    seconds = int((now() - dt).total_seconds())
    if seconds < 5:
        return "vừa xong"
    if seconds < 60:
        return f"{seconds} giây trước"
    if seconds < 3600:
        return f"{seconds // 60} phút trước"
    if seconds < 86400:
        return f"{seconds // 3600} giờ trước"
    return fmt_local(dt, "%H:%M %d/%m/%Y")


bp.add_app_template_filter(views.tier_label, "tier_label")
bp.add_app_template_filter(views.broadcast_state_label, "state_label")
bp.add_app_template_filter(views.delivery_state_label, "delivery_label")
bp.add_app_template_filter(views.approval_label, "approval_label")
bp.add_app_template_filter(views.schedule_kind_label, "schedule_kind_label")


@bp.app_template_filter("state_class")
def state_class(value: Any) -> str:
    return STATE_CLASS.get(str(value), "wait")


@bp.app_template_filter("engine_label")
def engine_label(value: Any) -> str:
    return ENGINE_LABELS_VI.get(str(value or ""), str(value or ""))


@bp.app_template_filter("loudness")
def loudness(rms_dbfs: Any) -> str:
    """A cluster's measured level as words: "Bình thường", "Nhỏ hơn bình thường", "Gần như im lặng"."""
    try:
        level = float(rms_dbfs)
    except (TypeError, ValueError):
        return "–"
    if level < SILENT_BELOW_DBFS:
        return "Gần như im lặng"
    if level < services().settings.audio.target_lufs - QUIETER_BELOW_TARGET_DB:
        return "Nhỏ hơn bình thường"
    return "Bình thường"


@bp.app_template_filter("seconds")
def seconds_filter(value: Any) -> str:
    if value is None or value == "":
        return "–"
    try:
        total = int(round(float(value)))
    except (TypeError, ValueError):
        return "–"
    return f"{total // 60}:{total % 60:02d}" if total >= 60 else f"{total} giây"


@bp.app_template_filter("vnnum")
def vnnum(value: Any, digits: int = 1) -> str:
    """A number as Vietnamese write it: decimal comma ("1,5"), no trailing ",0"; whole numbers
    (``digits=0``) with a dot between thousands ("12.000")."""
    try:
        number = round(float(value), digits)
    except (TypeError, ValueError):
        return "–"
    if not digits:
        return f"{int(number):,}".replace(",", ".")
    text = f"{number:.{digits}f}".rstrip("0").rstrip(".")
    return text.replace(".", ",")


def _display_names() -> dict[str, str]:
    names = g.get("loa_display_names")
    if names is None:
        names = {u.username: u.display_name for u in list_users(services().sessions)}
        g.loa_display_names = names
    return names


@bp.app_template_filter("author_label")
def author_label(value: Any) -> str:
    """Who wrote it, as a person reads it: an officer's full name (not the login), a program that
    sends through the API by its token's name, the schedules as such."""
    author = str(value or "")
    if not author:
        return ""
    if author.startswith("api:"):
        return f"phần mềm «{author[4:]}»"
    return _display_names().get(author, author)


@bp.app_template_filter("who_hears")
def who_hears(value: Any) -> str:
    """Who will hear it, in words, from the one target resolver: "3 cụm loa ở Thôn Đông"."""
    targets = list(value) if isinstance(value, list | tuple) else [value] if value else []
    return str(services().targets.describe(targets))


@bp.app_template_filter("targets_label")
def targets_label(value: Any) -> str:
    return describe_targets(value if isinstance(value, list | tuple) else [value] if value else [])


@bp.app_template_filter("schedule_when")
def schedule_when(item: Any) -> str:
    """ "Thứ Hai, Thứ Tư lúc 06:30" for a schedule dict or row."""

    def get(key: str) -> Any:
        return item.get(key) if isinstance(item, dict) else getattr(item, key, None)

    kind, at_time = get("kind"), get("time") or ""
    days = get("days") or []
    if isinstance(days, str):
        days = [d for d in days.split(",") if d]
    names = dict(WEEKDAYS)
    if kind == "weekly":
        text = ", ".join(names.get(d, d) for d in days) + f" lúc {at_time}"
    elif kind == "once":
        text = "Một lần lúc " + fmt_local(get("at") or get("run_at"), "%H:%M %d/%m/%Y")
    elif kind in ("daily", "weekdays"):
        text = f"{views.schedule_kind_label(kind)} lúc {at_time}"
    else:  # a crontab line is no officer's reading: say only that it has its own timetable
        text = views.schedule_kind_label(kind)
    valid_from, valid_to = get("valid_from"), get("valid_to")
    if valid_from:
        text += ", từ " + fmt_local(valid_from, "%d/%m/%Y")
    if valid_to:
        text += ", đến hết " + fmt_local(valid_to, "%d/%m/%Y")
    return text


def _nav() -> list[dict[str, Any]]:
    user = current_user()
    if user is None:
        return []
    items = [
        ("ui.dashboard", "Tổng quan"),
        ("ui.compose", "Soạn thông báo"),
        ("ui.schedule", "Lịch phát"),
        ("ui.approvals", "Chờ duyệt"),
        ("ui.log", "Nhật ký"),
        ("ui.lexicon", "Từ điển"),
    ]
    if has_role(user, Role.APPROVER.value):
        items.append(("ui.live_page", "Phát trực tiếp"))
    if user.role == Role.ADMIN.value:
        items += [
            ("ui.channels", "Kênh tiếp sóng"),
            ("ui.speakers", "Loa và khu vực"),
            ("ui.users", "Người dùng"),
            ("ui.settings_page", "Cài đặt"),
        ]
    return [{"endpoint": e, "label": label, "url": url_for(e)} for e, label in items]


@bp.app_context_processor
def _template_globals() -> dict[str, Any]:
    user = current_user()
    return {
        "csrf_token": csrf_token,
        "current_user": user,
        "nav_items": _nav(),
        "can": lambda *roles: has_role(user, *roles),
        "role_labels": ROLE_LABELS_VI,
        "poll_ms": int(services().settings.web.poll_interval_s * 1000),
    }

"""The officer's web interface (Vietnamese): one blueprint, ``ui``, split by area.

- ``dashboard``: clusters live, recent items, notices about voices set aside, stop, volume.
- ``compose``: the compose form, who hears it, the preview, jobs and audio; ``voices``: a voice's
  sample; ``imports``: documents and recordings.
- ``approvals``: items and schedules waiting for an approver (who can listen first); a broadcast's
  page (it refreshes itself) and its cancel.
- ``schedule``: the week view and editing a recurring bulletin.
- ``log``: the broadcast log, minutes aired, CSV exports (plain or for Excel).
- ``lexicon``: the officers' readings and their approval; ``admin``: speakers and zones, users,
  account, settings; ``enroll``: a cluster's agent.yaml through a one-time link and its QR code.
- ``live``: «Phát trực tiếp» (live speech); ``relay``: «Tiếp sóng» (relay a channel now, at a time,
  every week); ``channels``: the relay channels (admins).
- ``forms`` (form parsing and checks), ``filters`` (template filters and globals), ``jobs`` (the
  worker pool for slow work a page waits on), ``preview`` (the preview's text), ``clashes`` (two
  bulletins at one time on the same clusters) hold no routes.

Server-rendered Jinja pages with a little plain JavaScript from /static. The views only call the
services (``broadcasts``, ``scheduler``, ``fleet``, ``speech``, the registry, ``reports`` and the
read-only ``broadcasts.views``); they hold no broadcast logic and no database query of their own.

This module holds the blueprint and the tiny helpers every area shares. The area modules are
imported at the bottom: importing one registers its routes on ``bp`` (endpoint names stay
``ui.<function>``, which the templates' ``url_for`` use).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, current_app

from broadcaster.broadcasts import BroadcastError
from broadcaster.broadcasts.views import BroadcastViews
from broadcaster.domain import ALL_TARGETS, Tier
from broadcaster.fleet.registry import Registry
from broadcaster.lexicon import Lexicon
from broadcaster.models import Role
from broadcaster.reports import Reports
from broadcaster.runtime_settings import RuntimeSettings
from broadcaster.scheduling import ScheduleError
from broadcaster.web import services_of
from broadcaster.web.auth import current_user, has_role
from broadcaster.web.engines import engine_choices as engines_of

if TYPE_CHECKING:
    from broadcaster.services import Services

_LOGGER = logging.getLogger(__name__)

bp = Blueprint("ui", __name__)

EDITOR_TIER_MESSAGE = (
    "Biên tập viên chỉ được soạn tin thông thường. Tin ưu tiên và tin khẩn cấp do người phê duyệt phát."
)
WEEKDAYS = (
    ("mon", "Thứ Hai"),
    ("tue", "Thứ Ba"),
    ("wed", "Thứ Tư"),
    ("thu", "Thứ Năm"),
    ("fri", "Thứ Sáu"),
    ("sat", "Thứ Bảy"),
    ("sun", "Chủ nhật"),
)
WEEKDAY_KEYS = tuple(k for k, _ in WEEKDAYS)
ALL_TARGETS_LABEL = "Tất cả loa"
NO_ZONE_LABEL = "Chưa có khu vực"

# Errors of the other parts that the views turn into messages next to a field or in a flash.
SCHEDULING_ERRORS: tuple[type[Exception], ...] = (ScheduleError, BroadcastError, ValueError)


# --- services ------------------------------------------------------------------------------------


def services() -> Services:
    return services_of(current_app)


def scheduler() -> Any:
    found = services().scheduler
    if found is None:
        abort(503, description="Chức năng hẹn giờ không chạy trên máy chủ này.")
    return found


def broadcast_views() -> BroadcastViews:
    return services().views


def officer_lexicon() -> Lexicon:
    return services().lexicon


def runtime_settings() -> RuntimeSettings:
    return services().runtime


def report_service() -> Reports:
    return services().reports


def registry() -> Registry:
    """The services' Registry facade (its change hooks tell the managed broker about new credentials)."""
    return services().registry


# --- time, people, errors ------------------------------------------------------------------------


def tz() -> ZoneInfo:
    return ZoneInfo(services().settings.timezone)


def now() -> datetime:
    return datetime.now(UTC)


def parse_time(value: Any) -> datetime | None:
    """A datetime from a datetime or an ISO 8601 string (naive means UTC)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    else:
        try:
            dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def fmt_local(value: Any, fmt: str) -> str:
    dt = parse_time(value)
    return "" if dt is None else dt.astimezone(tz()).strftime(fmt)


def user_name() -> str:
    user = current_user()
    return user.username if user else ""


def error_text(exc: BaseException) -> str:
    """The officer-facing text of another part's error (Vietnamese where it carries one)."""
    return str(getattr(exc, "message_vi", None) or getattr(exc, "message", None) or exc)


# ScheduleError.field -> the compose form field it belongs next to.
_SCHEDULE_FIELD = {
    "at": "date",
    "time": "weekly_time",
    "text": "text",
    "title": "title",
    "targets": "targets",
    "days": "days",
    "valid_from": "valid_from",
    "valid_to": "valid_to",
    "engine": "engine",
    "repeat": "repeat",
    "tier": "tier",
}


def service_error_to_form(exc: BaseException, errors: dict[str, str], prefix: str) -> None:
    field_name = _SCHEDULE_FIELD.get(str(getattr(exc, "field", "") or ""))
    if field_name:
        errors[field_name] = error_text(exc)
    errors["form"] = f"{prefix}: {error_text(exc)}"


# --- roles ---------------------------------------------------------------------------------------


def check_tier_allowed(tier: str) -> None:
    if tier != Tier.NORMAL.value and not has_role(current_user(), Role.APPROVER.value):
        abort(403, description=EDITOR_TIER_MESSAGE)


def needs_approval(tier: str) -> bool:
    """An editor's (normal) item waits for an approver unless the setting is off."""
    return not has_role(current_user(), Role.APPROVER.value) and runtime_settings().approval_required()


# --- the form's choices --------------------------------------------------------------------------


def repeat_limit() -> int:
    return services().validator.limits.max_repeat


def engine_choices() -> list[dict[str, Any]]:
    """Engines and their voices for the form (see ``broadcaster.web.engines``)."""
    return engines_of(services().speech)


def zones_with_speakers() -> list[dict[str, Any]]:
    """Zones in id order with their speakers; speakers without a zone come last."""
    reg = registry()
    groups: dict[str | None, dict[str, Any]] = {z["id"]: {**z, "speakers": []} for z in reg.list_zones()}
    for sp in reg.list_speakers():
        group = groups.get(sp["zone"])
        if group is None:
            group = groups.setdefault(
                None,
                {"id": None, "name": NO_ZONE_LABEL, "quiet_start": None, "quiet_end": None, "speakers": []},
            )
        group["speakers"].append({**sp, "zone_id": sp["zone"]})
    return list(groups.values())


def target_names() -> dict[str, str]:
    names = {ALL_TARGETS: ALL_TARGETS_LABEL}
    for group in zones_with_speakers():
        if group["id"]:
            names[group["id"]] = group["name"]
        for sp in group["speakers"]:
            names[sp["id"]] = sp["name"]
    return names


def describe_targets(targets: Iterable[str] | None, names: dict[str, str] | None = None) -> str:
    names = names if names is not None else target_names()
    items = list(targets or ())
    if not items or ALL_TARGETS in items:
        return ALL_TARGETS_LABEL
    return ", ".join(names.get(t, t) for t in items)


# Importing the areas registers their routes, filters and the job pool on ``bp``.
from broadcaster.web.ui import (  # noqa: E402
    admin,
    approvals,
    channels,
    compose,
    dashboard,
    enroll,
    filters,
    imports,
    jobs,
    lexicon,
    live,
    log,
    relay,
    schedule,
    upstream,
    voices,
)

__all__ = [
    "admin",
    "approvals",
    "bp",
    "channels",
    "compose",
    "dashboard",
    "enroll",
    "filters",
    "imports",
    "jobs",
    "lexicon",
    "live",
    "log",
    "relay",
    "schedule",
    "upstream",
    "voices",
]

"""The officer's web interface (Vietnamese): dashboard, compose, schedule, log, approvals,
lexicon, speakers and zones, users, settings.

Server-rendered Jinja pages with a little plain JavaScript from /static. Everything slow
(synthesis for a preview, converting an uploaded recording) runs on a small worker pool; the
page polls ``/jobs/<id>``. The views only call the services (``broadcasts``, ``scheduler``,
``fleet``, ``speech``, the registry and ``reports``); they hold no broadcast logic of their own.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from sqlalchemy import select

from broadcaster import documents, reports
from broadcaster.broadcasts import BroadcastError
from broadcaster.domain import ALL_TARGETS, Announcement, Source, Tier, nfc
from broadcaster.fleet.registry import RegistryError
from broadcaster.models import (
    Approval,
    BroadcastState,
    DeliveryState,
    LexiconEntry,
    Role,
    Schedule,
    Setting,
    Speaker,
    Zone,
)
from broadcaster.scheduling import ScheduleError
from broadcaster.speech import SpeechError
from broadcaster.textnorm import NormalizationError
from broadcaster.web import MAX_TITLE, max_repeat, services_of
from broadcaster.web.auth import (
    csrf_token,
    current_user,
    has_role,
    login_required,
    remember_password,
    roles_required,
    safe_next,
)
from broadcaster.web.engines import engine_choices as engines_of
from broadcaster.web.engines import unknown_engine
from broadcaster.web.users import (
    ROLE_LABELS_VI,
    UserError,
    add_user,
    check_password,
    list_users,
    set_password,
    update_user,
)

if TYPE_CHECKING:
    from broadcaster.services import Services

_LOGGER = logging.getLogger(__name__)

bp = Blueprint("ui", __name__)

JOBS_KEY = "loa_jobs"
NORMALIZER_KEY = "loa_normalizer"
_AUDIO_KEY_RE = re.compile(r"^[0-9a-f]{64}$")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TIME_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
RECORDING_EXTS = (".mp3", ".wav", ".webm", ".ogg", ".oga", ".m4a")

BROADCAST_STATE_VI = {
    BroadcastState.SCHEDULED.value: "Đã hẹn giờ",
    BroadcastState.PENDING_APPROVAL.value: "Chờ duyệt",
    BroadcastState.RENDERING.value: "Đang tạo âm thanh",
    BroadcastState.SENDING.value: "Đang gửi tới loa",
    BroadcastState.PLAYING.value: "Đang phát",
    BroadcastState.DONE.value: "Đã phát xong",
    BroadcastState.PARTIAL.value: "Phát chưa đủ",
    BroadcastState.INTERRUPTED.value: "Bị ngắt",
    BroadcastState.CANCELLED.value: "Đã hủy",
    BroadcastState.MISSED.value: "Bỏ lỡ",
    BroadcastState.FAILED.value: "Lỗi",
    "rejected": "Bị từ chối",
}
DELIVERY_STATE_VI = {
    DeliveryState.PENDING.value: "Đang chờ",
    DeliveryState.SENT.value: "Đã gửi",
    DeliveryState.RECEIVED.value: "Đã nhận",
    DeliveryState.SCHEDULED.value: "Chờ đến giờ",
    DeliveryState.PLAYING.value: "Đang phát",
    DeliveryState.DONE.value: "Đã phát xong",
    DeliveryState.FAILED.value: "Lỗi",
    DeliveryState.PREEMPTED.value: "Bị ngắt",
    DeliveryState.STOPPED.value: "Bị dừng",
    DeliveryState.EXPIRED.value: "Hết hiệu lực",
    DeliveryState.MISSED.value: "Bỏ lỡ",
    DeliveryState.CANCELLED.value: "Đã hủy",
}
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
    "rejected": "bad",
}
TIER_HELP_VI = {
    Tier.NORMAL.value: "Phát theo lượt, sau các tin đang phát.",
    Tier.PRIORITY.value: "Phát trước các tin thông thường đang chờ.",
    Tier.EMERGENCY.value: "Ngắt mọi tin đang phát và phát ngay lập tức.",
}
WEEKDAYS = (
    ("mon", "Thứ Hai"),
    ("tue", "Thứ Ba"),
    ("wed", "Thứ Tư"),
    ("thu", "Thứ Năm"),
    ("fri", "Thứ Sáu"),
    ("sat", "Thứ Bảy"),
    ("sun", "Chủ nhật"),
)
_WEEKDAY_KEYS = tuple(k for k, _ in WEEKDAYS)
ALERT_KIND_VI = {
    "offline": "Mất kết nối",
    "amplifier": "Bộ khuếch đại",
    "error": "Lỗi",
    "stale": "Lâu không báo cáo",
}
EDITOR_TIER_MESSAGE = (
    "Biên tập viên chỉ được soạn tin thông thường. Tin ưu tiên và tin khẩn cấp do người phê duyệt phát."
)


# --- small helpers ------------------------------------------------------------------------


def _services() -> Services:
    return services_of(current_app)


# Errors of the other parts that the views turn into messages next to a field or in a flash.
SCHEDULING_ERRORS: tuple[type[Exception], ...] = (ScheduleError, BroadcastError, ValueError)


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


def _service_error_to_form(exc: BaseException, errors: dict[str, str], prefix: str) -> None:
    field_name = _SCHEDULE_FIELD.get(str(getattr(exc, "field", "") or ""))
    if field_name:
        errors[field_name] = error_text(exc)
    errors["form"] = f"{prefix}: {error_text(exc)}"


def _scheduler() -> Any:
    scheduler = _services().scheduler
    if scheduler is None:
        abort(503, description="Chức năng hẹn giờ không chạy trên máy chủ này.")
    return scheduler


def _max_repeat() -> int:
    return max_repeat(_services().settings)


def _tz() -> ZoneInfo:
    return ZoneInfo(_services().settings.timezone)


def _now() -> datetime:
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


def _fmt_local(value: Any, fmt: str) -> str:
    dt = parse_time(value)
    return "" if dt is None else dt.astimezone(_tz()).strftime(fmt)


def _user_name() -> str:
    user = current_user()
    return user.username if user else ""


def approval_required() -> bool:
    """The admin's setting when saved, else the configured default."""
    services = _services()
    with services.sessions() as session:
        row = session.get(Setting, "approval_required")
    if row is not None and isinstance(row.value, bool):
        return row.value
    return services.settings.web.approval_required


def _set_setting(key: str, value: Any) -> None:
    with _services().sessions() as session, session.begin():
        row = session.get(Setting, key)
        if row is None:
            session.add(Setting(key=key, value=value))
        else:
            row.value = value


def lexicon_overrides() -> dict[str, str]:
    """``{term: reading}`` of the officers' lexicon, passed to every preview and render."""
    with _services().sessions() as session:
        return {e.term: e.reading for e in session.scalars(select(LexiconEntry).order_by(LexiconEntry.term))}


def _base_normalizer() -> Any:
    services = _services()
    existing = getattr(services, "normalizer", None)
    if existing is not None:
        return existing
    cached = current_app.extensions.get(NORMALIZER_KEY)
    if cached is None:
        from broadcaster.textnorm import Normalizer

        cached = Normalizer.from_config(services.settings.textnorm)
        current_app.extensions[NORMALIZER_KEY] = cached
    return cached


def preview_segments(text: str, overrides: dict[str, str]) -> tuple[str, list[dict[str, Any]]]:
    """The normalized text and its pieces: ``{"text": spoken, "original": str | None}``; pieces
    the normalizer changed carry their original (the page shows them as <mark>)."""
    normalizer = _base_normalizer()
    if overrides:
        normalizer = normalizer.with_overrides(overrides)
    result = normalizer.analyze(text)
    tokens = list(getattr(result, "tokens", ()) or ())
    spoken_text = str(result.text)
    pieces = [(str(t.spoken), str(t.original), bool(t.changed)) for t in tokens]
    segments: list[dict[str, Any]] = []
    if pieces and "".join(p[0] for p in pieces) == spoken_text:
        for spoken, original, changed in pieces:
            segments.append({"text": spoken, "original": original if changed else None})
    elif pieces:
        # Tokens without the spacing between them: locate each spoken piece in the text in order.
        pos = 0
        for spoken, original, changed in pieces:
            at = spoken_text.find(spoken, pos) if spoken else -1
            if at < 0:
                continue
            if at > pos:
                segments.append({"text": spoken_text[pos:at], "original": None})
            segments.append({"text": spoken, "original": original if changed else None})
            pos = at + len(spoken)
        if pos < len(spoken_text):
            segments.append({"text": spoken_text[pos:], "original": None})
    else:
        segments.append({"text": spoken_text, "original": None})
    merged: list[dict[str, Any]] = []
    for seg in segments:  # join neighbouring unchanged pieces: fewer DOM nodes
        if merged and seg["original"] is None and merged[-1]["original"] is None:
            merged[-1]["text"] += seg["text"]
        else:
            merged.append(dict(seg))
    return spoken_text, merged


def engine_choices() -> list[dict[str, Any]]:
    """Engines and their voices for the form (see ``broadcaster.web.engines``)."""
    return engines_of(_services().speech)


def zones_with_speakers() -> list[dict[str, Any]]:
    """Zones in name order with their speakers; speakers without a zone come last."""
    with _services().sessions() as session:
        zones = list(session.scalars(select(Zone).order_by(Zone.id)))
        speakers = list(session.scalars(select(Speaker).order_by(Speaker.id)))
        groups: dict[str | None, dict[str, Any]] = {
            z.id: {
                "id": z.id,
                "name": z.name,
                "quiet_start": z.quiet_start,
                "quiet_end": z.quiet_end,
                "speakers": [],
            }
            for z in zones
        }
        for sp in speakers:
            group = groups.get(sp.zone_id)
            if group is None:
                group = groups.setdefault(
                    None,
                    {
                        "id": None,
                        "name": "Chưa có khu vực",
                        "quiet_start": None,
                        "quiet_end": None,
                        "speakers": [],
                    },
                )
            group["speakers"].append(
                {
                    "id": sp.id,
                    "name": sp.name,
                    "location": sp.location,
                    "zone_id": sp.zone_id,
                    "enabled": sp.enabled,
                }
            )
    return list(groups.values())


def _target_names() -> dict[str, str]:
    names = {ALL_TARGETS: "Tất cả loa"}
    for group in zones_with_speakers():
        if group["id"]:
            names[group["id"]] = group["name"]
        for sp in group["speakers"]:
            names[sp["id"]] = sp["name"]
    return names


def describe_targets(targets: Iterable[str] | None, names: dict[str, str] | None = None) -> str:
    names = names if names is not None else _target_names()
    items = list(targets or ())
    if not items or ALL_TARGETS in items:
        return "Tất cả loa"
    return ", ".join(names.get(t, t) for t in items)


# --- preview and upload jobs --------------------------------------------------------------


@dataclass
class Job:
    id: str
    owner: int
    kind: str
    created: float
    future: Future[dict[str, Any]]
    finished: float | None = field(default=None)


class JobRunner:
    """A small pool for slow work a page waits on; jobs are visible only to their owner and
    forgotten ``ttl_s`` after they finish."""

    def __init__(self, workers: int, ttl_s: float = 900.0) -> None:
        self.workers = workers
        self.ttl_s = ttl_s
        self._executor: ThreadPoolExecutor | None = None
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def submit(self, owner: int, kind: str, fn: Callable[[], dict[str, Any]]) -> str:
        with self._lock:
            if self._executor is None:  # threads start on first use, never in the app factory
                self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="loa-web-job")
            self._prune()
            job_id = secrets.token_urlsafe(12)
            future = self._executor.submit(fn)
            job = Job(job_id, owner, kind, time.monotonic(), future)
            self._jobs[job_id] = job
        future.add_done_callback(lambda _f: setattr(job, "finished", time.monotonic()))
        return job_id

    def status(self, job_id: str, owner: int) -> dict[str, Any] | None:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None or job.owner != owner:
            return None
        elapsed = round(time.monotonic() - job.created, 1)
        if not job.future.done():
            return {"state": "running", "kind": job.kind, "elapsed_s": elapsed}
        exc = job.future.exception()
        if exc is not None:
            return {
                "state": "error",
                "kind": job.kind,
                "error": _job_error_message(exc),
                "elapsed_s": elapsed,
            }
        return {"state": "done", "kind": job.kind, "elapsed_s": elapsed, **job.future.result()}

    def _prune(self) -> None:
        now = time.monotonic()
        for key in [
            k for k, j in self._jobs.items() if j.finished is not None and now - j.finished > self.ttl_s
        ]:
            del self._jobs[key]

    def shutdown(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True, cancel_futures=True)
                self._executor = None


def _job_error_message(exc: BaseException) -> str:
    if isinstance(exc, SpeechError | NormalizationError):
        return f"Không tạo được âm thanh: {error_text(exc)}"
    _LOGGER.error("web job failed", exc_info=exc)
    return "Không tạo được âm thanh do lỗi hệ thống. Vui lòng thử lại."


@bp.record_once
def _setup(state: Any) -> None:
    services = state.app.extensions["loa"]
    state.app.extensions.setdefault(JOBS_KEY, JobRunner(services.settings.web.preview_workers))


def jobs() -> JobRunner:
    return current_app.extensions[JOBS_KEY]


def _render_result_json(result: Any) -> dict[str, Any]:
    key = str(result.key)
    return {
        "key": key,
        "duration_s": round(float(result.duration_s), 1),
        "engine": getattr(result, "engine", None),
        "voice": getattr(result, "voice", None),
        "cache_hit": bool(getattr(result, "cache_hit", False)),
        "normalized_text": getattr(result, "normalized_text", None),
    }


# --- template helpers ---------------------------------------------------------------------


@bp.app_template_filter("localtime")
def _localtime_filter(value: Any, fmt: str = "%H:%M %d/%m/%Y") -> str:
    return _fmt_local(value, fmt)


@bp.app_template_filter("ago")
def _ago_filter(value: Any) -> str:
    return ago(value)


def ago(value: Any) -> str:
    dt = parse_time(value)
    if dt is None:
        return "chưa có"
    seconds = int((_now() - dt).total_seconds())
    if seconds < 5:
        return "vừa xong"
    if seconds < 60:
        return f"{seconds} giây trước"
    if seconds < 3600:
        return f"{seconds // 60} phút trước"
    if seconds < 86400:
        return f"{seconds // 3600} giờ trước"
    return _fmt_local(dt, "%H:%M %d/%m/%Y")


@bp.app_template_filter("tier_label")
def tier_label(value: Any) -> str:
    try:
        return Tier(str(value)).label_vi
    except ValueError:
        return str(value or "")


@bp.app_template_filter("state_label")
def state_label(value: Any) -> str:
    return BROADCAST_STATE_VI.get(str(value), str(value or ""))


@bp.app_template_filter("delivery_label")
def delivery_label(value: Any) -> str:
    return DELIVERY_STATE_VI.get(str(value), str(value or ""))


@bp.app_template_filter("state_class")
def state_class(value: Any) -> str:
    return STATE_CLASS.get(str(value), "wait")


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
    """A number as Vietnamese write it: decimal comma ("1,5"), no trailing ",0"."""
    try:
        number = round(float(value), digits)
    except (TypeError, ValueError):
        return "–"
    text = f"{number:.{digits}f}".rstrip("0").rstrip(".") if digits else str(int(number))
    return text.replace(".", ",")


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
    if kind == "daily":
        text = f"Hằng ngày lúc {at_time}"
    elif kind == "weekdays":
        text = f"Thứ Hai đến Thứ Sáu lúc {at_time}"
    elif kind == "weekly":
        text = ", ".join(names.get(d, d) for d in days) + f" lúc {at_time}"
    elif kind == "once":
        text = "Một lần lúc " + _fmt_local(get("at") or get("run_at"), "%H:%M %d/%m/%Y")
    else:
        text = f"Theo lịch cron “{get('cron') or ''}”"
    valid_from, valid_to = get("valid_from"), get("valid_to")
    if valid_from:
        text += ", từ " + _fmt_local(valid_from, "%d/%m/%Y")
    if valid_to:
        text += ", đến hết " + _fmt_local(valid_to, "%d/%m/%Y")
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
    if user.role == Role.ADMIN.value:
        items += [
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
        "poll_ms": int(_services().settings.web.poll_interval_s * 1000),
    }


# --- dashboard ----------------------------------------------------------------------------


def _health_time(sp: dict[str, Any]) -> Any:
    if sp.get("health_at"):
        return sp["health_at"]
    health = sp.get("health") or {}
    return (health.get("ts") or health.get("time") or health.get("at")) if isinstance(health, dict) else None


def _playing_label(playing: Any) -> str:
    if playing in (None, "", {}):
        return ""
    if isinstance(playing, dict):
        title = playing.get("title") or ""
        bid = playing.get("broadcast_id") or playing.get("id")
        return title or (f"Bản tin số {bid}" if bid else "Đang phát")
    if isinstance(playing, int):
        return f"Bản tin số {playing}"
    return str(playing)


def _alert_text(alert: Any) -> str:
    if isinstance(alert, dict):
        return str(alert.get("message") or ALERT_KIND_VI.get(str(alert.get("kind")), alert.get("kind") or ""))
    return str(alert)


def speaker_view(sp: dict[str, Any]) -> dict[str, Any]:
    """One cluster as the dashboard shows it: only display strings and flags."""
    online = bool(sp.get("online"))
    volume = sp.get("volume")
    amp = sp.get("amplifier_on")
    last_health = _health_time(sp) or sp.get("last_seen")
    playing = _playing_label(sp.get("playing"))
    return {
        "id": str(sp.get("id")),
        "name": str(sp.get("name") or sp.get("id")),
        "zone": sp.get("zone"),
        "online": online,
        "status": "Đang hoạt động" if online else "Mất kết nối",
        "playing": playing,
        "playing_text": f"Đang phát: {playing}"
        if playing
        else ("Đang nghỉ" if online else "Không rõ đang phát gì"),
        "volume": "–" if volume is None else f"{int(round(float(volume)))}%",
        "amplifier": "–" if amp is None else ("Bật" if amp else "Tắt"),
        "last_health": ago(last_health),
        "alerts": [_alert_text(a) for a in (sp.get("alerts") or [])],
    }


def _recent_view(limit: int = 6) -> list[dict[str, Any]]:
    try:
        items = _services().broadcasts.list(limit=limit)
    except Exception:
        _LOGGER.exception("broadcasts.list failed")
        return []
    out = []
    names = _target_names()
    for b in items:
        counts: dict[str, int] = dict(b.get("delivery_counts") or {})
        if not counts:
            for d in b.get("deliveries") or []:
                counts[str(d.get("state"))] = counts.get(str(d.get("state")), 0) + 1
        done = counts.get(DeliveryState.DONE.value, 0)
        playing = counts.get(DeliveryState.PLAYING.value, 0)
        out.append(
            {
                "id": b.get("id"),
                "title": b.get("title") or (b.get("text") or "")[:60] or f"Bản tin số {b.get('id')}",
                "state": b.get("state"),
                "state_label": state_label(b.get("state")),
                "state_class": state_class(b.get("state")),
                "tier": tier_label(b.get("tier")),
                "targets": describe_targets(b.get("targets"), names),
                "when": _fmt_local(b.get("start_at") or b.get("scheduled_at"), "%H:%M %d/%m"),
                "done": done,
                "playing": playing,
                "total": sum(counts.values()),
                "url": url_for("ui.broadcast_detail", broadcast_id=b.get("id")),
            }
        )
    return out


def dashboard_data() -> dict[str, Any]:
    services = _services()
    try:
        snapshot = services.fleet.snapshot()
    except Exception:
        _LOGGER.exception("fleet.snapshot failed")
        snapshot = []
    zone_names = {g["id"]: g["name"] for g in zones_with_speakers() if g["id"]}
    groups: dict[str, dict[str, Any]] = {}
    for sp in sorted(snapshot, key=lambda s: (str(s.get("zone") or "~"), str(s.get("name") or s.get("id")))):
        view = speaker_view(sp)
        zone = sp.get("zone") or ""
        group = groups.setdefault(
            zone, {"id": zone, "name": zone_names.get(zone, zone) or "Chưa có khu vực", "speakers": []}
        )
        group["speakers"].append(view)
    speakers = [s for g in groups.values() for s in g["speakers"]]
    return {
        "zones": list(groups.values()),
        "online": sum(1 for s in speakers if s["online"]),
        "total": len(speakers),
        "playing": sum(1 for s in speakers if s["playing"]),
        "alerts": sum(len(s["alerts"]) for s in speakers),
        "recent": _recent_view(),
        "updated": _fmt_local(_now(), "%H:%M:%S"),
    }


def _volume_targets() -> list[tuple[str, str]]:
    """(value, label) of the volume form's "where": every cluster, then each zone."""
    zones = [(g["id"], g["name"]) for g in zones_with_speakers() if g["id"]]
    return [(ALL_TARGETS, "Tất cả loa"), *zones]


def _dashboard_page(volume: dict[str, str] | None = None, volume_error: str = "", status: int = 200) -> Any:
    return (
        render_template(
            "dashboard.html",
            data=dashboard_data(),
            pending=_pending_count(),
            volume_targets=_volume_targets(),
            volume=volume or {"target": ALL_TARGETS, "volume": ""},
            volume_error=volume_error,
        ),
        status,
    )


@bp.route("/")
@login_required
def dashboard() -> Any:
    return _dashboard_page()


@bp.route("/dashboard.json")
@login_required
def dashboard_json() -> Response:
    data = dashboard_data()
    # The page swaps in this fragment; Jinja escaped every value in it.
    return jsonify({**data, "html": render_template("_dashboard_live.html", data=data)})


@bp.route("/stop-all", methods=["GET", "POST"])
@roles_required(Role.EDITOR.value, Role.APPROVER.value)
def stop_all() -> Any:
    if request.method == "GET":  # the confirmation page for browsers without the dialog script
        return render_template("stop_confirm.html")
    _services().broadcasts.stop_all(by=_user_name(), reason="Dừng tất cả từ giao diện web")
    _LOGGER.warning("stop all requested by %s", _user_name())
    flash("Đã gửi lệnh dừng tới tất cả cụm loa.", "ok")
    return redirect(url_for("ui.dashboard"))


VOLUME_ROLE_MESSAGE = "Chỉ người phê duyệt hoặc quản trị viên mới được đổi âm lượng loa."


@bp.route("/volume", methods=["POST"])
@roles_required(Role.APPROVER.value, message=VOLUME_ROLE_MESSAGE)
def set_volume() -> Any:
    """The dashboard's "Âm lượng" form: one volume for every cluster or for one zone."""
    values = {"target": request.form.get("target", ""), "volume": request.form.get("volume", "").strip()}
    labels = dict(_volume_targets())
    error = ""
    volume = -1
    if values["target"] not in labels:
        error = "Vui lòng chọn nơi đặt âm lượng: tất cả loa hoặc một khu vực."
    else:
        try:
            volume = int(values["volume"])
        except ValueError:
            volume = -1
        if not 0 <= volume <= 100:
            error = "Âm lượng là một số nguyên từ 0 đến 100 (%)."
    if not error:
        try:
            speakers = _services().broadcasts.set_volume([values["target"]], volume, by=_user_name())
        except BroadcastError as exc:
            error = f"Không đặt được âm lượng: {error_text(exc)}"
    if error:
        return _dashboard_page(values, error, 400)
    _LOGGER.info("volume %s%% on %s set by %s", volume, values["target"], _user_name())
    flash(
        f"Đã gửi lệnh đặt âm lượng {volume}% tới {len(speakers)} cụm loa ({labels[values['target']]}).", "ok"
    )
    return redirect(url_for("ui.dashboard"))


# --- compose ------------------------------------------------------------------------------


@dataclass
class ComposeResult:
    values: dict[str, Any]
    errors: dict[str, str]


def _form_values(form: Any) -> dict[str, Any]:
    """What the officer typed, kept as typed (so an error never loses it)."""
    return {
        "title": nfc(form.get("title", "")),
        "text": nfc(form.get("text", "")),
        "tier": form.get("tier", Tier.NORMAL.value),
        "targets": form.getlist("targets"),
        "repeat": form.get("repeat", "1"),
        "engine": form.get("engine", ""),
        "voice": form.get("voice", ""),
        "audio_key": form.get("audio_key", ""),
        "audio_name": form.get("audio_name", ""),
        "when": form.get("when", "once"),
        "date": form.get("date", ""),
        "time": form.get("time", ""),
        "days": form.getlist("days"),
        "weekly_time": form.get("weekly_time", ""),
        "valid_from": form.get("valid_from", ""),
        "valid_to": form.get("valid_to", ""),
        "enabled": form.get("enabled", ""),
    }


def _valid_targets() -> tuple[set[str], dict[str, set[str]]]:
    ids: set[str] = set()
    members: dict[str, set[str]] = {}
    for group in zones_with_speakers():
        if group["id"]:
            ids.add(group["id"])
            members[group["id"]] = {s["id"] for s in group["speakers"]}
        ids.update(s["id"] for s in group["speakers"])
    return ids, members


def validate_announcement(values: dict[str, Any], errors: dict[str, str], *, need_text: bool = True) -> None:
    """Server-side checks of the fields every announcement has; messages go next to the field."""
    services = _services()
    title = values["title"].strip()
    if len(title) > MAX_TITLE:
        errors["title"] = f"Tiêu đề dài tối đa {MAX_TITLE} ký tự."
    text = values["text"].strip()
    max_chars = services.settings.textnorm.max_chars
    if need_text and not text and not values.get("audio_key"):
        errors["text"] = "Vui lòng nhập nội dung thông báo (hoặc tải lên một bản ghi âm)."
    elif len(text) > max_chars:
        errors["text"] = f"Nội dung dài {len(text):,} ký tự, tối đa {max_chars:,} ký tự.".replace(",", ".")
    if values["tier"] not in {t.value for t in Tier}:
        errors["tier"] = "Vui lòng chọn mức độ ưu tiên."
    targets = [t for t in values["targets"] if t]
    if not targets:
        errors["targets"] = "Vui lòng chọn nơi phát: tất cả loa, một khu vực hoặc từng cụm loa."
    elif ALL_TARGETS not in targets:
        known, _ = _valid_targets()
        unknown = [t for t in targets if t not in known]
        if unknown:
            errors["targets"] = "Nơi phát không còn tồn tại: " + ", ".join(unknown) + ". Vui lòng chọn lại."
    most = _max_repeat()
    try:
        repeat = int(values["repeat"])
        if not 1 <= repeat <= most:
            raise ValueError
    except (TypeError, ValueError):
        errors["repeat"] = f"Số lần phát từ 1 đến {most}."
    if unknown_engine(_services().speech, values["engine"]) is not None:
        errors["engine"] = "Giọng đọc không có trên máy chủ này."
    key = values.get("audio_key") or ""
    if key and (not _AUDIO_KEY_RE.match(key) or not services.speech.store.has(key)):
        errors["audio"] = "Bản ghi âm đã tải lên không còn trên máy chủ. Vui lòng tải lên lại."


def _collapsed_targets(values: dict[str, Any]) -> tuple[str, ...]:
    targets = [t for t in values["targets"] if t]
    if ALL_TARGETS in targets:
        return (ALL_TARGETS,)
    _, members = _valid_targets()
    zones = [t for t in targets if t in members]
    covered = set().union(*(members[z] for z in zones)) if zones else set()
    return tuple(dict.fromkeys([*zones, *(t for t in targets if t not in members and t not in covered)]))


def _check_tier_allowed(tier: str) -> None:
    if tier != Tier.NORMAL.value and not has_role(current_user(), Role.APPROVER.value):
        abort(403, description=EDITOR_TIER_MESSAGE)


def _needs_approval(tier: str) -> bool:
    """An editor's (normal) item waits for an approver unless the setting is off."""
    return not has_role(current_user(), Role.APPROVER.value) and approval_required()


def _local_datetime(day: str, hhmm: str) -> datetime | None:
    try:
        d = date.fromisoformat(day)
    except ValueError:
        return None
    if not _TIME_RE.match(hhmm or ""):
        return None
    hour, minute = (int(x) for x in hhmm.split(":"))
    return datetime(d.year, d.month, d.day, hour, minute, tzinfo=_tz()).astimezone(UTC)


def validate_schedule(values: dict[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    """The 'Hẹn giờ' fields: one-off date and time, or days of week, time and validity dates."""
    out: dict[str, Any] = {}
    if values["when"] == "once":
        at = _local_datetime(values["date"], values["time"])
        if not values["date"]:
            errors["date"] = "Vui lòng chọn ngày phát."
        elif not _TIME_RE.match(values["time"] or ""):
            errors["time"] = "Vui lòng nhập giờ phát (giờ:phút)."
        elif at is None:
            errors["date"] = "Ngày không hợp lệ."
        elif at <= _now() + timedelta(seconds=30):
            errors["date"] = "Thời điểm phát phải ở tương lai."
        else:
            out["at"] = at
    elif values["when"] == "weekly":
        days = [d for d in values["days"] if d in _WEEKDAY_KEYS]
        if not days:
            errors["days"] = "Vui lòng chọn ít nhất một ngày trong tuần."
        if not _TIME_RE.match(values["weekly_time"] or ""):
            errors["weekly_time"] = "Vui lòng nhập giờ phát (giờ:phút)."
        valid_from = valid_to = None
        if values["valid_from"]:
            try:
                valid_from = date.fromisoformat(values["valid_from"])
            except ValueError:
                errors["valid_from"] = "Ngày bắt đầu không hợp lệ."
        if values["valid_to"]:
            try:
                valid_to = date.fromisoformat(values["valid_to"])
            except ValueError:
                errors["valid_to"] = "Ngày kết thúc không hợp lệ."
        if valid_from and valid_to and valid_to < valid_from:
            errors["valid_to"] = "Ngày kết thúc phải sau ngày bắt đầu."
        out.update(
            days=[k for k in _WEEKDAY_KEYS if k in days],
            time=values["weekly_time"],
            valid_from=valid_from,
            valid_to=valid_to,
        )
    else:
        errors["when"] = "Vui lòng chọn kiểu hẹn giờ."
    return out


def schedule_data(values: dict[str, Any], sched: dict[str, Any], *, approval: str | None) -> dict[str, Any]:
    """The dict given to ``scheduler.create_schedule`` / ``update_schedule`` (its spec fields;
    validity dates are whole local days)."""
    days = sched["days"]
    data: dict[str, Any] = {
        "name": (values["title"].strip() or values["text"].strip())[:200],
        "title": values["title"].strip(),
        "text": values["text"].strip(),
        "tier": values["tier"],
        "targets": list(_collapsed_targets(values)),
        "repeat": int(values["repeat"]),
        "engine": values["engine"] or None,
        "voice": values["voice"] or None,
        "kind": "daily" if len(days) == 7 else "weekly",
        "time": sched["time"],
        "days": None if len(days) == 7 else list(days),
        "valid_from": sched["valid_from"].isoformat() if sched["valid_from"] else None,
        "valid_to": sched["valid_to"].isoformat() if sched["valid_to"] else None,
    }
    if approval is not None:
        data["approval"] = approval
    return data


def _compose_page(values: dict[str, Any], errors: dict[str, str], status: int = 200) -> Any:
    user = current_user()
    return (
        render_template(
            "compose.html",
            values=values,
            errors=errors,
            zones=zones_with_speakers(),
            engines=engine_choices(),
            tiers=[(t.value, t.label_vi, TIER_HELP_VI[t.value]) for t in Tier],
            weekdays=WEEKDAYS,
            max_repeat=_max_repeat(),
            max_chars=_services().settings.textnorm.max_chars,
            needs_approval=user is not None and _needs_approval(Tier.NORMAL.value),
            today=_fmt_local(_now(), "%Y-%m-%d"),
        ),
        status,
    )


def _default_values() -> dict[str, Any]:
    values = _form_values(request.args)
    values["targets"] = values["targets"] or [ALL_TARGETS]
    values["when"] = "once"
    return values


@bp.route("/compose", methods=["GET", "POST"])
@login_required
def compose() -> Any:
    if request.method == "GET":
        return _compose_page(_default_values(), {})
    values = _form_values(request.form)
    action = request.form.get("action", "now")
    errors: dict[str, str] = {}
    validate_announcement(values, errors)
    if "tier" not in errors:
        _check_tier_allowed(values["tier"])
    sched: dict[str, Any] = {}
    if action == "schedule":
        sched = validate_schedule(values, errors)
        if values["when"] == "weekly" and values["audio_key"]:
            errors["audio"] = "Lịch phát định kỳ chưa dùng được bản ghi âm; vui lòng dùng nội dung văn bản."
    elif action != "now":
        errors["form"] = "Thao tác không hợp lệ."
    if errors:
        errors.setdefault("form", "Chưa gửi được: vui lòng sửa các mục được đánh dấu bên dưới.")
        return _compose_page(values, errors, 400)
    services = _services()
    needs_approval = _needs_approval(values["tier"])
    try:
        if action == "schedule" and values["when"] == "weekly":
            data = schedule_data(values, sched, approval=Approval.PENDING.value if needs_approval else None)
            schedule_id = _scheduler().create_schedule(data, author=_user_name())
            flash(
                "Đã lưu lịch phát định kỳ"
                + (" — đang chờ người phê duyệt." if needs_approval else ".")
                + f" (lịch số {schedule_id})",
                "ok",
            )
            return redirect(url_for("ui.schedule"))
        ann = Announcement(
            text=values["text"].strip(),
            tier=Tier(values["tier"]),
            targets=_collapsed_targets(values),
            title=values["title"].strip(),
            repeat=int(values["repeat"]),
            engine=values["engine"] or None,
            voice=values["voice"] or None,
            at=sched.get("at"),
            author=_user_name(),
            source=Source.WEB,
            audio_key=values["audio_key"] or None,  # type: ignore[arg-type]
        )
        broadcast_id = services.broadcasts.submit(ann, approved=not needs_approval)
    except SCHEDULING_ERRORS as exc:
        _LOGGER.info("compose rejected: %s", exc)
        _service_error_to_form(exc, errors, "Không gửi được")
        return _compose_page(values, errors, 400)
    title = values["title"].strip() or "thông báo"
    if needs_approval:
        flash(f"Đã gửi «{title}» để phê duyệt. Tin sẽ chỉ được phát sau khi người phê duyệt đồng ý.", "ok")
        return redirect(url_for("ui.approvals"))
    if sched.get("at"):
        flash(f"Đã hẹn giờ phát «{title}» lúc {_fmt_local(sched['at'], '%H:%M ngày %d/%m/%Y')}.", "ok")
        return redirect(url_for("ui.schedule", start=_fmt_local(sched["at"], "%Y-%m-%d")))
    flash(f"Đã bắt đầu phát «{title}» tới {describe_targets(ann.targets)}.", "ok")
    return redirect(url_for("ui.dashboard", b=broadcast_id))


@bp.route("/compose/preview", methods=["POST"])
@login_required
def compose_preview() -> Any:
    """Normalized text at once; the audio on a worker (poll ``/jobs/<id>``)."""
    values = _form_values(request.form)
    errors: dict[str, str] = {}
    text = values["text"].strip()
    max_chars = _services().settings.textnorm.max_chars
    if values["audio_key"] and not text:
        if not _AUDIO_KEY_RE.match(values["audio_key"]) or not _services().speech.store.has(
            values["audio_key"]
        ):
            return jsonify(errors={"audio": "Bản ghi âm không còn trên máy chủ. Vui lòng tải lên lại."}), 400
        return jsonify(
            segments=[], normalized_text="", audio_url=url_for("ui.audio", key=values["audio_key"])
        )
    if not text:
        errors["text"] = "Vui lòng nhập nội dung để xem trước."
    elif len(text) > max_chars:
        errors["text"] = f"Nội dung dài {len(text):,} ký tự, tối đa {max_chars:,} ký tự.".replace(",", ".")
    try:
        repeat = max(1, min(_max_repeat(), int(values["repeat"] or 1)))
    except ValueError:
        errors["repeat"] = f"Số lần phát từ 1 đến {_max_repeat()}."
        repeat = 1
    if errors:
        return jsonify(errors=errors), 400
    overrides = lexicon_overrides()
    try:
        normalized, segments = preview_segments(text, overrides)
    except NormalizationError as exc:
        return jsonify(errors={"text": f"Không đọc được nội dung: {exc}"}), 400
    speech = _services().speech
    engine, voice = values["engine"] or None, values["voice"] or None

    def render() -> dict[str, Any]:
        result = speech.render(text, engine=engine, voice=voice, repeat=repeat, chime=True, lexicon=overrides)
        return _render_result_json(result)

    user = current_user()
    assert user is not None
    job_id = jobs().submit(user.id, "preview", render)
    return jsonify(
        normalized_text=normalized,
        segments=segments,
        changed=sum(1 for s in segments if s["original"] is not None),
        job=job_id,
        status_url=url_for("ui.job_status", job_id=job_id),
    )


@bp.route("/jobs/<job_id>")
@login_required
def job_status(job_id: str) -> Any:
    user = current_user()
    assert user is not None
    status = jobs().status(job_id, user.id)
    if status is None:
        return jsonify(error="Không tìm thấy yêu cầu (có thể đã quá hạn). Vui lòng thử lại."), 404
    if status.get("key"):  # workers run outside the request: the URL is made here
        status["audio_url"] = url_for("ui.audio", key=status["key"])
    return jsonify(status)


@bp.route("/audio/<key>.mp3")
@login_required
def audio(key: str) -> Any:
    if not _AUDIO_KEY_RE.match(key):
        abort(404)
    store = _services().speech.store
    if not store.has(key):
        abort(404, description="Không tìm thấy tệp âm thanh.")
    return send_file(store.path(key), mimetype="audio/mpeg", conditional=True, max_age=3600)


def _uploaded(field_name: str, exts: tuple[str, ...], kind: str) -> tuple[bytes, str] | str:
    upload = request.files.get(field_name)
    if upload is None or not upload.filename:
        return f"Vui lòng chọn {kind}."
    filename = upload.filename
    if not filename.lower().endswith(exts):
        return f"Loại tệp không được hỗ trợ. Chỉ nhận: {', '.join(exts)}."
    data = upload.read()
    if not data:
        return "Tệp rỗng, không có nội dung."
    return data, filename


@bp.route("/compose/import", methods=["POST"])
@login_required
def compose_import() -> Any:
    """Text of an uploaded document into the editor (JSON for the page script, or the page).
    A scan or a photo is read by text recognition on a worker: the JSON reply is then a job to
    poll (``/jobs/<id>``), whose result has the text and the words to check, or ``errors``."""
    got = _uploaded("document", documents.EXTENSIONS, documents.KIND_LABEL)
    wants_page = "text/html" in (request.accept_mimetypes.best or "") and not request.headers.get(
        "X-CSRFToken"
    )
    error = got if isinstance(got, str) else None
    result = None
    if not error:
        data, filename = got  # type: ignore[misc]
        try:
            result = documents.extract(data, filename) if not wants_page else documents.read(data, filename)
        except documents.NeedsOcr:
            user = current_user()
            assert user is not None
            job_id = jobs().submit(user.id, "ocr", lambda: documents.recognize_json(data, filename))
            return jsonify(job=job_id, status_url=url_for("ui.job_status", job_id=job_id)), 202
        except documents.DocumentError as exc:
            error = str(exc)
    if wants_page:  # without the page script: read it all now (bounded by the recognition time limit)
        values = _form_values(request.form)
        values["targets"] = values["targets"] or [ALL_TARGETS]
        if error or result is None:
            return _compose_page(values, {"document": error or ""}, 400)
        values["text"] = result.text
        flash("Đã lấy nội dung từ tệp. Vui lòng đọc lại và sửa trước khi phát.", "ok")
        if result.uncertain:
            flash(
                "Từ cần kiểm tra (máy đọc chưa chắc): " + ", ".join(w.text for w in result.uncertain), "warn"
            )
        return _compose_page(values, {})
    if error or result is None:
        return jsonify(errors={"document": error}), 400
    return jsonify(result.to_json())


@bp.route("/compose/recording", methods=["POST"])
@login_required
def compose_recording() -> Any:
    """Upload (or microphone) recording -> checked, converted, loudness-normalized on a worker."""
    got = _uploaded("recording", RECORDING_EXTS, "tệp ghi âm (.mp3, .wav)")
    if isinstance(got, str):
        return jsonify(errors={"audio": got}), 400
    data, filename = got
    speech = _services().speech

    def convert() -> dict[str, Any]:
        result = speech.import_recording(data, filename)
        return {**_render_result_json(result), "filename": filename}

    user = current_user()
    assert user is not None
    job_id = jobs().submit(user.id, "recording", convert)
    return jsonify(job=job_id, status_url=url_for("ui.job_status", job_id=job_id))


# --- broadcasts, approvals ----------------------------------------------------------------


def _get_broadcast(broadcast_id: int) -> dict[str, Any]:
    item = _services().broadcasts.get(broadcast_id)
    if item is None:
        abort(404, description="Không tìm thấy bản tin này.")
    return item


def _announcement_id(item: dict[str, Any]) -> int:
    if item.get("announcement_id") is not None:
        return int(item["announcement_id"])
    from broadcaster.models import Broadcast

    with _services().sessions() as session:
        row = session.get(Broadcast, int(item["id"]))
        if row is None:
            abort(404, description="Không tìm thấy bản tin này.")
        return row.announcement_id


def _pending_count() -> int:
    try:
        return len(_services().broadcasts.list(limit=200, state=BroadcastState.PENDING_APPROVAL.value)) + len(
            _pending_schedules()
        )
    except Exception:
        _LOGGER.exception("pending count failed")
        return 0


def _pending_schedules() -> list[Schedule]:
    with _services().sessions() as session:
        return list(
            session.scalars(
                select(Schedule).where(Schedule.approval == Approval.PENDING.value).order_by(Schedule.created)
            )
        )


@bp.route("/broadcasts/<int:broadcast_id>")
@login_required
def broadcast_detail(broadcast_id: int) -> str:
    item = _get_broadcast(broadcast_id)
    return render_template("broadcast.html", b=item, names=_target_names())


@bp.route("/broadcasts/<int:broadcast_id>/cancel", methods=["POST"])
@roles_required(Role.EDITOR.value, Role.APPROVER.value)
def broadcast_cancel(broadcast_id: int) -> Any:
    item = _get_broadcast(broadcast_id)
    if item.get("tier") != Tier.NORMAL.value:
        _check_tier_allowed(str(item.get("tier")))
    if _services().broadcasts.cancel(broadcast_id, by=_user_name()):
        flash("Đã hủy bản tin.", "ok")
    else:
        flash("Bản tin này đã kết thúc, không còn gì để hủy.", "warn")
    back = url_for("ui.broadcast_detail", broadcast_id=broadcast_id)
    return redirect(safe_next(request.form.get("back"), default=back))


@bp.route("/approvals")
@login_required
def approvals() -> str:
    items = _services().broadcasts.list(limit=200, state=BroadcastState.PENDING_APPROVAL.value)
    return render_template(
        "approvals.html",
        items=items,
        schedules=_pending_schedules(),
        names=_target_names(),
        weekdays=dict(WEEKDAYS),
    )


@bp.route("/approvals/<int:broadcast_id>/<decision>", methods=["POST"])
@roles_required(Role.APPROVER.value, message="Chỉ người phê duyệt mới được duyệt tin.")
def approval_decide(broadcast_id: int, decision: str) -> Any:
    item = _get_broadcast(broadcast_id)
    ann_id = _announcement_id(item)
    broadcasts = _services().broadcasts
    try:
        if decision == "approve":
            broadcasts.approve(ann_id, by=_user_name())
            flash(f"Đã duyệt «{item.get('title') or 'bản tin'}». Tin sẽ được phát.", "ok")
        elif decision == "reject":
            reason = nfc(request.form.get("reason", "")).strip()[:500]
            broadcasts.reject(ann_id, by=_user_name(), reason=reason)
            flash(f"Đã từ chối «{item.get('title') or 'bản tin'}».", "ok")
        else:
            abort(404)
    except BroadcastError as exc:
        flash(f"Không thực hiện được: {error_text(exc)}", "error")
    return redirect(url_for("ui.approvals"))


@bp.route("/approvals/schedule/<int:schedule_id>/<decision>", methods=["POST"])
@roles_required(Role.APPROVER.value, message="Chỉ người phê duyệt mới được duyệt tin.")
def approval_schedule(schedule_id: int, decision: str) -> Any:
    scheduler = _scheduler()
    if decision not in ("approve", "reject"):
        abort(404)
    approval = Approval.APPROVED.value if decision == "approve" else Approval.REJECTED.value
    try:
        scheduler.update_schedule(schedule_id, {"approval": approval})
    except SCHEDULING_ERRORS as exc:
        flash(f"Không thực hiện được: {error_text(exc)}", "error")
    else:
        flash("Đã duyệt lịch phát." if decision == "approve" else "Đã từ chối lịch phát.", "ok")
    return redirect(url_for("ui.approvals"))


# --- schedule -----------------------------------------------------------------------------


def _week_start(value: str | None) -> date:
    today = _now().astimezone(_tz()).date()
    try:
        day = date.fromisoformat(value) if value else today
    except ValueError:
        day = today
    return day - timedelta(days=day.weekday())


@bp.route("/schedule")
@login_required
def schedule() -> str:
    tz = _tz()
    start = _week_start(request.args.get("start"))
    start_dt = datetime.combine(start, datetime.min.time(), tz)
    end_dt = start_dt + timedelta(days=7)
    scheduler = _scheduler()
    try:
        airings = scheduler.upcoming(start_dt.astimezone(UTC), end_dt.astimezone(UTC))
    except Exception:
        _LOGGER.exception("scheduler.upcoming failed")
        airings = []
        flash("Không tải được lịch phát. Vui lòng thử lại sau.", "error")
    names = _target_names()
    today = _now().astimezone(tz).date()
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
    for item in sorted(airings, key=lambda a: parse_time(a.get("at")) or _now()):
        at = parse_time(item.get("at"))
        if at is None:
            continue
        local = at.astimezone(tz)
        index = (local.date() - start).days
        if 0 <= index < 7:
            days[index]["airings"].append(
                {
                    **item,
                    "time": local.strftime("%H:%M"),
                    "targets_text": describe_targets(item.get("targets"), names),
                    "tier_label": tier_label(item.get("tier")),
                    "past": at < _now(),
                }
            )
    try:
        schedules = scheduler.list_schedules()
    except Exception:
        _LOGGER.exception("scheduler.list_schedules failed")
        schedules = []
    return render_template(
        "schedule.html",
        days=days,
        start=start,
        end=start + timedelta(days=6),
        prev=(start - timedelta(days=7)).isoformat(),
        next=(start + timedelta(days=7)).isoformat(),
        this_week=_week_start(None).isoformat(),
        schedules=schedules,
        names=names,
        weekdays=dict(WEEKDAYS),
    )


def _schedule_values(item: dict[str, Any]) -> dict[str, Any]:
    tz = _tz()
    days = item.get("days") or []
    kind = item.get("kind") or "weekly"
    if isinstance(days, str):
        days = [d for d in days.split(",") if d]
    day_list = list(_WEEKDAY_KEYS) if kind == "daily" else list(days)
    if kind == "weekdays":
        day_list = list(_WEEKDAY_KEYS[:5])
    valid_from = parse_time(item.get("valid_from"))
    valid_to = parse_time(item.get("valid_to"))
    return {
        "title": item.get("title") or "",
        "text": item.get("text") or "",
        "tier": item.get("tier") or Tier.NORMAL.value,
        "targets": list(item.get("targets") or [ALL_TARGETS]),
        "repeat": str(item.get("repeat") or 1),
        "engine": item.get("engine") or "",
        "voice": item.get("voice") or "",
        "audio_key": item.get("audio_key") or "",
        "audio_name": "",
        "when": "weekly",
        "date": "",
        "time": "",
        "days": day_list,
        "weekly_time": item.get("time") or "",
        "valid_from": valid_from.astimezone(tz).date().isoformat() if valid_from else "",
        "valid_to": valid_to.astimezone(tz).date().isoformat() if valid_to else "",
        "enabled": "on" if item.get("enabled", True) else "",
        "kind": kind,
        "cron": item.get("cron"),
        "source_file": item.get("source_file"),
        "approval": item.get("approval"),
    }


def _get_schedule(schedule_id: int) -> dict[str, Any]:
    try:
        item = _scheduler().get_schedule(schedule_id)
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
            tiers=[(t.value, t.label_vi, TIER_HELP_VI[t.value]) for t in Tier],
            weekdays=WEEKDAYS,
            max_repeat=_max_repeat(),
            max_chars=_services().settings.textnorm.max_chars,
        ),
        status,
    )


@bp.route("/schedule/<int:schedule_id>", methods=["GET", "POST"])
@login_required
def schedule_edit(schedule_id: int) -> Any:
    item = _get_schedule(schedule_id)
    if request.method == "GET":
        return _schedule_page(schedule_id, item, _schedule_values(item), {})
    if not has_role(current_user(), Role.EDITOR.value, Role.APPROVER.value):
        abort(403, description="Tài khoản của bạn không có quyền sửa lịch phát.")
    values = {**_schedule_values(item), **_form_values(request.form), "when": "weekly"}
    values["enabled"] = "on" if request.form.get("enabled") else ""
    errors: dict[str, str] = {}
    validate_announcement(values, errors)
    if "tier" not in errors:
        _check_tier_allowed(values["tier"])
        _check_tier_allowed(str(item.get("tier") or Tier.NORMAL.value))
    sched = validate_schedule(values, errors)
    if errors:
        errors.setdefault("form", "Chưa lưu được: vui lòng sửa các mục được đánh dấu bên dưới.")
        return _schedule_page(schedule_id, item, values, errors, 400)
    needs_approval = _needs_approval(values["tier"])
    data = schedule_data(
        values, sched, approval=Approval.PENDING.value if needs_approval else Approval.APPROVED.value
    )
    data["enabled"] = bool(values["enabled"])
    try:
        _scheduler().update_schedule(schedule_id, data)
    except SCHEDULING_ERRORS as exc:
        _service_error_to_form(exc, errors, "Không lưu được")
        return _schedule_page(schedule_id, item, values, errors, 400)
    flash("Đã lưu lịch phát." + (" Lịch đang chờ người phê duyệt." if needs_approval else ""), "ok")
    return redirect(url_for("ui.schedule"))


@bp.route("/schedule/<int:schedule_id>/delete", methods=["POST"])
@roles_required(Role.EDITOR.value, Role.APPROVER.value)
def schedule_delete(schedule_id: int) -> Any:
    item = _get_schedule(schedule_id)
    _check_tier_allowed(str(item.get("tier") or Tier.NORMAL.value))
    try:
        _scheduler().delete_schedule(schedule_id)
    except SCHEDULING_ERRORS as exc:
        flash(f"Không xóa được: {error_text(exc)}", "error")
    else:
        flash(f"Đã xóa lịch phát «{item.get('title') or item.get('name') or schedule_id}».", "ok")
    return redirect(url_for("ui.schedule"))


# --- log ----------------------------------------------------------------------------------


def _date_arg(name: str, default: date) -> date:
    try:
        return date.fromisoformat(request.args.get(name, "")) if request.args.get(name) else default
    except ValueError:
        return default


def _log_range() -> tuple[date, date]:
    """The log's local days (default: the last seven), at most a year."""
    today = _now().astimezone(_tz()).date()
    day_from = _date_arg("from", today - timedelta(days=6))
    day_to = _date_arg("to", today)
    if day_to < day_from:
        day_from, day_to = day_to, day_from
    day_from = max(day_from, day_to - timedelta(days=365))
    return day_from, day_to


PAGE_SIZE = 25
_LOG_ARGS = ("state", "tier", "q", "zone", "speaker")


def _log_filters(day_from: date, day_to: date, *, limit: int, offset: int) -> Any:
    args = {k: request.args[k] for k in _LOG_ARGS if request.args.get(k)}
    args.update(
        {"from": day_from.isoformat(), "to": day_to.isoformat(), "limit": str(limit), "offset": str(offset)}
    )
    return reports.LogFilters.from_args(args, _services().settings.timezone)


@bp.route("/log")
@login_required
def log() -> str:
    services = _services()
    tz = services.settings.timezone
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
        with services.sessions() as session:
            items = reports.broadcast_log(session, filters, tz=tz)
            minutes = reports.minutes_per_day(session, day_from, day_to, tz=tz)
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
        states=BROADCAST_STATE_VI,
        tiers=[(t.value, t.label_vi) for t in Tier],
        minutes=minutes_table(minutes),
        day_from=day_from,
        day_to=day_to,
        names=_target_names(),
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


@bp.route("/log.csv")
@login_required
def log_csv() -> Response:
    day_from, day_to = _log_range()
    try:
        filters = _log_filters(day_from, day_to, limit=reports.MAX_LIMIT, offset=0)
    except reports.ReportError as exc:
        abort(400, description=f"Bộ lọc không hợp lệ: {error_text(exc)}")
    with _services().sessions() as session:
        log_items = reports.broadcast_log(session, filters, tz=_services().settings.timezone)
    return _csv_response(reports.log_csv(log_items), f"nhat-ky-phat-{day_from}-{day_to}.csv")


@bp.route("/log/minutes.csv")
@login_required
def minutes_csv() -> Response:
    day_from, day_to = _log_range()
    with _services().sessions() as session:
        rows = reports.minutes_per_day(session, day_from, day_to, tz=_services().settings.timezone)
    return _csv_response(reports.minutes_csv(rows), f"so-phut-phat-{day_from}-{day_to}.csv")


# --- lexicon ------------------------------------------------------------------------------


def _rerender_schedules() -> None:
    """After a lexicon change: re-render the scheduled bulletins on a worker, so they air with the
    new reading (``SchedulerService.render_all``; cache hits cost nothing). The request does not wait."""
    scheduler = _services().scheduler
    if scheduler is None:
        return

    def render_all() -> dict[str, Any]:
        try:
            scheduler.render_all()
        except Exception:  # nobody polls this job: say it in the log
            _LOGGER.exception("re-rendering the schedules after a lexicon change failed")
            raise
        return {}

    user = current_user()
    jobs().submit(user.id if user is not None else 0, "lexicon-render", render_all)


def _lexicon_errors(term: str, reading: str) -> dict[str, str]:
    errors = {}
    if not term:
        errors["term"] = "Vui lòng nhập từ hoặc chữ viết tắt."
    elif len(term) > 100 or "\n" in term:
        errors["term"] = "Từ viết tắt dài tối đa 100 ký tự, trên một dòng."
    if not reading:
        errors["reading"] = "Vui lòng nhập cách đọc."
    elif len(reading) > 500 or "\n" in reading:
        errors["reading"] = "Cách đọc dài tối đa 500 ký tự, trên một dòng."
    return errors


def _lexicon_page(
    values: dict[str, str], errors: dict[str, str], status: int = 200, edit_id: int | None = None
) -> Any:
    with _services().sessions() as session:
        entries = list(session.scalars(select(LexiconEntry).order_by(LexiconEntry.term)))
    return render_template(
        "lexicon.html", entries=entries, values=values, errors=errors, edit_id=edit_id
    ), status


@bp.route("/lexicon", methods=["GET", "POST"])
@login_required
def lexicon() -> Any:
    if request.method == "GET":
        return _lexicon_page({"term": "", "reading": ""}, {})
    term = nfc(request.form.get("term", "")).strip()
    reading = nfc(request.form.get("reading", "")).strip()
    entry_id = request.form.get("id")
    errors = _lexicon_errors(term, reading)
    if errors:
        return _lexicon_page(
            {"term": term, "reading": reading}, errors, 400, int(entry_id) if entry_id else None
        )
    with _services().sessions() as session, session.begin():
        existing = session.scalar(select(LexiconEntry).where(LexiconEntry.term == term))
        if entry_id:
            entry = session.get(LexiconEntry, int(entry_id))
            if entry is None:
                abort(404, description="Không tìm thấy mục từ điển này.")
            if existing is not None and existing.id != entry.id:
                return _lexicon_page(
                    {"term": term, "reading": reading},
                    {"term": f"“{term}” đã có trong từ điển."},
                    400,
                    entry.id,
                )
            entry.term, entry.reading, entry.updated_by = term, reading, _user_name()
        elif existing is not None:
            existing.reading, existing.updated_by = reading, _user_name()
        else:
            session.add(LexiconEntry(term=term, reading=reading, updated_by=_user_name()))
    _rerender_schedules()
    flash(
        f"Đã lưu: “{term}” đọc là “{reading}”. Áp dụng từ lần xem trước tiếp theo; "
        "âm thanh của các lịch phát định kỳ đang được tạo lại theo cách đọc mới.",
        "ok",
    )
    return redirect(url_for("ui.lexicon"))


@bp.route("/lexicon/<int:entry_id>/delete", methods=["POST"])
@login_required
def lexicon_delete(entry_id: int) -> Any:
    with _services().sessions() as session, session.begin():
        entry = session.get(LexiconEntry, entry_id)
        if entry is None:
            abort(404, description="Không tìm thấy mục từ điển này.")
        term = entry.term
        session.delete(entry)
    _rerender_schedules()
    flash(f"Đã xóa “{term}” khỏi từ điển.", "ok")
    return redirect(url_for("ui.lexicon"))


# --- speakers and zones (admin) -----------------------------------------------------------


def _registry() -> Any:
    """The services' Registry facade (its change hooks tell the managed broker about new
    credentials); a bare one over the same database when the services carry none."""
    services = _services()
    registry = getattr(services, "registry", None)
    if registry is None:
        registry = current_app.extensions.get("loa_registry")
        if registry is None:
            from broadcaster.fleet.registry import Registry

            _LOGGER.warning(
                "services have no registry: speaker changes will not reach the broker until restart"
            )
            registry = current_app.extensions.setdefault("loa_registry", Registry(services.sessions))
    return registry


def _speakers_page(
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    created: dict[str, str] | None = None,
    status: int = 200,
) -> Any:
    try:
        snapshot = {str(s.get("id")): s for s in _services().fleet.snapshot()}
    except Exception:
        _LOGGER.exception("fleet.snapshot failed")
        snapshot = {}
    return (
        render_template(
            "speakers.html",
            zones=zones_with_speakers(),
            live=snapshot,
            errors=errors or {},
            values=values or {},
            created=created,
        ),
        status,
    )


def _clean(name: str, limit: int = 200) -> str:
    return nfc(request.form.get(name, "")).strip()[:limit]


def _registry_action(call: Callable[[], Any], *, failed: str, done: str | None = None) -> Any:
    """Run one registry change for a speakers-page button: a RegistryError is flashed as
    "<failed>: <reason>" and sends the admin back to the page. On success, with ``done``, that is
    flashed and the page reloads; without it the call's result is returned for the view to show."""
    try:
        result = call()
    except RegistryError as exc:
        flash(f"{failed}: {error_text(exc)}", "error")
        return redirect(url_for("ui.speakers"))
    if done is None:
        return result
    flash(done, "ok")
    return redirect(url_for("ui.speakers"))


def _registry_error_to_form(exc: BaseException, errors: dict[str, str], prefix: str, form_key: str) -> None:
    field_name = getattr(exc, "field", None)
    mapping = {"id": f"{prefix}_id", "name": f"{prefix}_name", "zone": "speaker_zone"}
    if field_name in ("quiet_start", "quiet_end", "location"):
        errors[field_name] = error_text(exc)
    elif field_name in mapping:
        errors[mapping[field_name]] = error_text(exc)
    errors[form_key] = error_text(exc)


@bp.route("/speakers")
@roles_required()
def speakers() -> Any:
    return _speakers_page()


def _zone_errors(values: dict[str, str], new: bool) -> dict[str, str]:
    errors = {}
    if new and not _ID_RE.match(values.get("zone_id", "")):
        errors["zone_id"] = "Mã khu vực: chữ không dấu, số, dấu chấm hoặc gạch; không có khoảng trắng."
    if not values.get("zone_name"):
        errors["zone_name"] = "Vui lòng nhập tên khu vực."
    for key in ("quiet_start", "quiet_end"):
        if values.get(key) and not _TIME_RE.match(values[key]):
            errors[key] = "Giờ theo dạng giờ:phút, ví dụ 21:00."
    if bool(values.get("quiet_start")) != bool(values.get("quiet_end")):
        errors["quiet_end"] = "Cần cả giờ bắt đầu và giờ kết thúc giờ yên lặng."
    return errors


@bp.route("/zones", methods=["POST"])
@roles_required()
def zone_create() -> Any:
    values = {k: _clean(k) for k in ("zone_id", "zone_name", "quiet_start", "quiet_end")}
    errors = _zone_errors(values, new=True)
    if not errors:
        try:
            _registry().create_zone(
                values["zone_id"],
                values["zone_name"],
                values["quiet_start"] or None,
                values["quiet_end"] or None,
            )
        except RegistryError as exc:
            _registry_error_to_form(exc, errors, "zone", "zone_form")
    if errors:
        return _speakers_page(errors, values, status=400)
    flash(f"Đã thêm khu vực «{values['zone_name']}».", "ok")
    return redirect(url_for("ui.speakers"))


@bp.route("/zones/<zone_id>", methods=["POST"])
@roles_required()
def zone_update(zone_id: str) -> Any:
    values = {k: _clean(k) for k in ("zone_name", "quiet_start", "quiet_end")}
    errors = _zone_errors(values, new=False)
    if errors:
        flash("Không lưu được khu vực: " + " ".join(dict.fromkeys(errors.values())), "error")
        return redirect(url_for("ui.speakers"))
    return _registry_action(
        lambda: _registry().update_zone(
            zone_id,
            name=values["zone_name"],
            quiet_start=values["quiet_start"] or None,
            quiet_end=values["quiet_end"] or None,
        ),
        done=f"Đã lưu khu vực «{values['zone_name']}».",
        failed="Không lưu được khu vực",
    )


@bp.route("/zones/<zone_id>/delete", methods=["POST"])
@roles_required()
def zone_delete(zone_id: str) -> Any:
    return _registry_action(
        lambda: _registry().delete_zone(zone_id), done="Đã xóa khu vực.", failed="Không xóa được khu vực"
    )


@bp.route("/speakers", methods=["POST"])
@roles_required()
def speaker_create() -> Any:
    values = {k: _clean(k, 300) for k in ("speaker_id", "speaker_name", "speaker_zone", "location")}
    errors = {}
    if not _ID_RE.match(values["speaker_id"]):
        errors["speaker_id"] = "Mã cụm loa: chữ không dấu, số, dấu chấm hoặc gạch; không có khoảng trắng."
    if not values["speaker_name"]:
        errors["speaker_name"] = "Vui lòng nhập tên cụm loa."
    created = None
    if not errors:
        try:
            _speaker, password = _registry().create_speaker(
                values["speaker_id"],
                values["speaker_name"],
                values["speaker_zone"] or None,
                values["location"] or None,
            )
        except RegistryError as exc:
            _registry_error_to_form(exc, errors, "speaker", "speaker_form")
        else:
            created = {"id": values["speaker_id"], "name": values["speaker_name"], "password": password}
    if errors:
        return _speakers_page(errors, values, status=400)
    # Shown once, in this response only: never flashed (the session cookie is signed, not secret).
    return _speakers_page(created=created)


@bp.route("/speakers/<speaker_id>", methods=["POST"])
@roles_required()
def speaker_update(speaker_id: str) -> Any:
    name = _clean("speaker_name")
    if not name:
        flash("Vui lòng nhập tên cụm loa.", "error")
        return redirect(url_for("ui.speakers"))
    return _registry_action(
        lambda: _registry().update_speaker(
            speaker_id,
            name=name,
            zone=_clean("speaker_zone") or None,
            location=_clean("location", 300) or None,
        ),
        done=f"Đã lưu cụm loa «{name}».",
        failed="Không lưu được cụm loa",
    )


@bp.route("/speakers/<speaker_id>/delete", methods=["POST"])
@roles_required()
def speaker_delete(speaker_id: str) -> Any:
    return _registry_action(
        lambda: _registry().delete_speaker(speaker_id),
        done="Đã xóa cụm loa.",
        failed="Không xóa được cụm loa",
    )


@bp.route("/speakers/<speaker_id>/password", methods=["POST"])
@roles_required()
def speaker_password(speaker_id: str) -> Any:
    password = _registry_action(
        lambda: _registry().reset_speaker_password(speaker_id), failed="Không đặt lại được mật khẩu"
    )
    if not isinstance(password, str):  # failed: flashed, the redirect back to the page
        return password
    # Shown once, in this response only (like a new speaker's).
    return _speakers_page(
        created={"id": speaker_id, "name": speaker_id, "password": str(password), "reset": "1"}
    )


# --- users, account, settings (admin) -----------------------------------------------------


def _users_page(
    errors: dict[str, str] | None = None, values: dict[str, str] | None = None, status: int = 200
) -> Any:
    return (
        render_template(
            "users.html", users=list_users(_services().sessions), errors=errors or {}, values=values or {}
        ),
        status,
    )


@bp.route("/users", methods=["GET", "POST"])
@roles_required()
def users() -> Any:
    if request.method == "GET":
        return _users_page()
    values = {k: _clean(k) for k in ("username", "display_name", "role")}
    try:
        add_user(
            _services().sessions,
            values["username"],
            request.form.get("password", ""),
            values["role"],
            display_name=values["display_name"],
        )
    except UserError as exc:
        return _users_page({exc.field or "form": str(exc)}, values, 400)
    flash(f"Đã tạo tài khoản «{values['username']}».", "ok")
    return redirect(url_for("ui.users"))


@bp.route("/users/<int:user_id>", methods=["POST"])
@roles_required()
def user_update(user_id: int) -> Any:
    sessions = _services().sessions
    try:
        if request.form.get("password"):
            changed = set_password(sessions, user_id, request.form["password"])
            me = current_user()
            if me is not None and me.id == user_id:  # an admin's own sessions elsewhere end; this one stays
                remember_password(changed)
        update_user(
            sessions,
            user_id,
            role=request.form.get("role") or None,
            active=request.form.get("active") == "on",
            display_name=request.form.get("display_name"),
        )
    except UserError as exc:
        flash(f"Không lưu được: {exc}", "error")
    else:
        flash("Đã lưu tài khoản.", "ok")
    return redirect(url_for("ui.users"))


@bp.route("/account", methods=["GET", "POST"])
@login_required
def account() -> Any:
    errors: dict[str, str] = {}
    if request.method == "POST":
        user = current_user()
        assert user is not None
        from broadcaster.web.users import authenticate

        if authenticate(_services().sessions, user.username, request.form.get("current", "")) is None:
            errors["current"] = "Mật khẩu hiện tại không đúng."
        new = request.form.get("new", "")
        if request.form.get("confirm", "") != new:
            errors["confirm"] = "Hai lần nhập mật khẩu mới không khớp."
        try:
            check_password(new)
        except UserError as exc:
            errors["new"] = str(exc)
        if not errors:
            remember_password(set_password(_services().sessions, user.id, new))
            flash("Đã đổi mật khẩu. Các phiên đăng nhập khác của bạn đã kết thúc.", "ok")
            return redirect(url_for("ui.dashboard"))
    return render_template("account.html", errors=errors), 400 if errors else 200


@bp.route("/settings", methods=["GET", "POST"])
@roles_required()
def settings_page() -> Any:
    if request.method == "POST":
        _set_setting("approval_required", request.form.get("approval_required") == "on")
        flash("Đã lưu cài đặt.", "ok")
        return redirect(url_for("ui.settings_page"))
    return render_template("settings.html", approval_required=approval_required())

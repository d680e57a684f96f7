"""The dashboard: every cluster live (polled as JSON), recent items, notices about voices set aside,
"Dừng tất cả", volume.

"Dừng tất cả" follows the tiers (issue 13): an approver or admin stops everything, an emergency
included; an editor, who may only write normal items, stops the normal items only, and the button
and its dialog say so. API tokens are operators: ``POST /api/stop`` stops everything."""

from __future__ import annotations

import logging
from typing import Any

from flask import Response, flash, jsonify, redirect, render_template, request, url_for

from broadcaster.broadcasts import BroadcastError
from broadcaster.broadcasts.views import broadcast_state_label, tier_label
from broadcaster.domain import ALL_TARGETS, Tier
from broadcaster.models import BroadcastState, DeliveryState, Role
from broadcaster.web.auth import current_user, has_role, login_required, roles_required
from broadcaster.web.engines import engine_notices
from broadcaster.web.ui import (
    ALL_TARGETS_LABEL,
    NO_ZONE_LABEL,
    bp,
    broadcast_views,
    describe_targets,
    error_text,
    fmt_local,
    now,
    officer_lexicon,
    services,
    target_names,
    user_name,
    zones_with_speakers,
)
from broadcaster.web.ui.filters import ago, state_class

_LOGGER = logging.getLogger(__name__)

ALERT_KIND_VI = {
    "offline": "Mất kết nối",
    "amplifier": "Bộ khuếch đại",
    "error": "Lỗi",
    "stale": "Lâu không báo cáo",
}
VOLUME_ROLE_MESSAGE = "Chỉ người phê duyệt hoặc quản trị viên mới được đổi âm lượng loa."
# What an editor's "Dừng" stops: normal items that are being prepared, waiting or playing.
_STOPPABLE_STATES = (BroadcastState.RENDERING, BroadcastState.SENDING, BroadcastState.PLAYING)
# At most this many items of one state are looked at: a commune never has more going at once.
_STOP_SCAN_LIMIT = 1000


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
        items = services().broadcasts.list(limit=limit)
    except Exception:
        _LOGGER.exception("broadcasts.list failed")
        return []
    out = []
    names = target_names()
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
                "state_label": broadcast_state_label(b.get("state")),
                "state_class": state_class(b.get("state")),
                "tier": tier_label(b.get("tier")),
                "targets": describe_targets(b.get("targets"), names),
                "when": fmt_local(b.get("start_at") or b.get("scheduled_at"), "%H:%M %d/%m"),
                "done": done,
                "playing": playing,
                "total": sum(counts.values()),
                "interruptions": b.get("interruptions") or "",
                "url": url_for("ui.broadcast_detail", broadcast_id=b.get("id")),
            }
        )
    return out


def _source_alerts() -> list[str]:
    """Active alerts of the controller itself (a relay source that stalled), not of a cluster."""
    source_alerts = getattr(services(), "source_alerts", None)
    if source_alerts is None:
        return []
    try:
        return [a["message"] for a in source_alerts.active()]
    except Exception:
        _LOGGER.exception("source alerts unreadable")
        return []


def dashboard_data() -> dict[str, Any]:
    try:
        snapshot = services().fleet.snapshot()
    except Exception:
        _LOGGER.exception("fleet.snapshot failed")
        snapshot = []
    zone_names = {g["id"]: g["name"] for g in zones_with_speakers() if g["id"]}
    groups: dict[str, dict[str, Any]] = {}
    for sp in sorted(snapshot, key=lambda s: (str(s.get("zone") or "~"), str(s.get("name") or s.get("id")))):
        view = speaker_view(sp)
        zone = sp.get("zone") or ""
        group = groups.setdefault(
            zone, {"id": zone, "name": zone_names.get(zone, zone) or NO_ZONE_LABEL, "speakers": []}
        )
        group["speakers"].append(view)
    speakers = [s for g in groups.values() for s in g["speakers"]]
    sources = _source_alerts()
    return {
        "notices": engine_notices(services().speech),
        "zones": list(groups.values()),
        "online": sum(1 for s in speakers if s["online"]),
        "total": len(speakers),
        "playing": sum(1 for s in speakers if s["playing"]),
        "alerts": sum(len(s["alerts"]) for s in speakers) + len(sources),
        "source_alerts": sources,
        "recent": _recent_view(),
        "updated": fmt_local(now(), "%H:%M:%S"),
    }


def pending_count() -> int:
    """Items and schedules waiting for an approver (the dashboard's "Chờ duyệt (n)")."""
    try:
        return broadcast_views().pending_count() + officer_lexicon().pending_count()
    except Exception:
        _LOGGER.exception("pending count failed")
        return 0


def _volume_targets() -> list[tuple[str, str]]:
    """(value, label) of the volume form's "where": every cluster, then each zone."""
    zones = [(g["id"], g["name"]) for g in zones_with_speakers() if g["id"]]
    return [(ALL_TARGETS, ALL_TARGETS_LABEL), *zones]


def _dashboard_page(volume: dict[str, str] | None = None, volume_error: str = "", status: int = 200) -> Any:
    return (
        render_template(
            "dashboard.html",
            data=dashboard_data(),
            pending=pending_count(),
            volume_targets=_volume_targets(),
            volume=volume or {"target": ALL_TARGETS, "volume": ""},
            volume_error=volume_error,
            everything=stops_everything(),
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


def stops_everything() -> bool:
    """Whether this officer's "Dừng" stops priority and emergency items too (approver, admin)."""
    return has_role(current_user(), Role.APPROVER.value)


def _stop_normal_items() -> int:
    """An editor's stop: cancel every normal item being prepared, waiting or playing; priority and
    emergency items go on. Returns how many were stopped."""
    manager = services().broadcasts
    stopped = 0
    for state in _STOPPABLE_STATES:
        for item in manager.list(limit=_STOP_SCAN_LIMIT, state=state.value):
            if item.get("tier") == Tier.NORMAL.value and manager.cancel(int(item["id"]), by=user_name()):
                stopped += 1
    return stopped


@bp.route("/stop-all", methods=["GET", "POST"])
@roles_required(Role.EDITOR.value, Role.APPROVER.value)
def stop_all() -> Any:
    everything = stops_everything()
    if request.method == "GET":  # the confirmation page for browsers without the dialog script
        return render_template("stop_confirm.html", everything=everything)
    if everything:
        services().broadcasts.stop_all(by=user_name(), reason="Dừng tất cả từ giao diện web")
        _LOGGER.warning("stop all requested by %s", user_name())
        flash("Đã gửi lệnh dừng tới tất cả cụm loa.", "ok")
    else:
        stopped = _stop_normal_items()
        _LOGGER.warning("stop of the normal items requested by %s: %s stopped", user_name(), stopped)
        flash(
            f"Đã dừng {stopped} tin thông thường. Tin ưu tiên và tin khẩn cấp vẫn phát: chỉ người phê "
            "duyệt hoặc quản trị viên dừng được.",
            "ok",
        )
    return redirect(url_for("ui.dashboard"))


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
            speakers = services().broadcasts.set_volume([values["target"]], volume, by=user_name())
        except BroadcastError as exc:
            error = f"Không đặt được âm lượng: {error_text(exc)}"
    if error:
        return _dashboard_page(values, error, 400)
    _LOGGER.info("volume %s%% on %s set by %s", volume, values["target"], user_name())
    flash(
        f"Đã gửi lệnh đặt âm lượng {volume}% tới {len(speakers)} cụm loa ({labels[values['target']]}).", "ok"
    )
    return redirect(url_for("ui.dashboard"))

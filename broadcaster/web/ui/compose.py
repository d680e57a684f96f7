"""Composing an announcement: the form, "Phát ngay" / "Hẹn giờ", who will hear it (in words, from
the one target resolver), the preview (the text as it will be read at once, the audio on a
worker), the job status the page polls and the audio it plays."""

from __future__ import annotations

import logging
from typing import Any

from flask import abort, flash, jsonify, redirect, render_template, request, send_file, url_for

from broadcaster.broadcasts.validation import AUDIO_KEY_RE, AnnouncementInvalid
from broadcaster.broadcasts.views import broadcast_state_label, tier_label
from broadcaster.domain import ALL_TARGETS, Announcement, Source, Tier
from broadcaster.fleet.targets import TargetError, check_target_list
from broadcaster.models import Approval, BroadcastState
from broadcaster.speech import normalization_message_vi
from broadcaster.textnorm import NormalizationError
from broadcaster.web.auth import current_user, login_required
from broadcaster.web.engines import voice_groups
from broadcaster.web.ui import (
    SCHEDULING_ERRORS,
    WEEKDAYS,
    bp,
    check_tier_allowed,
    engine_choices,
    fmt_local,
    needs_approval,
    now,
    officer_lexicon,
    parse_time,
    repeat_limit,
    scheduler,
    service_error_to_form,
    services,
    user_name,
    zones_with_speakers,
)
from broadcaster.web.ui.clashes import clash_warning
from broadcaster.web.ui.forms import (
    RECURRING,
    announcement_draft,
    collapsed_targets,
    form_values,
    schedule_data,
    validate_announcement,
    validate_schedule,
)
from broadcaster.web.ui.jobs import jobs, render_result_json
from broadcaster.web.ui.preview import preview_segments

_LOGGER = logging.getLogger(__name__)

TIER_HELP_VI = {
    Tier.NORMAL.value: "Phát theo lượt, sau các tin đang phát.",
    Tier.PRIORITY.value: "Phát trước các tin thông thường đang chờ.",
    Tier.EMERGENCY.value: "Ngắt mọi tin đang phát và phát ngay lập tức.",
}


def tier_choices() -> list[tuple[str, str, str]]:
    """(value, label, help) of the tier picker."""
    return [(t.value, tier_label(t), TIER_HELP_VI[t.value]) for t in Tier]


def targets_summary(targets: list[str]) -> tuple[str, bool]:
    """Who will hear it, in words, from the one target resolver ("Sẽ phát tới 3 cụm loa ở Thôn
    Đông."), or the resolver's reason why the choice cannot be sent (False)."""
    chosen = [t for t in targets if t]
    if not chosen:
        return "Chưa chọn nơi phát: hãy chọn «Tất cả loa», một khu vực hoặc từng cụm loa.", False
    try:
        checked = check_target_list(chosen)
        services().targets.resolve(checked)
    except TargetError as exc:
        return exc.message, False
    return f"Sẽ phát tới {services().targets.describe(checked)}.", True


def compose_page(values: dict[str, Any], errors: dict[str, str], status: int = 200) -> Any:
    user = current_user()
    summary, _ = targets_summary(values["targets"])
    return (
        render_template(
            "compose.html",
            values=values,
            errors=errors,
            zones=zones_with_speakers(),
            engines=engine_choices(),
            voice_groups=voice_groups(services().speech),
            tiers=tier_choices(),
            weekdays=WEEKDAYS,
            max_repeat=repeat_limit(),
            max_chars=services().settings.textnorm.max_chars,
            needs_approval=user is not None and needs_approval(Tier.NORMAL.value),
            today=fmt_local(now(), "%Y-%m-%d"),
            targets_summary=summary,
        ),
        status,
    )


def _default_values() -> dict[str, Any]:
    values = form_values(request.args)
    values["targets"] = values["targets"] or [ALL_TARGETS]
    values["when"] = "once"
    return values


def sent_message(broadcast_id: int, title: str, targets: tuple[str, ...]) -> str:
    """What the flash says after "Phát ngay": true to the broadcast's state right now (sent and
    waiting, or playing, or due at a time), never "started" for an item only queued."""
    who = services().targets.describe(list(targets))
    item = services().broadcasts.get(broadcast_id) or {}
    state = item.get("state")
    start_at = parse_time(item.get("start_at") or item.get("scheduled_at"))
    if state == BroadcastState.PLAYING.value:
        return f"Đang phát «{title}» tới {who}."
    if start_at is not None and start_at > now():
        return f"Đã gửi «{title}» tới {who}, sẽ phát lúc {fmt_local(start_at, '%H:%M:%S')}."
    return f"Đã gửi «{title}» tới {who}. {broadcast_state_label(BroadcastState.SENDING.value)}."


@bp.route("/compose", methods=["GET", "POST"])
@login_required
def compose() -> Any:
    if request.method == "GET":
        return compose_page(_default_values(), {})
    values = form_values(request.form)
    action = request.form.get("action", "now")
    errors: dict[str, str] = {}
    validate_announcement(values, errors)
    if "tier" not in errors:
        check_tier_allowed(values["tier"])
    sched: dict[str, Any] = {}
    recurring = values["when"] in RECURRING
    if action == "schedule":
        sched = validate_schedule(values, errors)
        if recurring and values["audio_key"]:
            errors["audio"] = "Lịch phát định kỳ chưa dùng được bản ghi âm; vui lòng dùng nội dung văn bản."
    elif action != "now":
        errors["form"] = "Thao tác không hợp lệ."
    if errors:
        errors.setdefault("form", "Chưa gửi được: vui lòng sửa các mục được đánh dấu bên dưới.")
        return compose_page(values, errors, 400)
    waits = needs_approval(values["tier"])
    try:
        if action == "schedule" and recurring:
            data = schedule_data(values, sched, approval=Approval.PENDING.value if waits else None)
            schedule_id = scheduler().create_schedule(data, author=user_name())
            _LOGGER.info("schedule %s created by %s", schedule_id, user_name())
            flash("Đã lưu lịch phát định kỳ." + (" Lịch đang chờ người phê duyệt." if waits else ""), "ok")
            warning = clash_warning(schedule_id=schedule_id)
            if warning:
                flash(warning, "warn")
            return redirect(url_for("ui.schedule"))
        ann = Announcement(
            text=values["text"].strip(),
            tier=Tier(values["tier"]),
            targets=collapsed_targets(values),
            title=values["title"].strip(),
            repeat=int(values["repeat"]),
            engine=values["engine"] or None,
            voice=values["voice"] or None,
            at=sched.get("at"),
            author=user_name(),
            source=Source.WEB,
            audio_key=values["audio_key"] or None,  # type: ignore[arg-type]
        )
        broadcast_id = services().broadcasts.submit(ann, approved=not waits)
    except SCHEDULING_ERRORS as exc:
        _LOGGER.info("compose rejected: %s", exc)
        service_error_to_form(exc, errors, "Không gửi được")
        return compose_page(values, errors, 400)
    title = values["title"].strip() or "thông báo"
    if waits:
        flash(f"Đã gửi «{title}» để phê duyệt. Tin sẽ chỉ được phát sau khi người phê duyệt đồng ý.", "ok")
        return redirect(url_for("ui.approvals"))
    if sched.get("at"):
        flash(f"Đã hẹn giờ phát «{title}» lúc {fmt_local(sched['at'], '%H:%M ngày %d/%m/%Y')}.", "ok")
        warning = clash_warning(broadcast_id=broadcast_id)
        if warning:
            flash(warning, "warn")
        return redirect(url_for("ui.schedule", start=fmt_local(sched["at"], "%Y-%m-%d")))
    flash(sent_message(broadcast_id, title, ann.targets), "ok")
    return redirect(url_for("ui.dashboard", b=broadcast_id))


@bp.route("/compose/targets")
@login_required
def compose_targets() -> Any:
    """Who will hear the ticked targets, in words (the page asks after each tick)."""
    text, ok = targets_summary(request.args.getlist("targets"))
    return jsonify(summary=text, ok=ok)


@bp.route("/compose/preview", methods=["POST"])
@login_required
def compose_preview() -> Any:
    """Normalized text at once; the audio on a worker (poll ``/jobs/<id>``)."""
    values = form_values(request.form)
    text = values["text"].strip()
    if not text and not values["audio_key"]:
        return jsonify(errors={"text": "Vui lòng nhập nội dung để xem trước."}), 400
    if values["audio_key"] and not text:
        if not AUDIO_KEY_RE.match(values["audio_key"]) or not services().speech.store.has(
            values["audio_key"]
        ):
            return jsonify(errors={"audio": "Bản ghi âm không còn trên máy chủ. Vui lòng tải lên lại."}), 400
        return jsonify(
            segments=[], normalized_text="", audio_url=url_for("ui.audio", key=values["audio_key"])
        )
    try:
        checked = services().validator.check(
            announcement_draft(values), only=frozenset({"text", "repeat", "engine", "voice"})
        )
    except AnnouncementInvalid as exc:
        return jsonify(errors=exc.errors), 400
    repeat = checked.repeat
    overrides = officer_lexicon().overrides()
    try:
        normalized, segments = preview_segments(text, overrides)
    except NormalizationError as exc:
        return jsonify(errors={"text": normalization_message_vi(exc)}), 400
    speech = services().speech
    engine, voice = values["engine"] or None, values["voice"] or None

    def render() -> dict[str, Any]:
        result = speech.render(text, engine=engine, voice=voice, repeat=repeat, chime=True, lexicon=overrides)
        return render_result_json(result)

    user = current_user()
    assert user is not None
    job_id = jobs().submit(user.id, "preview", render)
    return jsonify(
        normalized_text=normalized,
        segments=segments,
        changed=sum(1 for s in segments if s["original"] is not None),
        flagged=sum(1 for s in segments if s["note"]),
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
    if not AUDIO_KEY_RE.match(key):
        abort(404)
    store = services().speech.store
    if not store.has(key):
        abort(404, description="Không tìm thấy tệp âm thanh.")
    return send_file(store.path(key), mimetype="audio/mpeg", conditional=True, max_age=3600)

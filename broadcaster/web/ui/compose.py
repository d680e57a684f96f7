"""Composing an announcement: the form, "Phát ngay" / "Hẹn giờ", the preview (normalized text at
once, the audio on a worker), the job status the page polls and the audio it plays."""

from __future__ import annotations

import logging
from typing import Any

from flask import abort, current_app, flash, jsonify, redirect, render_template, request, send_file, url_for

from broadcaster.broadcasts.validation import AUDIO_KEY_RE, AnnouncementInvalid
from broadcaster.broadcasts.views import tier_label
from broadcaster.domain import ALL_TARGETS, Announcement, Source, Tier
from broadcaster.models import Approval
from broadcaster.textnorm import NormalizationError
from broadcaster.web.auth import current_user, login_required
from broadcaster.web.ui import (
    SCHEDULING_ERRORS,
    WEEKDAYS,
    bp,
    check_tier_allowed,
    describe_targets,
    engine_choices,
    fmt_local,
    needs_approval,
    now,
    officer_lexicon,
    repeat_limit,
    scheduler,
    service_error_to_form,
    services,
    user_name,
    zones_with_speakers,
)
from broadcaster.web.ui.forms import (
    announcement_draft,
    collapsed_targets,
    form_values,
    schedule_data,
    validate_announcement,
    validate_schedule,
)
from broadcaster.web.ui.jobs import jobs, render_result_json

_LOGGER = logging.getLogger(__name__)

NORMALIZER_KEY = "loa_normalizer"
TIER_HELP_VI = {
    Tier.NORMAL.value: "Phát theo lượt, sau các tin đang phát.",
    Tier.PRIORITY.value: "Phát trước các tin thông thường đang chờ.",
    Tier.EMERGENCY.value: "Ngắt mọi tin đang phát và phát ngay lập tức.",
}


def tier_choices() -> list[tuple[str, str, str]]:
    """(value, label, help) of the tier picker."""
    return [(t.value, tier_label(t), TIER_HELP_VI[t.value]) for t in Tier]


def _base_normalizer() -> Any:
    found = services()
    existing = getattr(found, "normalizer", None)
    if existing is not None:
        return existing
    cached = current_app.extensions.get(NORMALIZER_KEY)
    if cached is None:
        from broadcaster.textnorm import Normalizer

        cached = Normalizer.from_config(found.settings.textnorm)
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


def compose_page(values: dict[str, Any], errors: dict[str, str], status: int = 200) -> Any:
    user = current_user()
    return (
        render_template(
            "compose.html",
            values=values,
            errors=errors,
            zones=zones_with_speakers(),
            engines=engine_choices(),
            tiers=tier_choices(),
            weekdays=WEEKDAYS,
            max_repeat=repeat_limit(),
            max_chars=services().settings.textnorm.max_chars,
            needs_approval=user is not None and needs_approval(Tier.NORMAL.value),
            today=fmt_local(now(), "%Y-%m-%d"),
        ),
        status,
    )


def _default_values() -> dict[str, Any]:
    values = form_values(request.args)
    values["targets"] = values["targets"] or [ALL_TARGETS]
    values["when"] = "once"
    return values


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
    if action == "schedule":
        sched = validate_schedule(values, errors)
        if values["when"] == "weekly" and values["audio_key"]:
            errors["audio"] = "Lịch phát định kỳ chưa dùng được bản ghi âm; vui lòng dùng nội dung văn bản."
    elif action != "now":
        errors["form"] = "Thao tác không hợp lệ."
    if errors:
        errors.setdefault("form", "Chưa gửi được: vui lòng sửa các mục được đánh dấu bên dưới.")
        return compose_page(values, errors, 400)
    waits = needs_approval(values["tier"])
    try:
        if action == "schedule" and values["when"] == "weekly":
            data = schedule_data(values, sched, approval=Approval.PENDING.value if waits else None)
            schedule_id = scheduler().create_schedule(data, author=user_name())
            _LOGGER.info("schedule %s created by %s", schedule_id, user_name())
            flash("Đã lưu lịch phát định kỳ." + (" Lịch đang chờ người phê duyệt." if waits else ""), "ok")
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
        return redirect(url_for("ui.schedule", start=fmt_local(sched["at"], "%Y-%m-%d")))
    flash(f"Đã bắt đầu phát «{title}» tới {describe_targets(ann.targets)}.", "ok")
    return redirect(url_for("ui.dashboard", b=broadcast_id))


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
        return jsonify(errors={"text": f"Không đọc được nội dung: {exc}"}), 400
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

"""Approvals: items, recurring bulletins and lexicon changes waiting for an approver, who can
listen to an item before approving it; a broadcast's own page (it refreshes itself) and its
"Hủy bản tin"."""

from __future__ import annotations

from typing import Any

from flask import Response, abort, flash, jsonify, redirect, render_template, request, url_for
from sqlalchemy import select

from broadcaster.broadcasts import BroadcastError
from broadcaster.broadcasts.validation import AUDIO_KEY_RE
from broadcaster.broadcasts.views import broadcast_state_label
from broadcaster.domain import Tier, nfc
from broadcaster.models import Announcement, Approval, Broadcast, BroadcastState, Role
from broadcaster.web.auth import current_user, login_required, roles_required, safe_next
from broadcaster.web.ui import (
    SCHEDULING_ERRORS,
    WEEKDAYS,
    bp,
    broadcast_views,
    check_tier_allowed,
    error_text,
    officer_lexicon,
    scheduler,
    services,
    target_names,
    user_name,
)
from broadcaster.web.ui.jobs import jobs, render_result_json

APPROVER_MESSAGE = "Chỉ người phê duyệt mới được duyệt tin."
# At most this many waiting items on the page: an approver works through them from the top.
PENDING_PAGE_SIZE = 200


def _get_broadcast(broadcast_id: int) -> dict[str, Any]:
    item = services().broadcasts.get(broadcast_id)
    if item is None:
        abort(404, description="Không tìm thấy bản tin này.")
    return item


def _announcement_id(item: dict[str, Any]) -> int:
    if item.get("announcement_id") is not None:
        return int(item["announcement_id"])
    found = broadcast_views().announcement_id(int(item["id"]))
    if found is None:
        abort(404, description="Không tìm thấy bản tin này.")
    return found


def _finished(item: dict[str, Any]) -> bool:
    try:
        return BroadcastState(str(item.get("state"))).finished
    except ValueError:
        return False


@bp.route("/broadcasts/<id:broadcast_id>")
@login_required
def broadcast_detail(broadcast_id: int) -> str:
    item = _get_broadcast(broadcast_id)
    return render_template("broadcast.html", b=item, names=target_names(), final=_finished(item))


@bp.route("/broadcasts/<id:broadcast_id>/live")
@login_required
def broadcast_live(broadcast_id: int) -> Response:
    """The broadcast's page as JSON, for the page to refresh itself until the item is over."""
    item = _get_broadcast(broadcast_id)
    final = _finished(item)
    html = render_template("broadcast.html", b=item, names=target_names(), final=final, fragment=True)
    return jsonify(
        id=item["id"],
        state=item.get("state"),
        state_label=broadcast_state_label(item.get("state")),
        final=final,
        html=html,
    )


@bp.route("/broadcasts/<id:broadcast_id>/cancel", methods=["POST"])
@roles_required(Role.EDITOR.value, Role.APPROVER.value)
def broadcast_cancel(broadcast_id: int) -> Any:
    item = _get_broadcast(broadcast_id)
    if item.get("tier") != Tier.NORMAL.value:
        check_tier_allowed(str(item.get("tier")))
    if services().broadcasts.cancel(broadcast_id, by=user_name()):
        flash("Đã hủy bản tin.", "ok")
    else:
        flash("Bản tin này đã kết thúc, không còn gì để hủy.", "warn")
    back = url_for("ui.broadcast_detail", broadcast_id=broadcast_id)
    return redirect(safe_next(request.form.get("back"), default=back))


@bp.route("/approvals")
@login_required
def approvals() -> str:
    items = services().broadcasts.list(limit=PENDING_PAGE_SIZE, state=BroadcastState.PENDING_APPROVAL.value)
    return render_template(
        "approvals.html",
        items=items,
        schedules=broadcast_views().pending_schedules(),
        lexicon_changes=officer_lexicon().proposals(),
        names=target_names(),
        weekdays=dict(WEEKDAYS),
    )


def _as_it_will_air(broadcast_id: int) -> dict[str, Any] | None:
    """The announcement fields that decide the sound (text, engine, voice, repeat, recording):
    the broadcast views do not carry voice and repeat, which the approver must hear as they are."""
    with services().sessions() as session:
        row = session.execute(
            select(Announcement.text, Announcement.engine, Announcement.voice, Announcement.repeat,
                   Announcement.audio_key)
            .join(Broadcast, Broadcast.announcement_id == Announcement.id)
            .where(Broadcast.id == broadcast_id)
        ).first()  # fmt: skip
    return None if row is None else dict(row._mapping)


@bp.route("/approvals/<id:broadcast_id>/listen", methods=["POST"])
@login_required
def approval_listen(broadcast_id: int) -> Any:
    """Render the item exactly as it will air (same text, voice, repeats, readings: approving it
    later reuses this audio) on a worker; a recording is played as it is."""
    fields = _as_it_will_air(broadcast_id)
    if fields is None:
        abort(404, description="Không tìm thấy bản tin này.")
    speech = services().speech
    key = fields.get("audio_key")
    if key:
        if not AUDIO_KEY_RE.match(key) or not speech.store.has(key):
            return jsonify(error="Bản ghi âm của tin này không còn trên máy chủ."), 404
        return jsonify(audio_url=url_for("ui.audio", key=key))
    overrides = officer_lexicon().overrides()

    def render() -> dict[str, Any]:
        result = speech.render(
            fields["text"],
            engine=fields.get("engine"),
            voice=fields.get("voice"),
            repeat=int(fields.get("repeat") or 1),
            chime=True,
            lexicon=overrides or None,
        )
        return render_result_json(result)

    user = current_user()
    assert user is not None
    job_id = jobs().submit(user.id, "listen", render)
    return jsonify(job=job_id, status_url=url_for("ui.job_status", job_id=job_id))


@bp.route("/approvals/<id:broadcast_id>/<decision>", methods=["POST"])
@roles_required(Role.APPROVER.value, message=APPROVER_MESSAGE)
def approval_decide(broadcast_id: int, decision: str) -> Any:
    item = _get_broadcast(broadcast_id)
    ann_id = _announcement_id(item)
    broadcasts = services().broadcasts
    try:
        if decision == "approve":
            broadcasts.approve(ann_id, by=user_name())
            flash(f"Đã duyệt «{item.get('title') or 'bản tin'}». Tin sẽ được phát.", "ok")
        elif decision == "reject":
            reason = nfc(request.form.get("reason", "")).strip()[:500]
            broadcasts.reject(ann_id, by=user_name(), reason=reason)
            flash(f"Đã từ chối «{item.get('title') or 'bản tin'}».", "ok")
        else:
            abort(404)
    except BroadcastError as exc:
        flash(f"Không thực hiện được: {error_text(exc)}", "error")
    return redirect(url_for("ui.approvals"))


@bp.route("/approvals/schedule/<id:schedule_id>/<decision>", methods=["POST"])
@roles_required(Role.APPROVER.value, message=APPROVER_MESSAGE)
def approval_schedule(schedule_id: int, decision: str) -> Any:
    found = scheduler()
    if decision not in ("approve", "reject"):
        abort(404)
    try:
        found.get_schedule(schedule_id)
    except SCHEDULING_ERRORS:
        abort(404, description="Không tìm thấy lịch phát này.")
    approval = Approval.APPROVED.value if decision == "approve" else Approval.REJECTED.value
    try:
        found.update_schedule(schedule_id, {"approval": approval})
    except SCHEDULING_ERRORS as exc:
        flash(f"Không thực hiện được: {error_text(exc)}", "error")
    else:
        flash("Đã duyệt lịch phát." if decision == "approve" else "Đã từ chối lịch phát.", "ok")
    return redirect(url_for("ui.approvals"))

"""Approvals: items and recurring bulletins waiting for an approver; a broadcast's own page and
its "Hủy bản tin"."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for

from broadcaster.broadcasts import BroadcastError
from broadcaster.domain import Tier, nfc
from broadcaster.models import Approval, BroadcastState, Role
from broadcaster.web.auth import login_required, roles_required, safe_next
from broadcaster.web.ui import (
    SCHEDULING_ERRORS,
    WEEKDAYS,
    bp,
    broadcast_views,
    check_tier_allowed,
    error_text,
    scheduler,
    services,
    target_names,
    user_name,
)

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


@bp.route("/broadcasts/<id:broadcast_id>")
@login_required
def broadcast_detail(broadcast_id: int) -> str:
    item = _get_broadcast(broadcast_id)
    return render_template("broadcast.html", b=item, names=target_names())


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
        names=target_names(),
        weekdays=dict(WEEKDAYS),
    )


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

"""The lexicon page: officers teach the system how to read an abbreviation or a word.

A reading changes every later render, approved recurring bulletins included, so it follows the
same rule as announcements: while approval is required (the settings page), an editor's change is
sent to an approver (``Lexicon.propose``) and applies only once accepted on the approvals page;
an approver's or admin's change applies at once. The page says which before the officer saves."""

from __future__ import annotations

import logging
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for

from broadcaster.domain import Tier, nfc
from broadcaster.lexicon import LexiconError
from broadcaster.models import Role
from broadcaster.web import MAX_ID
from broadcaster.web.auth import current_user, login_required, roles_required
from broadcaster.web.ui import bp, error_text, needs_approval, officer_lexicon, services, user_name
from broadcaster.web.ui.forms import lexicon_errors
from broadcaster.web.ui.jobs import jobs

_LOGGER = logging.getLogger(__name__)

APPROVER_MESSAGE = "Chỉ người phê duyệt mới được duyệt thay đổi từ điển."


def rerender_schedules() -> None:
    """After a lexicon change: re-render the scheduled bulletins on a worker, so they air with the
    new reading (``SchedulerService.render_all``; cache hits cost nothing). The request does not wait."""
    scheduler = services().scheduler
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


def _proposes() -> bool:
    """Whether this officer's changes wait for an approver (an editor, approval required)."""
    return needs_approval(Tier.NORMAL.value)


def _form_id(value: str) -> int | None:
    """The entry id a form sends back: None when absent; a number no row can have is a 404."""
    if not value:
        return None
    if not value.isdigit() or not 0 < int(value) <= MAX_ID:
        abort(404, description="Không tìm thấy mục từ điển này.")
    return int(value)


def _lexicon_page(
    values: dict[str, str], errors: dict[str, str], status: int = 200, edit_id: int | None = None
) -> Any:
    lexicon = officer_lexicon()
    return render_template(
        "lexicon.html",
        entries=lexicon.entries(),
        proposals=lexicon.proposals(),
        proposes=_proposes(),
        values=values,
        errors=errors,
        edit_id=edit_id,
    ), status


@bp.route("/lexicon", methods=["GET", "POST"])
@login_required
def lexicon() -> Any:
    if request.method == "GET":
        return _lexicon_page({"term": "", "reading": ""}, {})
    term = nfc(request.form.get("term", "")).strip()
    reading = nfc(request.form.get("reading", "")).strip()
    entry_id = _form_id(request.form.get("id", ""))
    errors = lexicon_errors(term, reading)
    if errors:
        return _lexicon_page({"term": term, "reading": reading}, errors, 400, entry_id)
    try:
        if _proposes():
            officer_lexicon().propose(term, reading, by=user_name(), entry_id=entry_id)
        else:
            officer_lexicon().save(term, reading, by=user_name(), entry_id=entry_id)
    except LexiconError as exc:
        if exc.not_found:
            abort(404, description=error_text(exc))
        errors[exc.field or "term"] = error_text(exc)
        return _lexicon_page({"term": term, "reading": reading}, errors, 400, entry_id)
    if _proposes():
        flash(
            f"Đã gửi đề xuất «{term}» đọc là «{reading}» tới người phê duyệt. Cách đọc mới chỉ được "
            "dùng sau khi được duyệt; các bản tin và lịch phát đã duyệt vẫn đọc như cũ.",
            "ok",
        )
        return redirect(url_for("ui.lexicon"))
    rerender_schedules()
    flash(
        f"Đã lưu: «{term}» đọc là «{reading}». Áp dụng cho mọi bản tin phát từ nay, kể cả các lịch "
        "phát định kỳ (âm thanh của chúng đang được tạo lại theo cách đọc mới).",
        "ok",
    )
    return redirect(url_for("ui.lexicon"))


@bp.route("/lexicon/<id:entry_id>/delete", methods=["POST"])
@login_required
def lexicon_delete(entry_id: int) -> Any:
    lexicon = officer_lexicon()
    try:
        if _proposes():
            proposal = lexicon.propose("", None, by=user_name(), entry_id=entry_id)
            flash(f"Đã gửi đề xuất xóa «{proposal.term}» tới người phê duyệt.", "ok")
            return redirect(url_for("ui.lexicon"))
        term = lexicon.delete(entry_id)
    except LexiconError as exc:
        abort(404, description=error_text(exc))
    rerender_schedules()
    flash(f"Đã xóa «{term}» khỏi từ điển.", "ok")
    return redirect(url_for("ui.lexicon"))


@bp.route("/approvals/lexicon/<id:change_id>/<decision>", methods=["POST"])
@roles_required(Role.APPROVER.value, message=APPROVER_MESSAGE)
def lexicon_decide(change_id: int, decision: str) -> Any:
    """An approver accepts (the reading applies from now on) or refuses an editor's proposal."""
    if decision not in ("approve", "reject"):
        abort(404)
    lexicon = officer_lexicon()
    try:
        if decision == "approve":
            proposal = lexicon.approve(change_id, by=user_name())
        else:
            reason = nfc(request.form.get("reason", "")).strip()
            proposal = lexicon.reject(change_id, by=user_name(), reason=reason)
    except LexiconError as exc:
        if exc.not_found:
            abort(404, description=error_text(exc))
        flash(f"Không thực hiện được: {error_text(exc)}", "error")
        return redirect(url_for("ui.approvals"))
    if decision == "reject":
        flash(f"Đã từ chối đề xuất «{proposal.term}».", "ok")
    else:
        rerender_schedules()
        what = "xóa" if proposal.deletes else f"đọc là «{proposal.reading}»"
        flash(f"Đã duyệt: «{proposal.term}» {what}. Áp dụng cho mọi bản tin phát từ nay.", "ok")
    return redirect(url_for("ui.approvals"))

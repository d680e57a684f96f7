"""The lexicon page: officers teach the system how to read an abbreviation or a word."""

from __future__ import annotations

import logging
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for

from broadcaster.domain import nfc
from broadcaster.lexicon import LexiconError
from broadcaster.web import MAX_ID
from broadcaster.web.auth import current_user, login_required
from broadcaster.web.ui import bp, error_text, officer_lexicon, services, user_name
from broadcaster.web.ui.forms import lexicon_errors
from broadcaster.web.ui.jobs import jobs

_LOGGER = logging.getLogger(__name__)


def _rerender_schedules() -> None:
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
    entries = officer_lexicon().entries()
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
    entry_id = _form_id(request.form.get("id", ""))
    errors = lexicon_errors(term, reading)
    if errors:
        return _lexicon_page({"term": term, "reading": reading}, errors, 400, entry_id)
    try:
        officer_lexicon().save(term, reading, by=user_name(), entry_id=entry_id)
    except LexiconError as exc:
        if exc.not_found:
            abort(404, description=error_text(exc))
        errors[exc.field or "term"] = error_text(exc)
        return _lexicon_page({"term": term, "reading": reading}, errors, 400, entry_id)
    _rerender_schedules()
    flash(
        f"Đã lưu: «{term}» đọc là «{reading}». Áp dụng từ lần xem trước tiếp theo; "
        "âm thanh của các lịch phát định kỳ đang được tạo lại theo cách đọc mới.",
        "ok",
    )
    return redirect(url_for("ui.lexicon"))


@bp.route("/lexicon/<id:entry_id>/delete", methods=["POST"])
@login_required
def lexicon_delete(entry_id: int) -> Any:
    try:
        term = officer_lexicon().delete(entry_id)
    except LexiconError as exc:
        abort(404, description=error_text(exc))
    _rerender_schedules()
    flash(f"Đã xóa «{term}» khỏi từ điển.", "ok")
    return redirect(url_for("ui.lexicon"))

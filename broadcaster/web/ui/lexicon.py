"""The lexicon page: officers teach the system how to read an abbreviation or a word.

A reading changes every later render, approved recurring bulletins included, so it follows the
same rule as announcements: while approval is required (the settings page), an editor's change is
sent to an approver (``Lexicon.propose``) and applies only once accepted on the approvals page;
an approver's or admin's change applies at once. The page says which before the officer saves."""

from __future__ import annotations

import logging
from typing import Any

from flask import abort, flash, jsonify, redirect, render_template, request, url_for

from broadcaster.domain import Tier, nfc
from broadcaster.lexicon import LexiconError
from broadcaster.models import Role
from broadcaster.web import MAX_ID
from broadcaster.web.auth import current_user, login_required, roles_required
from broadcaster.web.ui import (
    bp,
    engine_choices,
    error_text,
    needs_approval,
    officer_lexicon,
    services,
    user_name,
)
from broadcaster.web.ui.forms import lexicon_errors
from broadcaster.web.ui.jobs import jobs, render_result_json

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


# Longest text the page's «Nghe thử» reads: a word or a sentence, not a bulletin.
PREVIEW_MAX_CHARS = 300
FIELDS = ("term", "reading", "engine", "voice", "hint")


def _lexicon_page(
    values: dict[str, str], errors: dict[str, str], status: int = 200, edit_id: int | None = None
) -> Any:
    lexicon = officer_lexicon()
    choices = engine_choices()
    return render_template(
        "lexicon.html",
        entries=lexicon.entries(),
        proposals=lexicon.proposals(),
        proposes=_proposes(),
        values=values,
        errors=errors,
        edit_id=edit_id,
        engines=[e for e in choices if e["available"]],
        engine_labels={e["name"]: e["label"] for e in choices},
        voice_labels={v["id"]: v["label"] for e in choices for v in e["voices"]},
        preview_max=PREVIEW_MAX_CHARS,
    ), status


def _form_values(entry_id: int | None) -> dict[str, str]:
    """The form's fields, NFC and stripped. Editing an entry, a field the form does not send keeps
    the entry's value (a page that only edits the reading keeps the scope and the hint)."""
    current: dict[str, str] = {}
    if entry_id is not None and any(name not in request.form for name in FIELDS):
        try:
            item = officer_lexicon().get(entry_id)
        except LexiconError:
            abort(404, description="Không tìm thấy mục từ điển này.")
        current = {"term": item.term, "reading": item.reading, "engine": item.engine, "voice": item.voice}
        current["hint"] = item.hint
    return {
        name: nfc(request.form[name]).strip() if name in request.form else current.get(name, "")
        for name in FIELDS
    }


def _scope_label(engine: str, voice: str) -> str:
    """ "mọi giọng đọc", or the engine's or voice's label, for the officer's messages."""
    if not engine:
        return "mọi giọng đọc"
    for choice in engine_choices():
        if choice["name"] == engine:
            labels = {v["id"]: v["label"] for v in choice["voices"]}
            return f"giọng «{labels.get(voice, voice)}»" if voice else f"giọng «{choice['label']}»"
    return f"giọng «{voice or engine}»"


@bp.route("/lexicon", methods=["GET", "POST"])
@login_required
def lexicon() -> Any:
    if request.method == "GET":
        return _lexicon_page(dict.fromkeys(FIELDS, ""), {})
    entry_id = _form_id(request.form.get("id", ""))
    values = _form_values(entry_id)
    term, reading = values["term"], values["reading"]
    scope = {"engine": values["engine"], "voice": values["voice"], "hint": values["hint"]}
    errors = lexicon_errors(term, reading, engines=engine_choices(), **scope)
    if errors:
        return _lexicon_page(values, errors, 400, entry_id)
    try:
        if _proposes():
            officer_lexicon().propose(term, reading, by=user_name(), entry_id=entry_id, **scope)
        else:
            officer_lexicon().save(term, reading, by=user_name(), entry_id=entry_id, **scope)
    except LexiconError as exc:
        if exc.not_found:
            abort(404, description=error_text(exc))
        errors[exc.field or "term"] = error_text(exc)
        return _lexicon_page(values, errors, 400, entry_id)
    where = _scope_label(values["engine"], values["voice"])
    if _proposes():
        flash(
            f"Đã gửi đề xuất «{term}» đọc là «{reading}» ({where}) tới người phê duyệt. Cách đọc mới "
            "chỉ được dùng sau khi được duyệt; các bản tin và lịch phát đã duyệt vẫn đọc như cũ.",
            "ok",
        )
        return redirect(url_for("ui.lexicon"))
    rerender_schedules()
    flash(
        f"Đã lưu: «{term}» đọc là «{reading}» ({where}). Áp dụng cho mọi bản tin phát từ nay, kể cả "
        "các lịch phát định kỳ (âm thanh của chúng đang được tạo lại theo cách đọc mới).",
        "ok",
    )
    return redirect(url_for("ui.lexicon"))


@bp.route("/lexicon/preview", methods=["POST"])
@login_required
def lexicon_preview() -> Any:
    """«Nghe thử»: a word or a sentence (at most ``PREVIEW_MAX_CHARS``) read with the chosen engine
    and voice, with the lexicon as it is now, on a worker; poll ``status_url`` for the audio."""
    text = nfc(request.form.get("text", "")).strip()
    engine = nfc(request.form.get("engine", "")).strip()
    voice = nfc(request.form.get("voice", "")).strip()
    if not text:
        return jsonify(errors={"text": "Vui lòng nhập từ hoặc câu cần nghe thử."}), 400
    if len(text) > PREVIEW_MAX_CHARS or "\n" in text:
        return jsonify(errors={"text": f"Nghe thử tối đa {PREVIEW_MAX_CHARS} ký tự, trên một dòng."}), 400
    usable = [e for e in engine_choices() if e["available"]]
    errors = lexicon_errors("-", "-", engine=engine, voice=voice, engines=usable)
    if errors:
        return jsonify(errors=errors), 400
    speech = services().speech
    readings = officer_lexicon().overrides()

    def render() -> dict[str, Any]:
        result = speech.render(
            text,
            engine=engine or None,
            voice=voice or None,
            repeat=1,
            chime=False,
            lexicon=readings,
            strict=bool(engine),
        )
        return render_result_json(result)

    user = current_user()
    assert user is not None
    job_id = jobs().submit(user.id, "lexicon-preview", render)
    return jsonify(job=job_id, status_url=url_for("ui.job_status", job_id=job_id))


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
        what += f" ({_scope_label(proposal.engine, proposal.voice)})"
        flash(f"Đã duyệt: «{proposal.term}» {what}. Áp dụng cho mọi bản tin phát từ nay.", "ok")
    return redirect(url_for("ui.approvals"))

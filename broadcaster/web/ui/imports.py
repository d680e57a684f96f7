"""Bringing content in: the text of an uploaded document (.docx, .pdf, .txt, a scan or a photo read
by text recognition on a worker) into the editor, and an uploaded or microphone recording
converted on a worker."""

from __future__ import annotations

from typing import Any

from flask import flash, jsonify, request, url_for

from broadcaster import documents
from broadcaster.domain import ALL_TARGETS
from broadcaster.web.auth import current_user, login_required
from broadcaster.web.ui import bp, services

# Aliases: compose_import's body is kept as it was in the one-module UI (underscore names), so a
# change made to it on another branch ports over unchanged.
from broadcaster.web.ui.compose import compose_page as _compose_page
from broadcaster.web.ui.forms import form_values as _form_values
from broadcaster.web.ui.jobs import jobs, render_result_json

RECORDING_EXTS = (".mp3", ".wav", ".webm", ".ogg", ".oga", ".m4a")


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
    speech = services().speech

    def convert() -> dict[str, Any]:
        result = speech.import_recording(data, filename)
        return {**render_result_json(result), "filename": filename}

    user = current_user()
    assert user is not None
    job_id = jobs().submit(user.id, "recording", convert)
    return jsonify(job=job_id, status_url=url_for("ui.job_status", job_id=job_id))

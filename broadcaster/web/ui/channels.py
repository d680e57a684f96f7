"""«Kênh tiếp sóng» (admins only): the named radio streams relays are made of (VOV1, the province's
and the district's stations): list, add, edit, turn off and on, delete, and try one.

Everything goes through ``live.channels.Channels`` (the API's ``/api/channels`` does too), so a bad
address gets the same Vietnamese message here and there; «Thử kết nối» asks the source itself and
shows what a relay of it would say (a web page, a 404, no answer...)."""

from __future__ import annotations

import logging
from typing import Any

from flask import flash, redirect, render_template, request, url_for

from broadcaster.domain import nfc
from broadcaster.live.channels import ChannelError
from broadcaster.live.probe import SourceError, probe
from broadcaster.models import Role
from broadcaster.web.auth import roles_required
from broadcaster.web.ui import bp, services, user_name

_LOGGER = logging.getLogger(__name__)

_ADMINS_ONLY = "Chỉ quản trị viên được quản lý các kênh tiếp sóng."
# «Thử kết nối» waits this long at most for the source (the admin waits on the page).
PROBE_TIMEOUT_S = 5.0


def _channels() -> Any:
    return services().broadcasts.channels


def _page(
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    *,
    edit: dict[str, Any] | None = None,
    status: int = 200,
) -> Any:
    return (
        render_template(
            "channels.html",
            channels=_channels().list(),
            values=values or {"name": "", "url": ""},
            errors=errors or {},
            edit=edit,
        ),
        status,
    )


def _form() -> dict[str, str]:
    return {
        "name": nfc(request.form.get("name", "")).strip(),
        "url": request.form.get("url", "").strip(),
    }


def _error(exc: ChannelError, errors: dict[str, str]) -> None:
    errors[exc.field or "form"] = exc.message
    errors.setdefault("form", f"Chưa lưu được: {exc.message}")


@bp.route("/channels", methods=["GET", "POST"])
@roles_required(Role.ADMIN.value, message=_ADMINS_ONLY)
def channels() -> Any:
    if request.method == "GET":
        return _page()
    values = _form()
    errors: dict[str, str] = {}
    try:
        channel_id = _channels().create(values["name"], values["url"], by=user_name())
    except ChannelError as exc:
        _error(exc, errors)
        return _page(values, errors, status=400)
    _LOGGER.info("channel %s (%s) added by %s", channel_id, values["name"], user_name())
    flash(f"Đã thêm kênh «{values['name']}».", "ok")
    return redirect(url_for("ui.channels"))


@bp.route("/channels/<int:channel_id>", methods=["GET", "POST"])
@roles_required(Role.ADMIN.value, message=_ADMINS_ONLY)
def channel_edit(channel_id: int) -> Any:
    found = _channels().get(channel_id)
    if found is None:
        flash(f"Không có kênh #{channel_id}.", "error")
        return redirect(url_for("ui.channels"))
    if request.method == "GET":
        return _page(edit=found, values={"name": found["name"], "url": found["url"]})
    values = _form()
    errors: dict[str, str] = {}
    try:
        _channels().update(channel_id, values)
    except ChannelError as exc:
        _error(exc, errors)
        return _page(values, errors, edit=found, status=400)
    flash(f"Đã lưu kênh «{values['name']}».", "ok")
    return redirect(url_for("ui.channels"))


@bp.route("/channels/<int:channel_id>/enabled", methods=["POST"])
@roles_required(Role.ADMIN.value, message=_ADMINS_ONLY)
def channel_enabled(channel_id: int) -> Any:
    enabled = request.form.get("enabled") == "1"
    try:
        found = _channels().update(channel_id, {"enabled": enabled})
    except ChannelError as exc:
        flash(exc.message, "error")
    else:
        flash(f"Đã {'bật' if enabled else 'tắt'} kênh «{found['name']}».", "ok")
    return redirect(url_for("ui.channels"))


@bp.route("/channels/<int:channel_id>/delete", methods=["POST"])
@roles_required(Role.ADMIN.value, message=_ADMINS_ONLY)
def channel_delete(channel_id: int) -> Any:
    found = _channels().get(channel_id)
    try:
        _channels().delete(channel_id)
    except ChannelError as exc:
        flash(f"Không xóa được: {exc.message}", "error")
    else:
        _LOGGER.info("channel %s deleted by %s", channel_id, user_name())
        flash(f"Đã xóa kênh «{found['name'] if found else channel_id}».", "ok")
    return redirect(url_for("ui.channels"))


@bp.route("/channels/<int:channel_id>/test", methods=["POST"])
@roles_required(Role.ADMIN.value, message=_ADMINS_ONLY)
def channel_test(channel_id: int) -> Any:
    found = _channels().get(channel_id)
    if found is None:
        flash(f"Không có kênh #{channel_id}.", "error")
        return redirect(url_for("ui.channels"))
    try:
        probe(found["url"], PROBE_TIMEOUT_S)
    except SourceError as exc:
        flash(f"Kênh «{found['name']}»: {exc}", "error")
    else:
        flash(f"Kênh «{found['name']}»: nguồn phát trả lời bằng âm thanh.", "ok")
    return redirect(url_for("ui.channels"))

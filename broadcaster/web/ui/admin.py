"""Administration: speakers and zones (the registry), user accounts, one's own password, and the
runtime settings."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import abort, flash, redirect, render_template, request, session, url_for

from broadcaster.domain import nfc
from broadcaster.fleet.registry import RegistryError
from broadcaster.web.auth import (
    SESSION_TOKEN,
    current_user,
    end_all_sessions,
    login_required,
    remember_password,
    roles_required,
)
from broadcaster.web.engines import usage_rows
from broadcaster.web.sessions import count_sessions
from broadcaster.web.ui import bp, error_text, registry, runtime_settings, services, zones_with_speakers
from broadcaster.web.ui.forms import speaker_errors, zone_errors
from broadcaster.web.users import (
    UserError,
    add_user,
    authenticate,
    check_password,
    list_users,
    set_password,
    update_user,
)

_LOGGER = logging.getLogger(__name__)


# --- speakers and zones --------------------------------------------------------------------------


def _speakers_page(
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    created: dict[str, str] | None = None,
    status: int = 200,
) -> Any:
    try:
        snapshot = {str(s.get("id")): s for s in services().fleet.snapshot()}
    except Exception:
        _LOGGER.exception("fleet.snapshot failed")
        snapshot = {}
    return (
        render_template(
            "speakers.html",
            zones=zones_with_speakers(),
            live=snapshot,
            errors=errors or {},
            values=values or {},
            created=created,
        ),
        status,
    )


def _clean(name: str, limit: int = 200) -> str:
    return nfc(request.form.get(name, "")).strip()[:limit]


def _registry_action(call: Callable[[], Any], *, failed: str, done: str | None = None) -> Any:
    """Run one registry change for a speakers-page button: a RegistryError is flashed as
    "<failed>: <reason>" and sends the admin back to the page. On success, with ``done``, that is
    flashed and the page reloads; without it the call's result is returned for the view to show."""
    try:
        result = call()
    except RegistryError as exc:
        flash(f"{failed}: {error_text(exc)}", "error")
        return redirect(url_for("ui.speakers"))
    if done is None:
        return result
    flash(done, "ok")
    return redirect(url_for("ui.speakers"))


def _registry_error_to_form(exc: BaseException, errors: dict[str, str], prefix: str, form_key: str) -> None:
    field_name = getattr(exc, "field", None)
    mapping = {"id": f"{prefix}_id", "name": f"{prefix}_name", "zone": "speaker_zone"}
    if field_name in ("quiet_start", "quiet_end", "location"):
        errors[field_name] = error_text(exc)
    elif field_name in mapping:
        errors[mapping[field_name]] = error_text(exc)
    errors[form_key] = error_text(exc)


@bp.route("/speakers")
@roles_required()
def speakers() -> Any:
    return _speakers_page()


@bp.route("/zones", methods=["POST"])
@roles_required()
def zone_create() -> Any:
    values = {k: _clean(k) for k in ("zone_id", "zone_name", "quiet_start", "quiet_end")}
    errors = zone_errors(values, new=True)
    if not errors:
        try:
            registry().create_zone(
                values["zone_id"],
                values["zone_name"],
                values["quiet_start"] or None,
                values["quiet_end"] or None,
            )
        except RegistryError as exc:
            _registry_error_to_form(exc, errors, "zone", "zone_form")
    if errors:
        return _speakers_page(errors, values, status=400)
    flash(f"Đã thêm khu vực «{values['zone_name']}».", "ok")
    return redirect(url_for("ui.speakers"))


@bp.route("/zones/<zone_id>", methods=["POST"])
@roles_required()
def zone_update(zone_id: str) -> Any:
    values = {k: _clean(k) for k in ("zone_name", "quiet_start", "quiet_end")}
    errors = zone_errors(values, new=False)
    if errors:
        flash("Không lưu được khu vực: " + " ".join(dict.fromkeys(errors.values())), "error")
        return redirect(url_for("ui.speakers"))
    return _registry_action(
        lambda: registry().update_zone(
            zone_id,
            name=values["zone_name"],
            quiet_start=values["quiet_start"] or None,
            quiet_end=values["quiet_end"] or None,
        ),
        done=f"Đã lưu khu vực «{values['zone_name']}».",
        failed="Không lưu được khu vực",
    )


@bp.route("/zones/<zone_id>/delete", methods=["POST"])
@roles_required()
def zone_delete(zone_id: str) -> Any:
    return _registry_action(
        lambda: registry().delete_zone(zone_id), done="Đã xóa khu vực.", failed="Không xóa được khu vực"
    )


@bp.route("/speakers", methods=["POST"])
@roles_required()
def speaker_create() -> Any:
    values = {k: _clean(k, 300) for k in ("speaker_id", "speaker_name", "speaker_zone", "location")}
    errors = speaker_errors(values)
    created = None
    if not errors:
        try:
            _speaker, password = registry().create_speaker(
                values["speaker_id"],
                values["speaker_name"],
                values["speaker_zone"] or None,
                values["location"] or None,
            )
        except RegistryError as exc:
            _registry_error_to_form(exc, errors, "speaker", "speaker_form")
        else:
            created = {"id": values["speaker_id"], "name": values["speaker_name"], "password": password}
    if errors:
        return _speakers_page(errors, values, status=400)
    # Shown once, in this response only: never flashed (the session cookie is signed, not secret).
    return _speakers_page(created=created)


@bp.route("/speakers/<speaker_id>", methods=["POST"])
@roles_required()
def speaker_update(speaker_id: str) -> Any:
    name = _clean("speaker_name")
    if not name:
        flash("Vui lòng nhập tên cụm loa.", "error")
        return redirect(url_for("ui.speakers"))
    return _registry_action(
        lambda: registry().update_speaker(
            speaker_id,
            name=name,
            zone=_clean("speaker_zone") or None,
            location=_clean("location", 300) or None,
        ),
        done=f"Đã lưu cụm loa «{name}».",
        failed="Không lưu được cụm loa",
    )


@bp.route("/speakers/<speaker_id>/delete", methods=["POST"])
@roles_required()
def speaker_delete(speaker_id: str) -> Any:
    return _registry_action(
        lambda: registry().delete_speaker(speaker_id),
        done="Đã xóa cụm loa.",
        failed="Không xóa được cụm loa",
    )


@bp.route("/speakers/<speaker_id>/password", methods=["POST"])
@roles_required()
def speaker_password(speaker_id: str) -> Any:
    password = _registry_action(
        lambda: registry().reset_speaker_password(speaker_id), failed="Không đặt lại được mật khẩu"
    )
    if not isinstance(password, str):  # failed: flashed, the redirect back to the page
        return password
    # Shown once, in this response only (like a new speaker's).
    return _speakers_page(
        created={"id": speaker_id, "name": speaker_id, "password": str(password), "reset": "1"}
    )


# --- users, account, settings --------------------------------------------------------------------


def _users_page(
    errors: dict[str, str] | None = None, values: dict[str, str] | None = None, status: int = 200
) -> Any:
    sessions = services().sessions
    users = list_users(sessions)
    return (
        render_template(
            "users.html",
            users=users,
            live_sessions={u.id: count_sessions(sessions, u.id) for u in users},
            errors=errors or {},
            values=values or {},
        ),
        status,
    )


@bp.route("/users", methods=["GET", "POST"])
@roles_required()
def users() -> Any:
    if request.method == "GET":
        return _users_page()
    values = {k: _clean(k) for k in ("username", "display_name", "role")}
    try:
        add_user(
            services().sessions,
            values["username"],
            request.form.get("password", ""),
            values["role"],
            display_name=values["display_name"],
        )
    except UserError as exc:
        return _users_page({exc.field or "form": str(exc)}, values, 400)
    flash(f"Đã tạo tài khoản «{values['username']}».", "ok")
    return redirect(url_for("ui.users"))


@bp.route("/users/<id:user_id>", methods=["POST"])
@roles_required()
def user_update(user_id: int) -> Any:
    sessions = services().sessions
    me = current_user()
    mine = me is not None and me.id == user_id
    try:
        if request.form.get("password"):
            # Every session of that account ends; an admin changing their own keeps this one.
            keep = session.get(SESSION_TOKEN) if mine else None
            changed = set_password(sessions, user_id, request.form["password"], keep_session=keep)
            if mine:
                remember_password(changed)
        update_user(
            sessions,
            user_id,
            role=request.form.get("role") or None,
            active=request.form.get("active") == "on",
            display_name=request.form.get("display_name"),
        )
    except UserError as exc:
        if "Không tìm thấy" in str(exc):
            abort(404, description=str(exc))
        flash(f"Không lưu được: {exc}", "error")
    else:
        flash("Đã lưu tài khoản.", "ok")
    return redirect(url_for("ui.users"))


@bp.route("/users/<id:user_id>/logout", methods=["POST"])
@roles_required()
def user_logout_everywhere(user_id: int) -> Any:
    """An admin ends every session of an account (a lost phone, a shared computer)."""
    ended = end_all_sessions(user_id)
    flash(f"Đã đăng xuất tài khoản này khỏi {ended} nơi đang đăng nhập.", "ok")
    return redirect(url_for("ui.users"))


@bp.route("/account/logout-everywhere", methods=["POST"])
@login_required
def account_logout_everywhere() -> Any:
    """ "Đăng xuất khỏi mọi nơi": every session of this officer ends, this one included."""
    user = current_user()
    assert user is not None
    end_all_sessions(user.id)
    session.clear()
    flash("Đã đăng xuất khỏi mọi nơi. Vui lòng đăng nhập lại.", "ok")
    return redirect(url_for("auth.login"))


@bp.route("/account", methods=["GET", "POST"])
@login_required
def account() -> Any:
    errors: dict[str, str] = {}
    if request.method == "POST":
        user = current_user()
        if user is None:
            abort(401)
        if authenticate(services().sessions, user.username, request.form.get("current", "")) is None:
            errors["current"] = "Mật khẩu hiện tại không đúng."
        new = request.form.get("new", "")
        if request.form.get("confirm", "") != new:
            errors["confirm"] = "Hai lần nhập mật khẩu mới không khớp."
        try:
            check_password(new)
        except UserError as exc:
            errors["new"] = str(exc)
        if not errors:
            keep = session.get(SESSION_TOKEN)
            remember_password(set_password(services().sessions, user.id, new, keep_session=keep))
            flash("Đã đổi mật khẩu. Các phiên đăng nhập khác của bạn đã kết thúc.", "ok")
            return redirect(url_for("ui.dashboard"))
    return render_template("account.html", errors=errors), 400 if errors else 200


@bp.route("/settings", methods=["GET", "POST"])
@roles_required()
def settings_page() -> Any:
    if request.method == "POST":
        runtime_settings().set_approval_required(request.form.get("approval_required") == "on")
        flash("Đã lưu cài đặt.", "ok")
        return redirect(url_for("ui.settings_page"))
    return render_template(
        "settings.html",
        approval_required=runtime_settings().approval_required(),
        usage=usage_rows(services().speech),
    )

"""Enrollment from the web: "Tải cấu hình" on a cluster of "Loa và khu vực" hands out a one-time
link to its agent.yaml, with a QR code of the link for the technician's phone.

* ``POST /speakers/<id>/enroll`` (admin): creates the link and shows it with its QR code (SVG,
  drawn by ``segno``, the only module that imports it) and a button to download on this computer.
* ``GET /enroll/<token>`` (no login: the token is the key): says which cluster and until when.
* ``POST /enroll/<token>``: spends the link, gives the cluster a new password and downloads
  agent.yaml (a POST, so that a chat app's link preview cannot spend the link).

The link logic is ``broadcaster.fleet.enroll.EnrollLinks``.
"""

from __future__ import annotations

import ipaddress
import logging
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import segno
from flask import Response, flash, redirect, render_template, request, url_for
from markupsafe import Markup

from broadcaster.fleet.enroll import LINK_VALID_S, EnrollError, EnrollLinks
from broadcaster.fleet.registry import RegistryError
from broadcaster.web.auth import current_user, roles_required
from broadcaster.web.ui import bp, error_text, registry, services

_LOGGER = logging.getLogger(__name__)


def _links() -> EnrollLinks:
    svc = services()
    return EnrollLinks(svc.sessions, registry(), svc.settings)


def _local_hhmm(when: datetime) -> str:
    return when.astimezone(ZoneInfo(services().settings.timezone)).strftime("%H:%M")


def qr_svg(text: str) -> Markup:
    """An inline SVG QR code of ``text`` (error correction M: survives a smudged phone screen)."""
    code = segno.make(text, error="m", micro=False)
    svg = code.svg_inline(
        scale=5, border=3, dark="#000", light="#fff", title="Mã QR của liên kết tải cấu hình"
    )
    return Markup(svg)  # segno's own SVG markup; the URL in it is escaped by segno


def _unreachable_host(url: str) -> str | None:
    """The link's host when a phone cannot reach it (loopback), else None."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return host
    try:
        return host if ipaddress.ip_address(host).is_loopback else None
    except ValueError:
        return None


@bp.route("/speakers/<speaker_id>/enroll", methods=["POST"])
@roles_required()
def speaker_enroll(speaker_id: str) -> Any:
    user = current_user()
    try:
        token, expires = _links().create(speaker_id, by=user.username if user else None)
        speaker = registry().get_speaker(speaker_id)
    except RegistryError as exc:
        flash(f"Không tạo được liên kết tải cấu hình: {error_text(exc)}", "error")
        return redirect(url_for("ui.speakers"))
    link = url_for("ui.enroll_link", token=token, _external=True)
    return render_template(
        "speaker_enroll.html",
        speaker=speaker,
        link=link,
        qr=qr_svg(link),
        expires=_local_hhmm(expires),
        minutes=LINK_VALID_S // 60,
        unreachable=_unreachable_host(link),
    )


@bp.route("/enroll/<token>", methods=["GET"])
def enroll_link(token: str) -> Any:
    try:
        info = _links().peek(token)
    except EnrollError as exc:
        return _gone(exc)
    return render_template(
        "enroll_download.html", speaker_id=info.speaker_id, expires=_local_hhmm(info.expires), error=None
    )


@bp.route("/enroll/<token>", methods=["POST"])
def enroll_download(token: str) -> Any:
    try:
        bundle = _links().redeem(token)
    except EnrollError as exc:
        return _gone(exc)
    except Exception:  # the broker's CA or port not known yet: say so in words, keep the log
        _LOGGER.exception("enrollment download failed")
        return _gone(EnrollError("Chưa cấp được cấu hình lúc này. Hãy thử lại sau ít phút.", code="gone"))
    _LOGGER.info("speaker %s: agent.yaml downloaded by %s", bundle.id, request.remote_addr)
    response = Response(bundle.to_yaml(), mimetype="application/yaml")
    response.headers["Content-Disposition"] = 'attachment; filename="agent.yaml"'
    response.headers["Cache-Control"] = "no-store"
    return response


def _gone(exc: EnrollError) -> Any:
    status = 404 if exc.code == "not_found" else 410
    return render_template("enroll_download.html", speaker_id=None, expires=None, error=exc.message), status

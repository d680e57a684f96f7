"""Upper levels in the officer's interface (issue 11).

- "Tin cấp trên" (``/upstream``), on a level with an upstream: bulletins from the district or
  province and CAP alerts; a normal one waits here to be listened to, then aired, scheduled or
  declined with a reason (reported up); a priority one that clashes with the commune's own asks
  which goes first; an emergency is on air already and only needs to be acknowledged.
- "Cấp dưới" (``/downstream``), on a level with units below: the communes and their clusters, the
  state of each bulletin sent (per commune, per cluster), minutes aired across communes, CSV.

The navigation entries and the banner of open items come from the context processor below
(``base.html`` shows ``federation_nav`` and ``federation_banner``).
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, url_for

from broadcaster.domain import Tier
from broadcaster.federation.intake import IntakeError
from broadcaster.federation.views import (
    MINUTES_CSV_COLUMNS,
    inbox,
    minutes_across,
    sent_bulletins,
    units_overview,
)
from broadcaster.models import Role
from broadcaster.reports import to_csv
from broadcaster.web.auth import current_user, has_role, login_required, roles_required
from broadcaster.web.ui import bp, fmt_local, needs_approval, now, services, tz, user_name
from broadcaster.web.ui.forms import local_datetime

_LOGGER = logging.getLogger(__name__)

CLASH_CHOICES = {"upstream": "Phát tin cấp trên trước", "local": "Phát tin của xã trước"}
# The minutes report covers at most this many days on the page (the CSV the same).
MAX_DAYS = 92


def _federation() -> Any:
    found = services().federation
    if found is None:
        abort(404, description="Máy chủ này không nối với cấp trên hay cấp dưới.")
    return found


@bp.app_context_processor
def _federation_globals() -> dict[str, Any]:
    """Navigation entries and the banner of open items, for every page."""
    federation = services().federation
    if federation is None or current_user() is None:
        return {"federation_nav": [], "federation_banner": None, "federation_units": []}
    try:
        counts = federation.open_items()
        upstream = federation.has_upstream() or any(counts.values())
        units = federation.has_units()
    except Exception:  # a page must render even when the federation tables cannot be read
        _LOGGER.exception("federation: navigation counts failed")
        return {"federation_nav": [], "federation_banner": None, "federation_units": []}
    nav = []
    if upstream:
        waiting = counts["inbox"] + counts["held"]
        label = "Tin cấp trên" + (f" ({waiting})" if waiting else "")
        nav.append({"endpoint": "ui.upstream", "label": label, "url": url_for("ui.upstream")})
    if units:
        nav.append({"endpoint": "ui.downstream", "label": "Cấp dưới", "url": url_for("ui.downstream")})
    banner = None
    if counts["emergency"]:
        banner = {
            "kind": "bad",
            "text": "Tin KHẨN CẤP từ cấp trên đã được phát ngay trên tất cả cụm loa. Bấm để xem và xác nhận đã biết.",
        }
    elif counts["held"]:
        banner = {
            "kind": "warn",
            "text": "Tin ưu tiên từ cấp trên trùng với tin ưu tiên của xã: hãy chọn tin phát trước.",
        }
    elif counts["inbox"]:
        banner = {"kind": "info", "text": f"Có {counts['inbox']} tin cấp trên đang chờ xã quyết định."}
    if banner is not None:
        banner["url"] = url_for("ui.upstream")
    picker: list[dict[str, Any]] = []
    if units and request.endpoint == "ui.compose":
        with services().sessions() as session:
            picker = [
                {"path": u["path"], "name": u["name"]} for u in units_overview(session) if not u["revoked"]
            ]
    return {"federation_nav": nav, "federation_banner": banner, "federation_units": picker}


# ------------------------------------------------------------------ Tin cấp trên


@bp.route("/upstream")
@login_required
def upstream() -> str:
    federation = _federation()
    with services().sessions() as session:
        items = inbox(session, limit=100)
    return render_template(
        "upstream/inbox.html",
        open_items=[i for i in items if i["state"] in ("inbox", "held")],
        recent=[i for i in items if i["state"] not in ("inbox", "held")][:50],
        status=federation.status(),
        clash_choices=CLASH_CHOICES,
        today=fmt_local(now(), "%Y-%m-%d"),
    )


def _back() -> Any:
    return redirect(url_for("ui.upstream"))


@bp.route("/upstream/<int:item_id>/air", methods=["POST"])
@login_required
def upstream_air(item_id: int) -> Any:
    return _accept(item_id, None)


@bp.route("/upstream/<int:item_id>/schedule", methods=["POST"])
@login_required
def upstream_schedule(item_id: int) -> Any:
    at = local_datetime(request.form.get("date", ""), request.form.get("time", ""))
    if at is None:
        flash("Vui lòng chọn ngày và giờ phát (giờ:phút).", "error")
        return _back()
    return _accept(item_id, at)


def _accept(item_id: int, at: Any) -> Any:
    waits = needs_approval(Tier.NORMAL.value)
    try:
        bid = _federation().desk.accept(item_id, user_name(), at=at, approved=not waits)
    except IntakeError as exc:
        flash(str(exc), "error")
        return _back()
    if bid is None:
        flash("Không đưa được tin vào phát; xem lý do trong danh sách bên dưới.", "error")
    elif waits:
        flash("Đã nhận tin; tin đang chờ người phê duyệt.", "ok")
    elif at is not None:
        flash(f"Đã hẹn giờ phát tin cấp trên lúc {fmt_local(at, '%H:%M ngày %d/%m/%Y')}.", "ok")
    else:
        flash("Đã bắt đầu phát tin cấp trên.", "ok")
    return _back()


@bp.route("/upstream/<int:item_id>/decline", methods=["POST"])
@login_required
def upstream_decline(item_id: int) -> Any:
    try:
        _federation().desk.decline(item_id, user_name(), request.form.get("reason", ""))
    except IntakeError as exc:
        flash(str(exc), "error")
        return _back()
    flash("Đã ghi nhận không phát tin này; lý do được báo lên cấp trên.", "ok")
    return _back()


@bp.route("/upstream/<int:item_id>/clash", methods=["POST"])
@roles_required(Role.APPROVER.value)
def upstream_clash(item_id: int) -> Any:
    choice = request.form.get("choice", "")
    try:
        _federation().desk.decide_clash(item_id, choice, user_name())
    except IntakeError as exc:
        flash(str(exc), "error")
        return _back()
    flash(f"Đã chọn: {CLASH_CHOICES.get(choice, choice)}.", "ok")
    return _back()


@bp.route("/upstream/<int:item_id>/seen", methods=["POST"])
@login_required
def upstream_seen(item_id: int) -> Any:
    _federation().desk.mark_seen(item_id)
    return _back()


# ------------------------------------------------------------------ Cấp dưới


def _range() -> tuple[date, date]:
    today = now().astimezone(tz()).date()
    try:
        end = date.fromisoformat(request.args.get("to") or today.isoformat())
        start = date.fromisoformat(request.args.get("from") or (end - timedelta(days=6)).isoformat())
    except ValueError:
        abort(400, description="Ngày không hợp lệ (năm-tháng-ngày).")
    if end < start or (end - start).days >= MAX_DAYS:
        abort(400, description=f"Khoảng ngày từ 1 đến {MAX_DAYS} ngày, ngày đầu trước ngày cuối.")
    return start, end


@bp.route("/downstream")
@login_required
def downstream() -> str:
    _federation()
    start, end = _range()
    with services().sessions() as session:
        units = units_overview(session)
        bulletins = sent_bulletins(session, limit=30)
        minutes = minutes_across(session, start, end)
    totals: dict[str, float] = {}
    for row in minutes:
        top = row["unit"]
        totals[top] = totals.get(top, 0.0) + row["minutes"]
    return render_template(
        "upstream/downstream.html",
        units=units,
        bulletins=bulletins,
        totals=sorted(totals.items()),
        day_from=start,
        day_to=end,
        can_withdraw=has_role(current_user(), Role.APPROVER.value),
    )


@bp.route("/downstream/minutes.csv")
@login_required
def downstream_minutes_csv() -> Response:
    _federation()
    start, end = _range()
    with services().sessions() as session:
        rows = minutes_across(session, start, end)
    body = to_csv(rows, MINUTES_CSV_COLUMNS).encode("utf-8")
    name = f"so-phut-phat-cap-duoi-{start.isoformat()}-{end.isoformat()}.csv"
    return Response(
        body,
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@bp.route("/downstream/bulletins/<int:bulletin_id>/withdraw", methods=["POST"])
@roles_required(Role.APPROVER.value)
def downstream_withdraw(bulletin_id: int) -> Any:
    if _federation().outbound.cancel(bulletin_id):
        flash("Đã rút lại tin: các đơn vị cấp dưới nhận lệnh hủy.", "ok")
    else:
        flash("Tin này không còn để rút lại.", "error")
    return redirect(url_for("ui.downstream"))


__all__ = ["CLASH_CHOICES"]

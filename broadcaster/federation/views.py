"""Read-only views of the federation for the API and the officer's pages (upper and lower side).

Labels of the states a unit reports come from the one label table
(``broadcaster.broadcasts.views``) plus the few inbox states of this package (``INBOX_LABELS``).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from broadcaster.broadcasts.views import broadcast_state_label, delivery_state_label, tier_label
from broadcaster.federation.models import (
    FedBulletin,
    FedCluster,
    FedInbox,
    FedMinutes,
    FedUnit,
    FedUnitBulletin,
    FedUnitDelivery,
)

# What became of a bulletin from above at a unit, besides the broadcast states.
INBOX_LABELS = {
    "received": "Đã nhận",
    "inbox": "Chờ cán bộ xã quyết định",
    "held": "Chờ chọn thứ tự phát",
    "deciding": "Đang xử lý",
    "submitted": "Đã đưa vào phát",
    "declined": "Không phát",
    "missed": "Lỡ hạn phát",
    "cancelled": "Đã hủy",
    "failed": "Không phát được",
    "forwarded": "Chuyển tiếp xuống cấp dưới",
}
BULLETIN_STATE_LABELS = {
    "waiting": "Chờ duyệt, chưa gửi",
    "sent": "Đã gửi",
    "cancelled": "Đã rút lại",
    "dropped": "Không gửi",
}


def inbox_label(state: str | None) -> str:
    if state is None:
        return ""
    return INBOX_LABELS.get(state) or broadcast_state_label(state)


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


def _bulletin_ids(session: Session, broadcast_id: int) -> list[int]:
    return list(session.scalars(select(FedBulletin.id).where(FedBulletin.broadcast_id == broadcast_id)))


def unit_deliveries(session: Session, broadcast_id: int) -> list[dict[str, Any]] | None:
    """``[{"unit", "speaker", "state", ...}]`` of the bulletins this broadcast sent down; None
    when it sent none (the key is then absent from the broadcast's view)."""
    ids = _bulletin_ids(session, broadcast_id)
    if not ids:
        return None
    rows = session.scalars(
        select(FedUnitDelivery)
        .where(FedUnitDelivery.bulletin_id.in_(ids))
        .order_by(FedUnitDelivery.unit, FedUnitDelivery.speaker)
    )
    return [
        {
            "unit": d.unit,
            "speaker": d.speaker,
            "state": d.state,
            "started_at": _iso(d.started_at),
            "finished_at": _iso(d.finished_at),
            "seconds_played": d.seconds_played,
            "rms_dbfs": d.rms_dbfs,
            "reason": d.reason,
        }
        for d in rows
    ]


def unit_states(session: Session, bulletin_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(FedUnitBulletin)
        .where(FedUnitBulletin.bulletin_id == bulletin_id)
        .order_by(FedUnitBulletin.unit)
    )
    return [
        {
            "unit": r.unit,
            "state": r.state,
            "label": inbox_label(r.state),
            "reason": r.reason,
            "updated": _iso(r.updated),
        }
        for r in rows
    ]


def sent_bulletins(session: Session, limit: int = 50) -> list[dict[str, Any]]:
    """Bulletins sent down, newest first, each with its per-unit states and per-cluster counts."""
    out = []
    for fb in session.scalars(select(FedBulletin).order_by(FedBulletin.id.desc()).limit(limit)):
        deliveries = session.scalars(
            select(FedUnitDelivery).where(FedUnitDelivery.bulletin_id == fb.id)
        ).all()
        per_unit: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for d in deliveries:
            per_unit[d.unit][d.state] += 1
        out.append(
            {
                "id": fb.id,
                "broadcast_id": fb.broadcast_id,
                "tier": fb.tier,
                "tier_label": tier_label(fb.tier),
                "title": fb.title or fb.text[:80],
                "format": fb.format,
                "state": fb.state,
                "state_label": BULLETIN_STATE_LABELS.get(fb.state, fb.state),
                "units": list(fb.units or []),
                "created": _iso(fb.created),
                "unit_states": unit_states(session, fb.id),
                "deliveries": [
                    {
                        "unit": d.unit,
                        "speaker": d.speaker,
                        "state": d.state,
                        "label": delivery_state_label(d.state),
                        "seconds_played": d.seconds_played,
                    }
                    for d in sorted(deliveries, key=lambda d: (d.unit, d.speaker))
                ],
                "counts": {u: dict(c) for u, c in per_unit.items()},
                "forwarded": fb.inbox_id is not None,
            }
        )
    return out


def units_overview(session: Session) -> list[dict[str, Any]]:
    """Every unit below (direct units and the paths they reported) with its clusters."""
    units = {u.name: u for u in session.scalars(select(FedUnit))}
    clusters: dict[str, list[FedCluster]] = defaultdict(list)
    for c in session.scalars(select(FedCluster).order_by(FedCluster.unit, FedCluster.speaker)):
        clusters[c.unit].append(c)
    paths = sorted(set(units) | set(clusters))
    out = []
    for path in paths:
        direct = units.get(path)
        rows = clusters.get(path, [])
        out.append(
            {
                "path": path,
                "direct": direct is not None,
                "name": direct.display_name if direct else path.rpartition("/")[2],
                "revoked": bool(direct and direct.revoked),
                "last_seen": _iso(direct.last_seen) if direct else None,
                "last_error": direct.last_error if direct else None,
                "online": sum(1 for c in rows if c.online),
                "total": len(rows),
                "clusters": [
                    {
                        "speaker": c.speaker,
                        "name": c.name,
                        "zone": c.zone,
                        "online": c.online,
                        "faults": list(c.faults or []),
                        "last_health": _iso(c.last_health),
                        "reported_at": _iso(c.reported_at),
                    }
                    for c in rows
                ],
            }
        )
    return out


def minutes_across(session: Session, start: date, end: date) -> list[dict[str, Any]]:
    """Minutes aired per day, unit and cluster below, as the units reported them."""
    rows = session.scalars(
        select(FedMinutes)
        .where(FedMinutes.day >= start, FedMinutes.day <= end)
        .order_by(FedMinutes.day, FedMinutes.unit, FedMinutes.speaker)
    )
    return [
        {
            "date": r.day.isoformat(),
            "unit": r.unit,
            "speaker": r.speaker,
            "broadcasts": r.broadcasts,
            "seconds": round(r.seconds, 1),
            "minutes": round(r.seconds / 60.0, 2),
        }
        for r in rows
    ]


MINUTES_CSV_COLUMNS = [
    ("date", "Ngày"),
    ("unit", "Đơn vị"),
    ("speaker", "Mã cụm loa"),
    ("broadcasts", "Số lượt phát"),
    ("minutes", "Số phút đã phát"),
]


def inbox(session: Session, *, open_only: bool = False, limit: int = 100) -> list[dict[str, Any]]:
    """Bulletins from above and CAP alerts received here, newest first."""
    query = select(FedInbox).order_by(FedInbox.id.desc()).limit(limit)
    if open_only:
        query = query.where(or_(FedInbox.state == "inbox", FedInbox.state == "held"))
    return [
        {
            "id": r.id,
            "origin": r.origin,
            "ref": r.ref,
            "tier": r.tier,
            "tier_label": tier_label(r.tier),
            "title": r.title,
            "text": r.text,
            "format": r.format,
            "audio_key": r.audio_key,
            "sender": r.sender,
            "state": r.state,
            "label": inbox_label(r.state),
            "reason": r.reason,
            "broadcast_id": r.broadcast_id,
            "at": _iso(r.at),
            "valid_until": _iso(r.valid_until),
            "hold_until": _iso(r.hold_until),
            "clash": list(r.clash or []),
            "received": _iso(r.received),
            "decided_by": r.decided_by,
            "seen": r.seen,
            "preview_key": (r.data or {}).get("preview_key"),
        }
        for r in session.scalars(query)
    ]


__all__ = [
    "BULLETIN_STATE_LABELS",
    "INBOX_LABELS",
    "MINUTES_CSV_COLUMNS",
    "inbox",
    "inbox_label",
    "minutes_across",
    "sent_bulletins",
    "unit_deliveries",
    "unit_states",
    "units_overview",
]

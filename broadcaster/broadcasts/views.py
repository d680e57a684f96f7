"""Read-only views of broadcasts (the API, the officer's pages, the fleet) and the one table of
Vietnamese labels.

Every page, report and export that names a state takes the words from here: the dashboard, a
broadcast's page, the log, the minutes report, the CSV and the API's ``state_label`` fields. One
table per kind of state, one lookup function per table; an unknown value is shown as it is, so a
state added later is visible (and the test that every enum value has a label fails).

Wording rules (issue 13): "hủy" (not "huỷ"), plain words a commune officer uses, no jargon, a
queued item reads "Đang chờ đến lượt phát".
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.broadcasts.state import parse_wire_id
from broadcaster.domain import Source, Tier
from broadcaster.models import Approval, Broadcast, BroadcastState, DeliveryState, Schedule

# ------------------------------------------------------------------ labels

BROADCAST_STATE_LABELS: dict[str, str] = {
    BroadcastState.SCHEDULED: "Đã hẹn giờ",
    BroadcastState.PENDING_APPROVAL: "Chờ duyệt",
    BroadcastState.RENDERING: "Đang tạo âm thanh",
    BroadcastState.SENDING: "Đang chờ đến lượt phát",  # queued, or its play command on the way
    BroadcastState.PLAYING: "Đang phát",
    BroadcastState.DONE: "Đã phát xong",
    BroadcastState.PARTIAL: "Phát chưa đủ loa",
    BroadcastState.INTERRUPTED: "Bị ngắt",
    BroadcastState.CANCELLED: "Đã hủy",
    BroadcastState.MISSED: "Lỡ giờ phát",
    BroadcastState.FAILED: "Không phát được",
}
DELIVERY_STATE_LABELS: dict[str, str] = {
    DeliveryState.PENDING: "Đang chờ đến lượt phát",
    DeliveryState.SENT: "Đã gửi tới loa",
    DeliveryState.RECEIVED: "Loa đã nhận",
    DeliveryState.SCHEDULED: "Chờ đến giờ phát",
    DeliveryState.PLAYING: "Đang phát",
    DeliveryState.DONE: "Đã phát xong",
    DeliveryState.FAILED: "Không phát được",
    DeliveryState.PREEMPTED: "Bị ngắt bởi tin ưu tiên hơn",
    DeliveryState.STOPPED: "Đã dừng",
    DeliveryState.EXPIRED: "Hết hạn, không phát",
    DeliveryState.MISSED: "Lỡ giờ phát",
    DeliveryState.CANCELLED: "Đã hủy",
}
# The words live on the enum (``Tier.label_vi``, used by the decision log too); this is the same
# table seen from here, not a second one.
TIER_LABELS: dict[str, str] = {tier: tier.label_vi for tier in Tier}
APPROVAL_LABELS: dict[str, str] = {
    Approval.DRAFT: "Bản nháp",
    Approval.PENDING: "Chờ duyệt",
    Approval.APPROVED: "Đã duyệt",
    Approval.REJECTED: "Bị từ chối",
}
# ``broadcaster.scheduling.spec.KINDS``.
SCHEDULE_KIND_LABELS: dict[str, str] = {
    "once": "Một lần",
    "daily": "Hằng ngày",
    "weekdays": "Thứ Hai đến Thứ Sáu",
    "weekly": "Hằng tuần",
    "cron": "Theo lịch riêng",
}
SOURCE_LABELS: dict[str, str] = {
    Source.WEB: "Soạn trên trang web",
    Source.API: "Gửi từ phần mềm khác",
    Source.SCHEDULE: "Lịch phát định kỳ",
    Source.UPSTREAM: "Tin cấp trên",
}

# ``Broadcast.kind``: what the item airs.
KIND_LABELS: dict[str, str] = {
    "announcement": "Bản tin",
    "relay": "Tiếp sóng",
    "live": "Phát trực tiếp",
}

LABELS: dict[str, Mapping[str, str]] = {
    "broadcast": BROADCAST_STATE_LABELS,
    "delivery": DELIVERY_STATE_LABELS,
    "tier": TIER_LABELS,
    "approval": APPROVAL_LABELS,
    "schedule_kind": SCHEDULE_KIND_LABELS,
    "source": SOURCE_LABELS,
    "kind": KIND_LABELS,
}


def label(kind: str, value: Any) -> str:
    """The Vietnamese label of ``value`` in the table ``kind`` (a key of ``LABELS``); an unknown
    value is returned as it is, None as ""."""
    if value is None:
        return ""
    text = str(value)
    return LABELS[kind].get(text, text)


def broadcast_state_label(value: Any) -> str:
    return label("broadcast", value)


def delivery_state_label(value: Any) -> str:
    return label("delivery", value)


def tier_label(value: Any) -> str:
    return label("tier", value)


def approval_label(value: Any) -> str:
    return label("approval", value)


def schedule_kind_label(value: Any) -> str:
    return label("schedule_kind", value)


def source_label(value: Any) -> str:
    return label("source", value)


def kind_label(value: Any) -> str:
    return label("kind", value or "announcement")


# ------------------------------------------------------------------ reads the pages need


def _days(value: str | None) -> list[str]:
    return [d for d in (value or "").split(",") if d]


def schedule_summary(row: Schedule) -> dict[str, Any]:
    """What an approver sees of a schedule waiting for approval."""
    return {
        "id": row.id,
        "name": row.name,
        "title": row.title,
        "text": row.text,
        "tier": row.tier,
        "targets": list(row.targets or []),
        "kind": row.kind,
        "time": row.time,
        "days": _days(row.days),
        "at": row.run_at,
        "cron": row.cron,
        "valid_from": row.valid_from,
        "valid_to": row.valid_to,
        "enabled": row.enabled,
        "approval": row.approval,
        "author": row.author,
        "created": row.created,
    }


class BroadcastViews:
    """Read-only queries behind the officer's pages (one short session per call).

    The lifecycle itself (submit, approve, cancel, get, list) stays with the broadcast manager;
    these are the counts and lookups the pages need besides."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def pending_count(self) -> int:
        """Broadcasts and schedules waiting for an approver."""
        with self.sessions() as session:
            broadcasts = session.scalar(
                select(func.count())
                .select_from(Broadcast)
                .where(Broadcast.state == BroadcastState.PENDING_APPROVAL.value)
            )
            schedules = session.scalar(
                select(func.count()).select_from(Schedule).where(Schedule.approval == Approval.PENDING.value)
            )
        return int(broadcasts or 0) + int(schedules or 0)

    def pending_schedules(self) -> list[dict[str, Any]]:
        """Schedules waiting for an approver, oldest first."""
        with self.sessions() as session:
            rows = session.scalars(
                select(Schedule).where(Schedule.approval == Approval.PENDING.value).order_by(Schedule.created)
            )
            return [schedule_summary(row) for row in rows]

    def announcement_id(self, broadcast_id: int) -> int | None:
        """The announcement a broadcast airs (approval decides on announcements); None if unknown."""
        with self.sessions() as session:
            return session.scalar(select(Broadcast.announcement_id).where(Broadcast.id == broadcast_id))


# ------------------------------------------------------------------ broadcasts as dicts (API, pages)

# Titles kept in memory by BroadcastTitles; beyond this the oldest half is forgotten.
_TITLE_MEMORY = 5000


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def broadcast_view(bc: Broadcast, *, deliveries: bool) -> dict[str, Any]:
    ann = bc.announcement
    out: dict[str, Any] = {
        "id": bc.id,
        "announcement_id": bc.announcement_id,
        "state": bc.state,
        "tier": bc.tier,
        "targets": list(bc.targets or []),
        "title": ann.title,
        "text": ann.text,
        "normalized_text": ann.normalized_text,
        "approval": ann.approval,
        "author": ann.author,
        "source": ann.source,
        "scheduled_at": _iso(bc.scheduled_at),
        "start_at": _iso(bc.start_at),
        "finished_at": _iso(bc.finished_at),
        "valid_until": _iso(bc.valid_until),
        "created": _iso(bc.created),
        "engine": bc.engine_used,
        "audio_key": bc.audio_key,
        "duration_s": bc.duration_s,
        "schedule_id": bc.schedule_id,
        "fire_time": _iso(bc.fire_time),
        "reason": bc.reason,
        # Live audio: a relay names its channel; "source" in reports is the channel or "Phát trực tiếp".
        "kind": bc.kind or "announcement",
        "channel_id": bc.channel_id,
        "source_name": bc.source_name,
        "end_at": _iso(bc.end_at),
    }
    out["interruptions"] = interruptions(bc)
    if deliveries:
        out["airings"] = airing_views(bc)
        out["deliveries"] = [
            {
                "speaker": d.speaker_id,
                "state": d.state,
                "started_at": _iso(d.started_at),
                "finished_at": _iso(d.finished_at),
                "seconds_played": d.seconds_played,
                "rms_dbfs": d.rms_dbfs,
                "reason": d.reason,
            }
            for d in bc.deliveries
        ]
    else:
        counts: dict[str, int] = {}
        for d in bc.deliveries:
            counts[d.state] = counts.get(d.state, 0) + 1
        out["delivery_counts"] = counts
    return out


def airing_views(bc: Broadcast) -> list[dict[str, Any]]:
    """Every airing on every cluster, the interrupted ones and the re-airings included."""
    return [
        {
            "speaker": a.speaker_id,
            "attempt": a.attempt,
            "started_at": _iso(a.started_at),
            "ended_at": _iso(a.ended_at),
            "outcome": a.outcome,
            "seconds_played": a.seconds_played,
            "reason": a.reason,
        }
        for a in bc.attempts
    ]


def interruptions(bc: Broadcast) -> str:
    """ "bị ngắt 2 lần (loa-01, loa-02), đã phát lại từ đầu" for a broadcast cut by a higher tier;
    "" when it was never cut."""
    cut = [a for a in bc.attempts if a.outcome == "preempted"]
    if not cut:
        return ""
    where = ", ".join(sorted({a.speaker_id for a in cut})[:10])
    replayed = any(a.attempt > 0 for a in bc.attempts)
    return f"bị ngắt {len(cut)} lần ({where})" + (", đã phát lại từ đầu" if replayed else "")


def get_broadcast(session: Session, broadcast_id: int) -> dict[str, Any] | None:
    if not 0 < broadcast_id < 2**63:
        return None
    bc = session.get(Broadcast, broadcast_id)
    if bc is None:
        return None
    out = broadcast_view(bc, deliveries=True)
    # Issue 11: a bulletin sent to downstream units lists what every cluster below did with it.
    from broadcaster.federation.views import unit_deliveries

    federated = unit_deliveries(session, bc.id)
    if federated is not None:
        out["unit_deliveries"] = federated
    return out


def list_broadcasts(
    session: Session, *, limit: int = 50, offset: int = 0, state: str | None = None
) -> list[dict[str, Any]]:
    query = select(Broadcast).order_by(Broadcast.id.desc()).limit(max(1, min(limit, 1000)))
    query = query.offset(max(0, offset))
    if state is not None:
        query = query.where(Broadcast.state == state)
    return [broadcast_view(bc, deliveries=False) for bc in session.scalars(query)]


class BroadcastTitles:
    """Title of a broadcast by id or by the id nodes report (``"12"``, ``"12-r1"``); for the fleet's
    "now playing" and the dashboard. Thread-safe, cached."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self._titles: dict[int, str] = {}
        self._lock = threading.Lock()

    def remember(self, broadcast_id: int, title: str) -> None:
        with self._lock:
            if len(self._titles) >= _TITLE_MEMORY:
                for old in sorted(self._titles)[: _TITLE_MEMORY // 2]:
                    del self._titles[old]
            self._titles[broadcast_id] = title

    def lookup(self, broadcast_id: str | int) -> str | None:
        parsed = parse_wire_id(str(broadcast_id))
        if parsed is None:
            return None
        bid = parsed[0]
        with self._lock:
            title = self._titles.get(bid)
        if title is not None:
            return title
        with self.sessions() as session:
            bc = session.get(Broadcast, bid)
            if bc is None:
                return None
            title = bc.announcement.title or bc.announcement.text[:60]
        self.remember(bid, title)
        return title


__all__ = [
    "APPROVAL_LABELS",
    "BroadcastTitles",
    "airing_views",
    "broadcast_view",
    "interruptions",
    "get_broadcast",
    "list_broadcasts",
    "BROADCAST_STATE_LABELS",
    "KIND_LABELS",
    "kind_label",
    "DELIVERY_STATE_LABELS",
    "LABELS",
    "SCHEDULE_KIND_LABELS",
    "SOURCE_LABELS",
    "TIER_LABELS",
    "BroadcastViews",
    "approval_label",
    "broadcast_state_label",
    "delivery_state_label",
    "label",
    "schedule_kind_label",
    "schedule_summary",
    "source_label",
    "tier_label",
]

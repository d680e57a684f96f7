"""Read-only views of broadcasts for the officer's pages, and the one table of Vietnamese labels.

Every page, report and export that names a state takes the words from here: the dashboard, a
broadcast's page, the log, the minutes report, the CSV and the API's ``state_label`` fields. One
table per kind of state, one lookup function per table; an unknown value is shown as it is, so a
state added later is visible (and the test that every enum value has a label fails).

Wording rules (issue 13): "hủy" (not "huỷ"), plain words a commune officer uses, no jargon, a
queued item reads "Đang chờ đến lượt phát".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

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
}

LABELS: dict[str, Mapping[str, str]] = {
    "broadcast": BROADCAST_STATE_LABELS,
    "delivery": DELIVERY_STATE_LABELS,
    "tier": TIER_LABELS,
    "approval": APPROVAL_LABELS,
    "schedule_kind": SCHEDULE_KIND_LABELS,
    "source": SOURCE_LABELS,
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


__all__ = [
    "APPROVAL_LABELS",
    "BROADCAST_STATE_LABELS",
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

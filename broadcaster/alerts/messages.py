"""The text of alert messages (Vietnamese, for the officer) and the webhook's JSON.

Pure: :class:`Formatter` turns an :class:`~broadcaster.alerts.policy.Outgoing` into a
:class:`Notice` (subject, text, JSON payload); the channels only carry it. Times are shown in the
controller's time zone as ``05:12 ngày 03/02/2025``; the JSON carries ISO 8601 UTC times.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from broadcaster.alerts.policy import Entry, Outgoing
from broadcaster.fleet.alerting import ALERT_KIND_LABELS, SOURCE_ALERT_KINDS, AlertChange

PRODUCT = "Loa xã"
RESOLVED_PREFIX = "Đã khắc phục: "
# A digest's JSON lists at most this many alerts (its text lists ``digest_max_lines``): the count is
# always exact, and a storm of thousands must not make one request of megabytes.
_MAX_JSON_ITEMS = 500


@dataclass(frozen=True)
class Notice:
    """One message, ready for any channel."""

    subject: str
    text: str
    payload: dict[str, Any]
    alert_count: int  # alerts this message tells of (a digest: several)


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


class Formatter:
    def __init__(
        self,
        instance_name: str = "",
        timezone: str = "Asia/Ho_Chi_Minh",
        dashboard_url: str | None = None,
        digest_max_lines: int = 20,
    ) -> None:
        self.instance_name = instance_name.strip()
        self.zone = ZoneInfo(timezone)
        self.dashboard_url = dashboard_url
        self.digest_max_lines = digest_max_lines

    # ------------------------------------------------------------------ public

    def notice(self, outgoing: Outgoing) -> Notice:
        if outgoing.digest:
            return self._digest(list(outgoing.entries))
        entry = outgoing.entries[0]
        return self._single(entry.resolved or entry.change)

    # ------------------------------------------------------------------ pieces

    def _head(self) -> str:
        return f"[{PRODUCT} – {self.instance_name}]" if self.instance_name else f"[{PRODUCT}]"

    def _time(self, value: datetime) -> str:
        local = value.astimezone(self.zone)
        return f"{local:%H:%M} ngày {local:%d/%m/%Y}"

    @staticmethod
    def _cluster(change: AlertChange) -> str:
        if change.speaker_name and change.speaker_name != change.speaker:
            return f"{change.speaker_name} (mã {change.speaker})"
        return change.speaker

    @staticmethod
    def _zone(change: AlertChange) -> str | None:
        if change.zone_name and change.zone:
            return f"{change.zone_name} (mã {change.zone})"
        return change.zone

    @staticmethod
    def _label(change: AlertChange) -> str:
        return ALERT_KIND_LABELS.get(change.kind, change.kind)

    def _footer(self) -> list[str]:
        return ["", f"Xem bảng điều khiển: {self.dashboard_url}"] if self.dashboard_url else []

    def _single(self, change: AlertChange) -> Notice:
        resolved = change.state == "resolved"
        where = self._zone(change)
        name = change.speaker_name or change.speaker
        subject = f"{self._head()} {RESOLVED_PREFIX if resolved else ''}{self._label(change)}: {name}"
        if change.zone_name or change.zone:
            subject += f", {change.zone_name or change.zone}"
        lines = [
            (RESOLVED_PREFIX + change.message) if resolved else f"Cảnh báo: {change.message}",
            "",
        ]
        if self.instance_name:
            lines.append(f"Đơn vị: {self.instance_name}")
        if change.kind in SOURCE_ALERT_KINDS:  # about the controller's relay source, not a cluster
            lines.append(f"Nguồn tiếp sóng: {change.speaker}")
        else:
            lines.append(f"Cụm loa: {self._cluster(change)}")
        if where:
            lines.append(f"Khu vực: {where}")
        lines.append(f"Từ lúc: {self._time(change.raised_at)}")
        if resolved and change.cleared_at is not None:
            lines.append(
                f"Khắc phục lúc: {self._time(change.cleared_at)} "
                f"(kéo dài {duration_vi((change.cleared_at - change.raised_at).total_seconds())})"
            )
        lines.extend(self._footer())
        text = "\n".join(lines)
        payload = {
            **self._item(change),
            "instance": self.instance_name,
            "subject": _nfc(subject),
            "text": _nfc(text),
        }
        return Notice(_nfc(subject), _nfc(text), payload, 1)

    def _digest(self, entries: list[Entry]) -> Notice:
        count = len(entries)
        subject = f"{self._head()} {count} cảnh báo cụm loa"
        lines = [f"{count} cảnh báo mới của các cụm loa (gộp lại để không gửi quá nhiều tin):", ""]
        for entry in entries[: self.digest_max_lines]:
            lines.append("• " + self._digest_line(entry))
        rest = count - min(count, self.digest_max_lines)
        if rest:
            lines.append(f"và {rest} cảnh báo khác")
        lines.extend(self._footer())
        text = "\n".join(lines)
        items = [
            {**self._item(e.change), **({"resolved": self._item(e.resolved)} if e.resolved else {})}
            for e in entries[:_MAX_JSON_ITEMS]
        ]
        payload = {
            "state": "digest",
            "count": count,
            "items": items,
            "instance": self.instance_name,
            "message": _nfc(f"{count} cảnh báo cụm loa"),
            "subject": _nfc(subject),
            "text": _nfc(text),
        }
        return Notice(_nfc(subject), _nfc(text), payload, count)

    def _digest_line(self, entry: Entry) -> str:
        change = entry.change
        where = f", {change.zone_name or change.zone}" if (change.zone_name or change.zone) else ""
        prefix = RESOLVED_PREFIX if change.state == "resolved" else ""
        line = f"{prefix}{self._cluster(change)}{where}: {change.message} (từ {self._time(change.raised_at)})"
        if entry.resolved is not None and entry.resolved.cleared_at is not None:
            line += f", đã khắc phục lúc {self._time(entry.resolved.cleared_at)}"
        return line

    @staticmethod
    def _item(change: AlertChange) -> dict[str, Any]:
        source = change.kind in SOURCE_ALERT_KINDS
        return {
            "state": change.state,
            "kind": change.kind,
            "alert_id": change.alert_id,
            "speaker": None if source else change.speaker,
            "source": change.speaker if source else None,
            "speaker_name": change.speaker_name,
            "zone": change.zone,
            "zone_name": change.zone_name,
            "message": _nfc(change.message),
            "raised_at": change.raised_at.isoformat(),
            "cleared_at": change.cleared_at.isoformat() if change.cleared_at else None,
        }


def duration_vi(seconds: float) -> str:
    """``3725`` -> ``"1 giờ 2 phút"``; under a minute in seconds, over a day in days and hours."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} giây"
    minutes, _ = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} ngày {hours} giờ" if hours else f"{days} ngày"
    if hours:
        return f"{hours} giờ {minutes} phút" if minutes else f"{hours} giờ"
    return f"{minutes} phút"

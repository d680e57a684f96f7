"""Why an engine is skipped, in the officer's words: one table of Vietnamese reasons for the
dashboard notice and the settings page (the chain decides; this module only words it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

# Short provider names used inside sentences ("FPT.AI hết hạn mức ký tự trong ngày"). The cloud
# engines carry their own ``label_vi``; these are the local engines'.
SHORT_NAMES_VI = {"gtts": "Google Dịch", "piper": "Piper", "espeak-ng": "eSpeak NG"}

_REASONS_VI = {
    "auth": "Khóa API của {label} không hợp lệ",
    "quota": "{label} đã hết hạn mức của gói dịch vụ",
    "cap": "{label} hết hạn mức ký tự trong ngày",
    "rate_limit": "{label} đang giới hạn số yêu cầu, tạm nghỉ",
    "timeout": "{label} không trả lời kịp",
    "bad_response": "{label} trả về dữ liệu không dùng được",
    "error": "{label} đang lỗi hoặc không kết nối được",
    "no_key": "Chưa có khóa API cho {label}",
    "not_installed": "{label} chưa sẵn sàng trên máy này",
}


def short_name_vi(engine: Any) -> str:
    """The engine's name inside a Vietnamese sentence."""
    label = getattr(engine, "label_vi", None)
    if isinstance(label, str) and label:
        return label
    name = str(getattr(engine, "name", engine))
    return SHORT_NAMES_VI.get(name, name)


def reason_vi(kind: str, label: str) -> str:
    """The Vietnamese reason for a failure ``kind`` (a TtsError kind, or no_key/not_installed)."""
    return _REASONS_VI.get(kind, _REASONS_VI["error"]).format(label=label)


def _vi_int(number: int) -> str:
    return f"{number:,}".replace(",", ".")


def cap_reason_vi(label: str, used: int, cap: int) -> str:
    return f"{reason_vi('cap', label)} (đã dùng {_vi_int(used)}/{_vi_int(cap)} ký tự)"


@dataclass(frozen=True)
class EngineStatus:
    """One engine for the dashboard notice: is it skipped, until when (local time), and why.

    ``reason_vi`` is for the officer, ``reason`` (English, secrets already removed) for the log."""

    name: str
    label_vi: str
    available: bool
    skipped: bool
    until: datetime | None = None
    kind: str | None = None
    reason_vi: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label_vi": self.label_vi,
            "available": self.available,
            "skipped": self.skipped,
            "until": self.until.isoformat() if self.until else None,
            "until_vi": self.until.strftime("%H:%M ngày %d/%m") if self.until else None,
            "kind": self.kind,
            "reason_vi": self.reason_vi,
            "reason": self.reason,
        }


__all__ = ["SHORT_NAMES_VI", "EngineStatus", "cap_reason_vi", "reason_vi", "short_name_vi"]

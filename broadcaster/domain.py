"""Frozen domain values shared by every part of the controller.

Ids are ``NewType`` wrappers so a type checker tells a speaker id from a zone id.
"""

from __future__ import annotations

import enum
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from typing import NewType

SpeakerId = NewType("SpeakerId", str)
ZoneId = NewType("ZoneId", str)
AudioKey = NewType("AudioKey", str)  # sha256 hex of (engine, voice, normalized text, render settings)
BroadcastId = NewType("BroadcastId", int)

ALL_TARGETS = "all"


class Tier(enum.StrEnum):
    """Broadcast tiers of Thông tư 39/2020/TT-BTTTT, lowest first."""

    NORMAL = "normal"
    PRIORITY = "priority"
    EMERGENCY = "emergency"

    @property
    def rank(self) -> int:
        return _TIER_RANK[self]

    @property
    def label_vi(self) -> str:
        return _TIER_LABEL_VI[self]


_TIER_RANK = {Tier.NORMAL: 0, Tier.PRIORITY: 1, Tier.EMERGENCY: 2}
_TIER_LABEL_VI = {Tier.NORMAL: "Thông thường", Tier.PRIORITY: "Ưu tiên", Tier.EMERGENCY: "Khẩn cấp"}


class Source(enum.StrEnum):
    WEB = "web"
    API = "api"
    SCHEDULE = "schedule"
    UPSTREAM = "upstream"  # a bulletin from the district or province, or a CAP alert (federation)


def nfc(text: str) -> str:
    """All text is stored as UTF-8 NFC."""
    return unicodedata.normalize("NFC", text)


@dataclass(frozen=True)
class Announcement:
    """What the web form, the REST API and a scheduled job all produce.

    ``targets`` holds ``"all"``, zone ids or speaker ids. ``at`` is None for "now".
    ``audio_key`` is set instead of ``text`` synthesis when the officer uploaded a recording.
    """

    text: str
    tier: Tier = Tier.NORMAL
    targets: tuple[str, ...] = (ALL_TARGETS,)
    title: str = ""
    repeat: int = 1
    engine: str | None = None
    voice: str | None = None
    at: datetime | None = None
    author: str | None = None
    source: Source = Source.API
    audio_key: AudioKey | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", nfc(self.text))
        object.__setattr__(self, "title", nfc(self.title))

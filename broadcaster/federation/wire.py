"""The messages of the link, as typed values with symmetric ``to_dict``/``from_dict`` (pure).

``docs/federation.md`` is the authority; this module checks every field at the edge and raises
:class:`WireError` (with the error code the upper level answers) on anything malformed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from broadcaster.domain import Tier, nfc
from broadcaster.federation.signing import VERSION

# At most this many reports in one sync request, and bulletins or cancellations in one answer.
MAX_REPORTS = 1000
MAX_ITEMS = 20
# The longest a lower level may ask the upper level to hold its poll.
MAX_WAIT_S = 60.0
REPORT_KINDS = ("bulletin", "delivery", "clusters", "minutes")
ITEM_KINDS = ("bulletin", "cancel")
FORMATS = ("text", "audio")
_LINK_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_ROUTE_RE = re.compile(r"^(\*|[a-z0-9][a-z0-9-]{0,62}(/[a-z0-9][a-z0-9-]{0,62}){0,3})$")
# Longest text of a bulletin from above (a long communiqué is still far below this).
MAX_TEXT = 50_000


class WireError(ValueError):
    """A message that does not follow docs/federation.md: ``status``/``code`` are the answer."""

    def __init__(self, message: str, *, code: str = "bad_request", status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


def _int(data: dict[str, Any], key: str, lo: int = 0, hi: int = 2**62, default: int | None = None) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise WireError(f"'{key}' must be an integer from {lo} to {hi}")
    return value


def _str(data: dict[str, Any], key: str, limit: int, *, required: bool = False) -> str:
    value = data.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or len(value) > limit or (required and not value):
        raise WireError(f"'{key}' must be a string of at most {limit} characters")
    return nfc(value)


def _float(value: Any, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise WireError(f"'{key}' must be a finite number")
    return float(value)


def parse_iso(value: Any, key: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise WireError(f"'{key}' must be an ISO 8601 time")
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise WireError(f"'{key}' must be an ISO 8601 time") from exc
    if dt.tzinfo is None:
        raise WireError(f"'{key}' must carry a UTC offset")
    return dt.astimezone(UTC)


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _version(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise WireError("the message must be a JSON object")
    if data.get("version") != VERSION:
        raise WireError(
            f"unsupported version {data.get('version')!r}; this side speaks {VERSION}",
            code="unsupported_version",
        )
    return data


# ------------------------------------------------------------------ requests (lower -> upper)


@dataclass(frozen=True)
class Report:
    seq: int
    kind: str
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "data": self.data}

    @classmethod
    def from_dict(cls, data: Any) -> Report:
        if not isinstance(data, dict):
            raise WireError("a report must be an object")
        kind = data.get("kind")
        if kind not in REPORT_KINDS:
            raise WireError(f"unknown report kind {kind!r}; known: {', '.join(REPORT_KINDS)}")
        body = data.get("data")
        if not isinstance(body, dict):
            raise WireError("a report's 'data' must be an object")
        return cls(_int(data, "seq", 1), kind, body)


@dataclass(frozen=True)
class SyncRequest:
    """``POST /federation/v1/sync``: reports up, the bulletin cursor acknowledged."""

    unit: str
    link: str
    ack: int = 0
    wait: float = 0.0
    reports: tuple[Report, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "unit": self.unit,
            "link": self.link,
            "ack": self.ack,
            "wait": self.wait,
            "reports": [r.to_dict() for r in self.reports],
        }

    @classmethod
    def from_dict(cls, data: Any) -> SyncRequest:
        data = _version(data)
        link = data.get("link")
        if not isinstance(link, str) or not _LINK_RE.match(link):
            raise WireError("'link' must be the link id (8..64 letters, digits, - or _)")
        wait = _float(data.get("wait", 0), "wait") or 0.0
        if not 0 <= wait <= MAX_WAIT_S:
            raise WireError(f"'wait' must be from 0 to {MAX_WAIT_S:.0f} seconds")
        raw = data.get("reports", [])
        if not isinstance(raw, list) or len(raw) > MAX_REPORTS:
            raise WireError(f"'reports' must be a list of at most {MAX_REPORTS}")
        reports = tuple(Report.from_dict(r) for r in raw)
        seqs = [r.seq for r in reports]
        if seqs != sorted(set(seqs)):
            raise WireError("reports must be in increasing 'seq' order, each once")
        return cls(_str(data, "unit", 64, required=True), link, _int(data, "ack", 0), wait, reports)


# ------------------------------------------------------------------ answers (upper -> lower)


@dataclass(frozen=True)
class Item:
    """A bulletin or a cancellation for one unit, numbered in that unit's sequence."""

    seq: int
    kind: str
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "data": self.data}

    @classmethod
    def from_dict(cls, data: Any) -> Item:
        if not isinstance(data, dict) or data.get("kind") not in ITEM_KINDS:
            raise WireError("an item must be an object of kind bulletin or cancel")
        body = data.get("data")
        if not isinstance(body, dict):
            raise WireError("an item's 'data' must be an object")
        return cls(_int(data, "seq", 1), data["kind"], body)


@dataclass(frozen=True)
class SyncResponse:
    acked: int
    items: tuple[Item, ...] = ()
    more: bool = False
    time: str = ""
    poll_after: float = 0.0  # the poll could not be held: poll again after this many seconds

    def to_dict(self) -> dict[str, Any]:
        out = {
            "version": VERSION,
            "acked": self.acked,
            "items": [i.to_dict() for i in self.items],
            "more": self.more,
            "time": self.time,
        }
        if self.poll_after:
            out["poll_after"] = self.poll_after
        return out

    @classmethod
    def from_dict(cls, data: Any) -> SyncResponse:
        data = _version(data)
        raw = data.get("items", [])
        if not isinstance(raw, list) or len(raw) > MAX_ITEMS:
            raise WireError(f"'items' must be a list of at most {MAX_ITEMS}")
        items = tuple(Item.from_dict(i) for i in raw)
        seqs = [i.seq for i in items]
        if seqs != sorted(set(seqs)):
            raise WireError("items must be in increasing 'seq' order, each once")
        poll_after = _float(data.get("poll_after", 0), "poll_after") or 0.0
        return cls(
            _int(data, "acked", 0),
            items,
            bool(data.get("more", False)),
            str(data.get("time", ""))[:40],
            min(max(poll_after, 0.0), MAX_WAIT_S),
        )


@dataclass(frozen=True)
class AudioRef:
    key: str
    sha256: str
    size: int
    duration_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "sha256": self.sha256, "size": self.size, "duration_s": self.duration_s}


@dataclass(frozen=True)
class Bulletin:
    """The data of a ``bulletin`` item: what to air, in which class, until when, and for whom below."""

    id: str
    tier: Tier
    title: str = ""
    text: str = ""
    format: str = "text"
    audio: AudioRef | None = None
    repeat: int = 1
    at: datetime | None = None
    valid_until: datetime | None = None
    route: tuple[str, ...] = ("*",)
    sender: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "class": self.tier.value,
            "title": self.title,
            "text": self.text,
            "format": self.format,
            "audio": self.audio.to_dict() if self.audio else None,
            "repeat": self.repeat,
            "at": iso(self.at),
            "valid_until": iso(self.valid_until),
            "route": list(self.route),
            "sender": self.sender,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Bulletin:
        try:
            tier = Tier(data.get("class"))
        except ValueError as exc:
            raise WireError("'class' must be normal, priority or emergency") from exc
        fmt = data.get("format", "text")
        if fmt not in FORMATS:
            raise WireError("'format' must be text or audio")
        audio = None
        raw = data.get("audio")
        if raw is not None:
            if not isinstance(raw, dict):
                raise WireError("'audio' must be an object")
            key, sha = raw.get("key"), raw.get("sha256")
            if (
                not isinstance(key, str)
                or not _SHA_RE.match(key)
                or not isinstance(sha, str)
                or not _SHA_RE.match(sha)
            ):
                raise WireError("'audio.key' and 'audio.sha256' must be 64 lower-case hex digits")
            duration = _float(raw.get("duration_s", 0.0), "audio.duration_s") or 0.0
            audio = AudioRef(key, sha, _int(raw, "size", 1, 2**40), duration)
        if fmt == "audio" and audio is None:
            raise WireError("an audio bulletin needs 'audio'")
        text = _str(data, "text", MAX_TEXT)
        if fmt == "text" and not text.strip():
            raise WireError("a text bulletin needs 'text'")
        route = data.get("route", ["*"])
        if not isinstance(route, list) or not route or len(route) > 1000:
            raise WireError("'route' must be a non-empty list")
        if not all(isinstance(r, str) and _ROUTE_RE.match(r) for r in route):
            raise WireError("'route' entries are '*' or unit paths such as 'xa-b' or 'huyen-a/xa-b'")
        return cls(
            id=_str(data, "id", 64, required=True),
            tier=tier,
            title=_str(data, "title", 300),
            text=text,
            format=fmt,
            audio=audio,
            repeat=_int(data, "repeat", 1, 20, default=1),
            at=parse_iso(data.get("at"), "at"),
            valid_until=parse_iso(data.get("valid_until"), "valid_until"),
            route=tuple(dict.fromkeys(route)),
            sender=_str(data, "sender", 200),
        )


__all__ = [
    "FORMATS",
    "ITEM_KINDS",
    "MAX_ITEMS",
    "MAX_REPORTS",
    "MAX_WAIT_S",
    "REPORT_KINDS",
    "AudioRef",
    "Bulletin",
    "Item",
    "Report",
    "SyncRequest",
    "SyncResponse",
    "WireError",
    "iso",
    "parse_iso",
]

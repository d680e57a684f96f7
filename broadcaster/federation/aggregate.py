"""The upper level applies what its units report: bulletin states, proof of play per cluster,
clusters, minutes aired. Unit paths: a unit reports about itself (``"unit": ""``) or, as a district,
about a commune below it (``"xa-b"``); the upper level stores ``huyen-a`` and ``huyen-a/xa-b``.

Each ``apply_*`` checks every field of its report before it writes anything, and raises
:class:`WireError` on a malformed one (the caller logs and counts it, and still acknowledges it, so
one bad report never blocks a link).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from broadcaster.federation.models import (
    FedBulletin,
    FedCluster,
    FedMinutes,
    FedUnitBulletin,
    FedUnitDelivery,
)
from broadcaster.federation.wire import Report, WireError, parse_iso
from broadcaster.models import DeliveryState

_PATH_RE = re.compile(r"^([a-z0-9][a-z0-9-]{0,62})(/[a-z0-9][a-z0-9-]{0,62}){0,3}$")
_SPEAKER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Bulletin states a unit reports: what it did with the bulletin (inbox, declined...) or, once it
# became a local broadcast, that broadcast's state.
BULLETIN_STATES = (
    "received",
    "inbox",
    "held",
    "declined",
    "missed",
    "cancelled",
    "failed",
    "forwarded",
    "scheduled",
    "pending_approval",
    "rendering",
    "sending",
    "playing",
    "done",
    "partial",
    "interrupted",
)
DELIVERY_STATES = frozenset(s.value for s in DeliveryState)
MAX_CLUSTERS = 5000
MAX_MINUTE_ROWS = 20_000


def join_path(unit: str, relative: Any) -> str:
    """``huyen-a`` + ``xa-b`` -> ``huyen-a/xa-b``; ``""`` is the unit itself."""
    if relative in (None, ""):
        return unit
    if not isinstance(relative, str) or not _PATH_RE.match(relative):
        raise WireError("'unit' must be a relative unit path such as 'xa-b'")
    path = f"{unit}/{relative}"
    if path.count("/") > 3:
        raise WireError("unit paths are at most four levels deep")
    return path


def _speaker(value: Any) -> str:
    if not isinstance(value, str) or not _SPEAKER_RE.match(value):
        raise WireError("'speaker' must be a cluster id")
    return value


def _text(value: Any, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise WireError("a text field must be a string")
    return value[:limit]


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or abs(value) > 1e9:
        raise WireError("a figure must be a finite number")
    return float(value)


def _bulletin(session: Session, unit: str, value: Any, rows: dict[tuple[Any, ...], Any]) -> FedBulletin:
    try:
        bid = int(value)
    except (TypeError, ValueError) as exc:
        raise WireError("'bulletin' must be a bulletin id") from exc
    row = rows.get(("fb", bid))
    if row is None:  # held here: the session's identity map keeps it only while referenced
        row = rows[("fb", bid)] = session.get(FedBulletin, bid)
    if row is None or unit not in (row.units or []):
        raise WireError(f"bulletin {value!r} was not sent to this unit")
    return row


def apply_report(
    session: Session, unit: str, report: Report, rows: dict[tuple[Any, ...], Any] | None = None
) -> tuple[str, dict[str, Any]] | None:
    """Apply one report of ``unit``; return what to forward up (kind, data with the unit path
    relative to us) for reports about bulletins and clusters, or None. ``rows``: the rows this
    transaction already holds (a batch of 200 reports about 9 clusters touches 9 rows: one query
    each, not one flush and query per report)."""
    data = report.data
    rows = {} if rows is None else rows
    with session.no_autoflush:
        if report.kind == "bulletin":
            return _apply_bulletin(session, unit, data, rows)
        if report.kind == "delivery":
            return _apply_delivery(session, unit, data, rows)
    if report.kind == "clusters":
        return _apply_clusters(session, unit, data)
    if report.kind == "minutes":
        return _apply_minutes(session, unit, data)
    raise WireError(f"unknown report kind {report.kind!r}")


def _apply_bulletin(
    session: Session, unit: str, data: dict[str, Any], rows: dict[tuple[Any, ...], Any]
) -> tuple[str, dict[str, Any]]:
    bulletin = _bulletin(session, unit, data.get("bulletin"), rows)
    path = join_path(unit, data.get("unit"))
    state = data.get("state")
    if state not in BULLETIN_STATES:
        raise WireError(f"unknown bulletin state {state!r}")
    reason = _text(data.get("reason"), 2000)
    row = session.scalar(
        select(FedUnitBulletin).where(
            FedUnitBulletin.bulletin_id == bulletin.id, FedUnitBulletin.unit == path
        )
    )
    if row is None:
        session.add(FedUnitBulletin(bulletin_id=bulletin.id, unit=path, state=state, reason=reason))
    else:
        row.state, row.reason = state, reason
    return "bulletin", {"bulletin": bulletin.id, "unit": path, "state": state, "reason": reason}


def _apply_delivery(
    session: Session, unit: str, data: dict[str, Any], rows: dict[tuple[Any, ...], Any]
) -> tuple[str, dict[str, Any]]:
    bulletin = _bulletin(session, unit, data.get("bulletin"), rows)
    path = join_path(unit, data.get("unit"))
    speaker = _speaker(data.get("speaker"))
    state = data.get("state")
    if state not in DELIVERY_STATES:
        raise WireError(f"unknown delivery state {state!r}")
    fields = {
        "state": state,
        "started_at": parse_iso(data.get("started_at"), "started_at"),
        "finished_at": parse_iso(data.get("finished_at"), "finished_at"),
        "seconds_played": _number(data.get("seconds_played")),
        "rms_dbfs": _number(data.get("rms_dbfs")),
        "reason": _text(data.get("reason"), 2000),
    }
    key = ("delivery", bulletin.id, path, speaker)
    row = rows.get(key) or session.scalar(
        select(FedUnitDelivery).where(
            FedUnitDelivery.bulletin_id == bulletin.id,
            FedUnitDelivery.unit == path,
            FedUnitDelivery.speaker == speaker,
        )
    )
    if row is None:
        row = FedUnitDelivery(bulletin_id=bulletin.id, unit=path, speaker=speaker, **fields)
        session.add(row)
    else:
        for name, value in fields.items():
            setattr(row, name, value)
    rows[key] = row
    out = {**data, "bulletin": bulletin.id, "unit": path}
    return "delivery", out


def _apply_clusters(session: Session, unit: str, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    path = join_path(unit, data.get("unit"))
    clusters = data.get("clusters")
    if not isinstance(clusters, list) or len(clusters) > MAX_CLUSTERS:
        raise WireError(f"'clusters' must be a list of at most {MAX_CLUSTERS}")
    rows = []
    for c in clusters:
        if not isinstance(c, dict):
            raise WireError("a cluster must be an object")
        faults = c.get("faults") or []
        if not isinstance(faults, list) or not all(isinstance(f, str) for f in faults):
            raise WireError("'faults' must be a list of strings")
        rows.append(
            FedCluster(
                unit=path,
                speaker=_speaker(c.get("id")),
                name=_text(c.get("name"), 200) or "",
                zone=_text(c.get("zone"), 64),
                online=bool(c.get("online")),
                faults=[f[:40] for f in faults[:20]],
                last_health=parse_iso(c.get("last_health"), "last_health"),
            )
        )
    session.execute(delete(FedCluster).where(FedCluster.unit == path))
    session.add_all({r.speaker: r for r in rows}.values())
    return "clusters", {**data, "unit": path}


def _apply_minutes(session: Session, unit: str, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    path = join_path(unit, data.get("unit"))
    days = data.get("days")
    if not isinstance(days, list) or len(days) > MAX_MINUTE_ROWS:
        raise WireError(f"'days' must be a list of at most {MAX_MINUTE_ROWS}")
    parsed: dict[tuple[date, str], tuple[int, float]] = {}
    for d in days:  # every row is checked before anything is written
        if not isinstance(d, dict):
            raise WireError("a minutes row must be an object")
        try:
            day = date.fromisoformat(str(d.get("date")))
        except ValueError as exc:
            raise WireError("'date' must be YYYY-MM-DD") from exc
        count = d.get("broadcasts", 0)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise WireError("'broadcasts' must be a count")
        parsed[(day, _speaker(d.get("speaker")))] = (count, _number(d.get("seconds")) or 0.0)
    for (day, speaker), (count, seconds) in parsed.items():
        row = session.get(FedMinutes, (path, day, speaker))
        if row is None:
            session.add(FedMinutes(unit=path, day=day, speaker=speaker, broadcasts=count, seconds=seconds))
        else:
            row.broadcasts, row.seconds = count, seconds
    return "minutes", {**data, "unit": path}


__all__ = ["BULLETIN_STATES", "apply_report", "join_path"]

"""What was aired: the broadcast log with filters, minutes aired per cluster per day, CSV export.

These are the figures a district asks for. Used by the REST API and the web UI. Days are counted
in ``settings.timezone``; times in JSON are ISO 8601 with the local offset, in CSV plain local
``YYYY-MM-DD HH:MM:SS`` so Excel reads them as dates. CSV is UTF-8 with a BOM (Excel otherwise
shows Vietnamese as mojibake), in two flavours: plain CSV (``,`` between fields, ``.`` in numbers,
for programs) and Excel's Vietnamese regional format (``;`` between fields, ``,`` in numbers: what
Excel expects on a computer set to Vietnamese, which reads a plain CSV as one column).
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from broadcaster.broadcasts.views import (
    broadcast_state_label,
    delivery_state_label,
    interruptions,
    kind_label,
    source_label,
    tier_label,
)
from broadcaster.domain import Tier
from broadcaster.models import (
    Announcement,
    Broadcast,
    BroadcastState,
    Delivery,
    DeliveryAttempt,
    Speaker,
    Zone,
)

MAX_LIMIT = 1000
MAX_DAYS = 366
_SCAN_BATCH = 500

LOG_CSV_COLUMNS: list[tuple[str, str]] = [
    ("broadcast_id", "Mã lượt phát"),
    ("time", "Thời gian"),
    ("title", "Tiêu đề"),
    ("kind", "Loại"),
    ("source_name", "Kênh hoặc nguồn phát"),
    ("text", "Nội dung"),
    ("tier", "Mức độ"),
    ("state", "Trạng thái lượt phát"),
    ("source", "Nguồn"),
    ("author", "Người tạo"),
    ("speaker", "Mã cụm loa"),
    ("speaker_name", "Tên cụm loa"),
    ("zone", "Khu vực"),
    ("airing", "Lần phát"),
    ("delivery_state", "Kết quả tại cụm loa"),
    ("started_at", "Bắt đầu phát"),
    ("finished_at", "Kết thúc"),
    ("seconds_played", "Số giây đã phát"),
    ("rms_dbfs", "Mức âm đo tại loa (dB)"),
    ("reason", "Lý do"),
]
MINUTES_CSV_COLUMNS: list[tuple[str, str]] = [
    ("date", "Ngày"),
    ("zone", "Khu vực"),
    ("zone_name", "Tên khu vực"),
    ("speaker", "Mã cụm loa"),
    ("speaker_name", "Tên cụm loa"),
    ("broadcasts", "Số lượt phát"),
    ("minutes", "Số phút đã phát"),
]


class ReportError(ValueError):
    """A bad report request (filter, date range); ``field`` names the parameter at fault."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def _zone_info(tz: str | tzinfo) -> tzinfo:
    return ZoneInfo(tz) if isinstance(tz, str) else tz


def fold(text: str) -> str:
    """Case- and accent-insensitive form for searching: "Bản TIN Đường" -> "ban tin duong"."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


# ------------------------------------------------------------------ filters


@dataclass
class LogFilters:
    """Filters of the broadcast log. ``start``/``end`` bound the broadcast's time (when it started,
    else when it was scheduled, else when it was created); ``q`` searches title and text ignoring
    case and accents."""

    start: datetime | None = None
    end: datetime | None = None
    tier: str | None = None
    state: str | None = None
    speaker: str | None = None
    zone: str | None = None
    q: str | None = None
    limit: int = 100
    offset: int = 0

    @classmethod
    def from_args(cls, args: Mapping[str, Any], tz: str | tzinfo = "Asia/Ho_Chi_Minh") -> LogFilters:
        """From query parameters ``from``, ``to`` (a date = that whole local day, or an ISO time),
        ``tier``, ``state``, ``speaker``, ``zone``, ``q``, ``limit``, ``offset``."""
        zone = _zone_info(tz)
        known = {"from", "to", "tier", "state", "speaker", "zone", "q", "limit", "offset"}
        unknown = sorted(set(args) - known)
        if unknown:
            raise ReportError(f"unknown filter(s): {', '.join(unknown)}", unknown[0])

        def get(name: str) -> str | None:
            value = args.get(name)
            return value.strip() or None if isinstance(value, str) else value

        tier, state = get("tier"), get("state")
        if tier is not None and tier not in {t.value for t in Tier}:
            raise ReportError(f"tier must be one of normal, priority, emergency (got {tier!r})", "tier")
        if state is not None and state not in {s.value for s in BroadcastState}:
            raise ReportError(
                f"state must be one of {', '.join(s.value for s in BroadcastState)} (got {state!r})", "state"
            )
        return cls(
            start=parse_when(get("from"), zone, "from"),
            end=parse_when(get("to"), zone, "to", end_of_day=True),
            tier=tier,
            state=state,
            speaker=get("speaker"),
            zone=get("zone"),
            q=get("q"),
            limit=_int_arg(get("limit"), "limit", 100, 1, MAX_LIMIT),
            offset=_int_arg(get("offset"), "offset", 0, 0, 10**9),
        )


def _int_arg(value: Any, name: str, default: int, lo: int, hi: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ReportError(f"{name} must be a whole number (got {value!r})", name) from None
    if not lo <= number <= hi:
        raise ReportError(f"{name} must be between {lo} and {hi}", name)
    return number


def parse_when(value: Any, zone: tzinfo, name: str, *, end_of_day: bool = False) -> datetime | None:
    """``YYYY-MM-DD`` (start of that local day, or its end when ``end_of_day``) or an ISO 8601 time
    (naive = local) -> aware UTC. None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime.combine(value + timedelta(days=1) if end_of_day else value, time())
        parsed = parsed.replace(tzinfo=zone) - (timedelta(microseconds=1) if end_of_day else timedelta())
    else:
        text = str(value).strip()
        try:
            if len(text) == 10:
                return parse_when(date.fromisoformat(text), zone, name, end_of_day=end_of_day)
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ReportError(
                f"{name} must be a date YYYY-MM-DD or an ISO 8601 time (got {text!r})", name
            ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC)


def parse_day(value: Any, name: str) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise ReportError(f"{name} must be a date YYYY-MM-DD (got {value!r})", name) from None


# ------------------------------------------------------------------ the log


def _when_column() -> Any:
    return func.coalesce(Broadcast.start_at, Broadcast.scheduled_at, Broadcast.created)


def _iso(value: datetime | None, zone: tzinfo) -> str | None:
    return None if value is None else value.astimezone(zone).isoformat()


def _speaker_index(session: Session) -> dict[str, tuple[str, str | None]]:
    return {
        s.id: (s.name, s.zone_id) for s in session.execute(select(Speaker.id, Speaker.name, Speaker.zone_id))
    }


def _log_query(filters: LogFilters) -> Select[Any]:
    when = _when_column()
    query = (
        select(Broadcast)
        .options(
            selectinload(Broadcast.deliveries),
            selectinload(Broadcast.announcement),
            selectinload(Broadcast.attempts),
        )
        .order_by(when.desc(), Broadcast.id.desc())
    )
    if filters.start is not None:
        query = query.where(when >= filters.start)
    if filters.end is not None:
        query = query.where(when <= filters.end)
    if filters.tier:
        query = query.where(Broadcast.tier == filters.tier)
    if filters.state:
        query = query.where(Broadcast.state == filters.state)
    if filters.speaker:
        query = query.where(
            Broadcast.id.in_(select(Delivery.broadcast_id).where(Delivery.speaker_id == filters.speaker))
        )
    if filters.zone:
        query = query.where(
            Broadcast.id.in_(
                select(Delivery.broadcast_id)
                .join(Speaker, Speaker.id == Delivery.speaker_id)
                .where(Speaker.zone_id == filters.zone)
            )
        )
    return query


def broadcast_dict(
    broadcast: Broadcast, speakers: Mapping[str, tuple[str, str | None]], zone: tzinfo
) -> dict[str, Any]:
    ann: Announcement = broadcast.announcement
    deliveries = []
    counts: dict[str, int] = defaultdict(int)
    total = 0.0
    attempts: dict[str, list[Any]] = defaultdict(list)
    for a in broadcast.attempts:
        attempts[a.speaker_id].append(a)
    for d in broadcast.deliveries:
        name, zone_id = speakers.get(d.speaker_id, (d.speaker_id, None))
        counts[d.state] += 1
        # Every airing counts, an interrupted first one included (older rows: the delivery's own).
        runs = attempts.get(d.speaker_id)
        total += sum(a.seconds_played or 0.0 for a in runs) if runs else d.seconds_played or 0.0
        deliveries.append(
            {
                "speaker": d.speaker_id,
                "speaker_name": name,
                "zone": zone_id,
                "state": d.state,
                "state_label": delivery_state_label(d.state),
                "started_at": _iso(d.started_at, zone),
                "finished_at": _iso(d.finished_at, zone),
                "seconds_played": d.seconds_played,
                "rms_dbfs": d.rms_dbfs,
                "reason": d.reason,
                "airings": [
                    {
                        "attempt": a.attempt,
                        "started_at": _iso(a.started_at, zone),
                        "ended_at": _iso(a.ended_at, zone),
                        "outcome": a.outcome,
                        "seconds_played": a.seconds_played,
                        "reason": a.reason,
                    }
                    for a in runs or ()
                ],
            }
        )
    when = broadcast.start_at or broadcast.scheduled_at or broadcast.created
    return {
        "id": broadcast.id,
        "time": _iso(when, zone),
        "created": _iso(broadcast.created, zone),
        "scheduled_at": _iso(broadcast.scheduled_at, zone),
        "start_at": _iso(broadcast.start_at, zone),
        "finished_at": _iso(broadcast.finished_at, zone),
        "fire_time": _iso(broadcast.fire_time, zone),
        "schedule_id": broadcast.schedule_id,
        "announcement_id": broadcast.announcement_id,
        "title": ann.title if ann else "",
        "text": ann.text if ann else "",
        "normalized_text": ann.normalized_text if ann else "",
        "tier": broadcast.tier,
        "tier_label": tier_label(broadcast.tier),
        "state": broadcast.state,
        "state_label": broadcast_state_label(broadcast.state),
        "targets": list(broadcast.targets or []),
        "source": ann.source if ann else None,
        "author": (ann.author if ann else None) or broadcast.created_by,
        "engine": broadcast.engine_used,
        "duration_s": broadcast.duration_s,
        "reason": broadcast.reason,
        # Relays and live speech: what they aired (the channel's name, «Phát trực tiếp»).
        "kind": broadcast.kind or "announcement",
        "kind_label": kind_label(broadcast.kind),
        "channel_id": broadcast.channel_id,
        "source_name": broadcast.source_name,
        "end_at": _iso(broadcast.end_at, zone),
        "audio_key": broadcast.audio_key,
        "interruptions": interruptions(broadcast),
        "seconds_played": round(total, 1),
        "counts": dict(counts),
        "deliveries": deliveries,
    }


def broadcast_log(
    session: Session,
    filters: LogFilters | Mapping[str, Any] | None = None,
    *,
    tz: str | tzinfo = "Asia/Ho_Chi_Minh",
) -> list[dict[str, Any]]:
    """Broadcasts matching ``filters``, newest first, each with its per-cluster deliveries."""
    zone = _zone_info(tz)
    if filters is None:
        filters = LogFilters()
    elif not isinstance(filters, LogFilters):
        names = {f.name for f in fields(LogFilters)}
        unknown = set(filters) - names
        if unknown:
            raise ReportError(f"unknown filter(s): {', '.join(sorted(unknown))}")
        filters = LogFilters(**dict(filters))
    limit = max(1, min(filters.limit, MAX_LIMIT))
    speakers = _speaker_index(session)
    query = _log_query(filters)
    if not filters.q:
        rows = session.scalars(query.limit(limit).offset(max(0, filters.offset))).all()
        return [broadcast_dict(b, speakers, zone) for b in rows]
    # Accent- and case-insensitive search is done here: SQLite's LIKE folds ASCII only.
    needle = fold(filters.q)
    out: list[dict[str, Any]] = []
    skipped = 0
    scan = 0
    while len(out) < limit:
        batch = session.scalars(query.limit(_SCAN_BATCH).offset(scan)).all()
        if not batch:
            break
        scan += len(batch)
        for b in batch:
            ann = b.announcement
            haystack = fold(f"{ann.title}\n{ann.text}\n{b.source_name or ''}") if ann else ""
            if needle not in haystack:
                continue
            if skipped < filters.offset:
                skipped += 1
                continue
            out.append(broadcast_dict(b, speakers, zone))
            if len(out) >= limit:
                break
    return out


def log_rows(log: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Flatten a log to one row per broadcast and cluster (for CSV)."""
    rows = []
    for b in log:
        base = {
            "broadcast_id": b["id"],
            "time": _plain(b["time"]),
            "title": b["title"],
            "kind": b.get("kind_label") or kind_label(b.get("kind")),
            "source_name": b.get("source_name"),
            "text": b["text"],
            "tier": b["tier_label"],
            "state": b["state_label"],
            "source": source_label(b["source"]),
            "author": b["author"],
        }
        if not b["deliveries"]:
            rows.append({**base, "reason": b["reason"]})
        for d in b["deliveries"]:
            cluster = {**base, "speaker": d["speaker"], "speaker_name": d["speaker_name"], "zone": d["zone"]}
            airings = d.get("airings") or []
            if len(airings) > 1 or any(a["outcome"] == "preempted" for a in airings):
                # Interrupted and aired again: one row per airing, each with how it ended.
                for a in airings:
                    rows.append(
                        {
                            **cluster,
                            "airing": a["attempt"] + 1,
                            "delivery_state": delivery_state_label(a["outcome"]),
                            "started_at": _plain(a["started_at"]),
                            "finished_at": _plain(a["ended_at"]),
                            "seconds_played": a["seconds_played"],
                            "reason": a["reason"],
                        }
                    )
                continue
            rows.append(
                {
                    **cluster,
                    "airing": 1 if airings else None,
                    "delivery_state": d["state_label"],
                    "started_at": _plain(d["started_at"]),
                    "finished_at": _plain(d["finished_at"]),
                    "seconds_played": d["seconds_played"],
                    "rms_dbfs": d["rms_dbfs"],
                    "reason": d["reason"] or b["reason"],
                }
            )
    return rows


def _plain(iso: str | None) -> str | None:
    """ISO with offset -> ``YYYY-MM-DD HH:MM:SS`` (already local), what Excel reads as a date."""
    return None if iso is None else datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S")


# ------------------------------------------------------------------ minutes per day


def _airings_in(
    session: Session, lo: datetime, hi: datetime, speaker: str | None
) -> list[tuple[str, int, float | None, datetime]]:
    """(cluster, broadcast, seconds, when it started) of every airing that started in [lo, hi):
    each attempt (an interrupted first airing and its re-airing both count), and for deliveries
    recorded before attempts existed, the delivery itself."""
    attempt_at = func.coalesce(DeliveryAttempt.started_at, DeliveryAttempt.ended_at)
    query = select(
        DeliveryAttempt.speaker_id,
        DeliveryAttempt.broadcast_id,
        DeliveryAttempt.seconds_played,
        attempt_at.label("played_at"),
    ).where(DeliveryAttempt.seconds_played > 0, attempt_at >= lo, attempt_at < hi)
    played_at = func.coalesce(
        Delivery.started_at, Delivery.finished_at, Broadcast.start_at, Broadcast.created
    )
    has_attempts = (
        select(DeliveryAttempt.id)
        .where(
            DeliveryAttempt.broadcast_id == Delivery.broadcast_id,
            DeliveryAttempt.speaker_id == Delivery.speaker_id,
        )
        .exists()
    )
    legacy = (
        select(
            Delivery.speaker_id, Delivery.broadcast_id, Delivery.seconds_played, played_at.label("played_at")
        )
        .join(Broadcast, Broadcast.id == Delivery.broadcast_id)
        .where(Delivery.seconds_played > 0, played_at >= lo, played_at < hi, ~has_attempts)
    )
    if speaker:
        query = query.where(DeliveryAttempt.speaker_id == speaker)
        legacy = legacy.where(Delivery.speaker_id == speaker)
    return [tuple(row) for row in [*session.execute(query), *session.execute(legacy)]]  # type: ignore[misc]


def minutes_per_day(
    session: Session,
    start: date | str,
    end: date | str,
    *,
    tz: str | tzinfo = "Asia/Ho_Chi_Minh",
    zone: str | None = None,
    speaker: str | None = None,
) -> list[dict[str, Any]]:
    """Minutes aired per cluster per local day, ``start``..``end`` inclusive.

    One row per day and registered cluster (zero when it aired nothing: a silent cluster is news
    too), plus clusters since deleted that aired in the range. Seconds are what the nodes
    measured for every airing (an interrupted airing and its re-airing both count), counted on the
    day playing started."""
    local = _zone_info(tz)
    first, last = parse_day(start, "from"), parse_day(end, "to")
    if last < first:
        raise ReportError("'to' is before 'from'", "to")
    if (last - first).days + 1 > MAX_DAYS:
        raise ReportError(f"at most {MAX_DAYS} days per report", "to")
    lo = datetime.combine(first, time(), local).astimezone(UTC)
    hi = datetime.combine(last + timedelta(days=1), time(), local).astimezone(UTC)
    totals: dict[tuple[date, str], float] = defaultdict(float)
    counts: dict[tuple[date, str], set[int]] = defaultdict(set)
    for speaker_id, broadcast_id, seconds, at in _airings_in(session, lo, hi, speaker):
        if at.tzinfo is None:  # coalesce() of typed columns keeps UtcDateTime; belt and braces
            at = at.replace(tzinfo=UTC)
        day = at.astimezone(local).date()
        totals[(day, speaker_id)] += seconds or 0.0
        counts[(day, speaker_id)].add(broadcast_id)

    speakers = _speaker_index(session)
    zone_names = dict(session.execute(select(Zone.id, Zone.name)).all())
    ids = set(speakers) | {sid for _, sid in totals}
    if speaker:
        ids &= {speaker}
    if zone:
        ids = {sid for sid in ids if speakers.get(sid, (None, None))[1] == zone}
    rows = []
    day = first
    while day <= last:
        for sid in ids:
            name, zone_id = speakers.get(sid, (sid, None))
            seconds = totals.get((day, sid), 0.0)
            rows.append(
                {
                    "date": day.isoformat(),
                    "speaker": sid,
                    "speaker_name": name,
                    "zone": zone_id,
                    "zone_name": zone_names.get(zone_id) if zone_id else None,
                    "broadcasts": len(counts.get((day, sid), ())),
                    "seconds": round(seconds, 1),
                    "minutes": round(seconds / 60.0, 2),
                }
            )
        day += timedelta(days=1)
    rows.sort(key=lambda r: (r["date"], r["zone"] or "", r["speaker"]))
    return rows


# ------------------------------------------------------------------ CSV

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# The two CSV flavours (``format`` of the web and API exports).
CSV_FORMATS = ("csv", "excel")


def _cell(value: Any, *, excel: bool = False) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "có" if value else "không"
    if isinstance(value, int | float) and excel:
        return str(_cell(value)).replace(".", ",")  # Vietnamese regional format: decimal comma
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        # A title such as "=HYPERLINK(...)" must not run as a formula when the district opens the file.
        return "'" + value
    return value


def to_csv(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[tuple[str, str]] | None = None,
    *,
    excel: bool = False,
) -> str:
    """CSV text: a UTF-8 BOM, a header row of ``columns`` (key, header), one line per row.

    Fields are quoted when needed (separators, quotes, new lines in announcement texts), lines end
    in CRLF; a text cell starting like a formula is prefixed with ``'``. ``excel``: the Vietnamese
    regional format (``;`` between fields, decimal commas). Encode with UTF-8."""
    rows = list(rows)
    if columns is None:
        keys: list[str] = []
        for row in rows:
            keys.extend(k for k in row if k not in keys)
        columns = [(k, k) for k in keys]
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(
        buffer, delimiter=";" if excel else ",", lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL
    )
    writer.writerow([header for _, header in columns])
    for row in rows:
        writer.writerow([_cell(row.get(key), excel=excel) for key, _ in columns])
    return buffer.getvalue()


def check_csv_format(value: Any) -> bool:
    """``format`` of an export: "csv" (default) or "excel"; True for Excel. ReportError otherwise."""
    if value in (None, "", "csv"):
        return False
    if value == "excel":
        return True
    raise ReportError("Định dạng tải về là «csv» hoặc «excel» (format must be csv or excel).", "format")


def log_csv(log: Iterable[Mapping[str, Any]], *, excel: bool = False) -> str:
    """The broadcast log as CSV, one line per broadcast and cluster, Vietnamese headers."""
    return to_csv(log_rows(log), LOG_CSV_COLUMNS, excel=excel)


def minutes_csv(rows: Iterable[Mapping[str, Any]], *, excel: bool = False) -> str:
    return to_csv(rows, MINUTES_CSV_COLUMNS, excel=excel)


# ------------------------------------------------------------------ the service


class Reports:
    """The reports over a sessionmaker, one short session per call, days in ``tz`` (the web pages
    use this; callers that hold a session use the functions above)."""

    def __init__(self, sessions: sessionmaker[Session], tz: str | tzinfo = "Asia/Ho_Chi_Minh") -> None:
        self.sessions = sessions
        self.tz = tz

    def filters(self, args: Mapping[str, Any]) -> LogFilters:
        """``LogFilters.from_args`` in this service's time zone; raises ``ReportError``."""
        return LogFilters.from_args(args, self.tz)

    def log(self, filters: LogFilters | Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        with self.sessions() as session:
            return broadcast_log(session, filters, tz=self.tz)

    def minutes(
        self, start: date | str, end: date | str, *, zone: str | None = None, speaker: str | None = None
    ) -> list[dict[str, Any]]:
        with self.sessions() as session:
            return minutes_per_day(session, start, end, tz=self.tz, zone=zone, speaker=speaker)


__all__ = [
    "CSV_FORMATS",
    "LOG_CSV_COLUMNS",
    "MINUTES_CSV_COLUMNS",
    "LogFilters",
    "ReportError",
    "Reports",
    "broadcast_dict",
    "broadcast_log",
    "check_csv_format",
    "fold",
    "log_csv",
    "log_rows",
    "minutes_csv",
    "minutes_per_day",
    "parse_when",
    "to_csv",
]

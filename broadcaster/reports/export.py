"""CSV export of the log and of the minutes, with Vietnamese headers.

CSV is UTF-8 with a BOM (Excel otherwise shows Vietnamese as mojibake), in two flavours: plain CSV
(``,`` between fields, ``.`` in numbers, for programs) and Excel's Vietnamese regional format
(``;`` between fields, ``,`` in numbers: what Excel expects on a computer set to Vietnamese, which
reads a plain CSV as one column). Times are plain local ``YYYY-MM-DD HH:MM:SS`` so Excel reads them
as dates; a text that starts like a formula is neutralised.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from broadcaster.broadcasts.views import delivery_state_label, kind_label, source_label
from broadcaster.reports.common import ReportError

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

"""Broadcast log filters, minutes aired per cluster per local day, CSV export (real SQLite)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from broadcaster.db import create_schema, make_engine, make_session_factory
from broadcaster.models import Announcement, Broadcast, Delivery, Speaker, Zone
from broadcaster.reports import (
    LOG_CSV_COLUMNS,
    LogFilters,
    ReportError,
    broadcast_log,
    fold,
    log_csv,
    minutes_csv,
    minutes_per_day,
    to_csv,
)
from tests.fixtures_postgres import db_url_for

# On SQLite and on PostgreSQL (tests/fixtures_postgres.py).
pytestmark = pytest.mark.usefixtures("database")

TZ = "Asia/Ho_Chi_Minh"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def sessions(tmp_path: Path):
    engine = make_engine(db_url_for(tmp_path / "reports.db"))
    create_schema(engine)
    factory = make_session_factory(engine)
    with factory.begin() as s:
        s.add_all([Zone(id="dong", name="Thôn Đông"), Zone(id="tay", name="Thôn Tây")])
        s.add_all(
            [
                Speaker(id="d1", name="Loa chợ", zone_id="dong"),
                Speaker(id="d2", name="Loa trường", zone_id="dong"),
                Speaker(id="t1", name="Loa đình", zone_id="tay"),
            ]
        )

        def add(title, text, tier, state, start, deliveries):
            s.add(
                Broadcast(
                    announcement=Announcement(
                        title=title, text=text, tier=tier, source="web", author="cán bộ"
                    ),
                    tier=tier,
                    targets=["all"],
                    state=state,
                    start_at=start,
                    deliveries=[
                        Delivery(speaker_id=sp, state=st, started_at=start, seconds_played=sec, reason=why)
                        for sp, st, sec, why in deliveries
                    ],
                )
            )

        # 2026-11-29 23:30 local = 16:30 UTC; 2026-11-30 00:30 local = 2026-11-29 17:30 UTC
        add(
            "Bản tin sáng",
            "Kính thưa bà con, hôm nay có mưa.",
            "normal",
            "done",
            utc(2026, 11, 29, 16, 30),
            [("d1", "done", 120.0, None), ("d2", "done", 118.5, None), ("t1", "failed", None, "loa hỏng")],
        )
        add(
            "BẢN TIN tối",
            'Thông báo "khẩn", có dấu phẩy,\nvà xuống dòng',
            "priority",
            "partial",
            utc(2026, 11, 29, 17, 30),
            [("d1", "done", 60.0, None), ("t1", "preempted", 30.0, "tin khẩn cấp")],
        )
        add(
            '=HYPERLINK("x")',
            "Báo cháy",
            "emergency",
            "done",
            utc(2026, 11, 30, 2, 0),
            [("t1", "done", 90.0, None)],
        )
    yield factory
    engine.dispose()


def test_fold_ignores_case_and_vietnamese_accents() -> None:
    assert fold("Bản TIN Đường") == "ban tin duong"
    assert fold("ĐỒNG") == fold("dong")


def test_log_filters(sessions) -> None:
    with sessions() as s:
        everything = broadcast_log(s, tz=TZ)
        assert [b["title"] for b in everything] == ['=HYPERLINK("x")', "BẢN TIN tối", "Bản tin sáng"]
        first = everything[-1]
        assert first["time"] == "2026-11-29T23:30:00+07:00" and first["state_label"] == "Đã phát xong"
        assert first["seconds_played"] == 238.5 and first["counts"] == {"done": 2, "failed": 1}
        t1 = next(d for d in first["deliveries"] if d["speaker"] == "t1")
        assert t1 == {
            **t1,
            "state": "failed",
            "reason": "loa hỏng",
            "zone": "tay",
            "speaker_name": "Loa đình",
        }

        assert [b["title"] for b in broadcast_log(s, {"q": "ban tin"}, tz=TZ)] == [
            "BẢN TIN tối",
            "Bản tin sáng",
        ]
        assert [b["title"] for b in broadcast_log(s, {"q": "ban tin", "limit": 1, "offset": 1}, tz=TZ)] == [
            "Bản tin sáng"
        ]
        assert [b["tier"] for b in broadcast_log(s, {"tier": "emergency"}, tz=TZ)] == ["emergency"]
        assert [b["state"] for b in broadcast_log(s, {"state": "partial"}, tz=TZ)] == ["partial"]
        assert len(broadcast_log(s, {"speaker": "d2"}, tz=TZ)) == 1
        assert len(broadcast_log(s, {"zone": "dong"}, tz=TZ)) == 2
        day = LogFilters.from_args({"from": "2026-11-30", "to": "2026-11-30"}, TZ)
        assert [b["title"] for b in broadcast_log(s, day, tz=TZ)] == ['=HYPERLINK("x")', "BẢN TIN tối"]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"from": "30/11/2026"}, "from"),
        ({"tier": "urgent"}, "tier"),
        ({"state": "aired"}, "state"),
        ({"limit": "0"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_filters_name_the_parameter(args, field) -> None:
    with pytest.raises(ReportError) as err:
        LogFilters.from_args(args, TZ)
    assert err.value.field == field


def test_minutes_per_cluster_per_local_day(sessions) -> None:
    with sessions() as s:
        rows = minutes_per_day(s, "2026-11-29", "2026-11-30", tz=TZ)
    table = {(r["date"], r["speaker"]): (r["seconds"], r["broadcasts"], r["minutes"]) for r in rows}
    assert table == {
        ("2026-11-29", "d1"): (120.0, 1, 2.0),
        ("2026-11-29", "d2"): (118.5, 1, 1.98),
        ("2026-11-29", "t1"): (0.0, 0, 0.0),  # failed, nothing played: a zero row, not a missing one
        ("2026-11-30", "d1"): (60.0, 1, 1.0),  # 00:30 local is the 30th, although 17:30 UTC the 29th
        ("2026-11-30", "d2"): (0.0, 0, 0.0),
        ("2026-11-30", "t1"): (120.0, 2, 2.0),  # 30 s interrupted + 90 s emergency
    }
    assert [r["speaker"] for r in rows[:3]] == ["d1", "d2", "t1"]  # by zone, then cluster
    assert rows[0]["zone_name"] == "Thôn Đông"
    with sessions() as s:
        only_tay = minutes_per_day(s, "2026-11-30", "2026-11-30", tz=TZ, zone="tay")
        assert [(r["speaker"], r["seconds"]) for r in only_tay] == [("t1", 120.0)]
        with pytest.raises(ReportError, match="before"):
            minutes_per_day(s, "2026-11-30", "2026-11-29", tz=TZ)
        with pytest.raises(ReportError, match="366"):
            minutes_per_day(s, "2024-01-01", "2026-01-01", tz=TZ)


def parse_csv(text: str) -> list[list[str]]:
    data = text.encode("utf-8")
    assert data.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs to read UTF-8
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def test_log_csv_has_vietnamese_headers_quoting_and_no_formulas(sessions) -> None:
    with sessions() as s:
        text = log_csv(broadcast_log(s, tz=TZ))
    assert "\r\n" in text
    rows = parse_csv(text)
    assert rows[0] == [h for _, h in LOG_CSV_COLUMNS] and rows[0][1] == "Thời gian"
    body = [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]
    assert len(body) == 6  # one line per broadcast and cluster
    evening = [r for r in body if r["Tiêu đề"] == "BẢN TIN tối"]
    assert evening[0]["Nội dung"] == 'Thông báo "khẩn", có dấu phẩy,\nvà xuống dòng'
    assert {r["Mã cụm loa"]: r["Kết quả tại cụm loa"] for r in evening} == {
        "d1": "Đã phát xong",
        "t1": "Bị ngắt bởi tin ưu tiên hơn",
    }
    assert evening[0]["Thời gian"] == "2026-11-30 00:30:00" and evening[0]["Mức độ"] == "Ưu tiên"
    fire = next(r for r in body if r["Mức độ"] == "Khẩn cấp")
    assert fire["Tiêu đề"] == '\'=HYPERLINK("x")'  # neutralised, shown as text by Excel


def test_minutes_csv_and_generic_csv(sessions) -> None:
    with sessions() as s:
        rows = parse_csv(minutes_csv(minutes_per_day(s, "2026-11-30", "2026-11-30", tz=TZ)))
    assert rows[0] == [
        "Ngày",
        "Khu vực",
        "Tên khu vực",
        "Mã cụm loa",
        "Tên cụm loa",
        "Số lượt phát",
        "Số phút đã phát",
    ]
    assert rows[-1] == ["2026-11-30", "tay", "Thôn Tây", "t1", "Loa đình", "2", "2"]
    assert parse_csv(to_csv([{"a": 1.5, "b": None, "c": True}])) == [["a", "b", "c"], ["1.5", "", "có"]]

"""Relays and live speech in the reports like announcements, with the source named: the log (JSON
and the page), the minutes aired per cluster and day, the CSV (real SQLite)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from broadcaster.db import create_schema, make_engine, make_session_factory
from broadcaster.models import Announcement, Broadcast, Delivery, Speaker, Zone
from broadcaster.reports import broadcast_log, log_csv, minutes_per_day
from tests.fixtures_web import login

TZ = "Asia/Ho_Chi_Minh"
START = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)  # 07:00 local


def _add(
    session: Any, kind: str, title: str, source_name: str | None, start: datetime, seconds: float
) -> None:
    session.add(
        Broadcast(
            announcement=Announcement(title=title, text="", tier="normal", source="web", author="chu-tich"),
            tier="normal",
            targets=["all"],
            state="done",
            start_at=start,
            end_at=start + timedelta(seconds=seconds),
            kind=kind,
            source_name=source_name,
            deliveries=[Delivery(speaker_id="d1", state="done", started_at=start, seconds_played=seconds)],
        )
    )


@pytest.fixture
def sessions(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'reports.db'}")
    create_schema(engine)
    factory = make_session_factory(engine)
    with factory.begin() as s:
        s.add(Zone(id="dong", name="Thôn Đông"))
        s.add(Speaker(id="d1", name="Loa chợ", zone_id="dong"))
        _add(s, "relay", "Thời sự sáng", "VOV1", START, 1800.0)
        _add(s, "live", "Phát trực tiếp", "Phát trực tiếp", START + timedelta(hours=1), 95.0)
    yield factory
    engine.dispose()


def test_the_log_names_the_source_of_relays_and_live_items(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        log = broadcast_log(s, tz=TZ)
        live, relay = log
        assert (relay["kind"], relay["kind_label"], relay["source_name"]) == ("relay", "Tiếp sóng", "VOV1")
        assert relay["end_at"] == "2026-12-01T07:30:00+07:00" and relay["seconds_played"] == 1800.0
        assert (live["kind_label"], live["source_name"]) == ("Phát trực tiếp", "Phát trực tiếp")
        # Searching the log finds a relay by its channel.
        assert [b["id"] for b in broadcast_log(s, {"q": "vov1"}, tz=TZ)] == [relay["id"]]


def test_minutes_aired_count_relays_and_live_speech(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        (row,) = minutes_per_day(s, "2026-12-01", "2026-12-01", tz=TZ)
    assert (row["broadcasts"], row["seconds"]) == (2, 1895.0)


def test_the_csv_names_the_kind_and_the_source(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        text = log_csv(broadcast_log(s, tz=TZ))
    rows = list(csv.DictReader(io.StringIO(text.encode().decode("utf-8-sig"), newline="")))
    by_kind = {r["Loại"]: r for r in rows}
    assert by_kind["Tiếp sóng"]["Kênh hoặc nguồn phát"] == "VOV1"
    assert by_kind["Tiếp sóng"]["Số giây đã phát"] == "1800"
    assert by_kind["Phát trực tiếp"]["Kênh hoặc nguồn phát"] == "Phát trực tiếp"


def test_the_log_page_shows_a_relays_channel(client: Any, web_services: Any) -> None:
    with web_services.sessions.begin() as s:
        now = datetime.now(UTC)
        _add(s, "relay", "Thời sự trưa", "Đài tỉnh", now, 600.0)
    login(client, "editor")
    page = client.get("/log").get_data(as_text=True)
    assert "Tiếp sóng</strong> kênh «Đài tỉnh»" in page
    csv_text = client.get("/log.csv").get_data(as_text=True)
    assert "Đài tỉnh" in csv_text and "Tiếp sóng" in csv_text

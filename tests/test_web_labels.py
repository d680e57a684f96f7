"""One Vietnamese label per state, everywhere: the table in ``broadcaster.broadcasts.views`` covers
every state, and the dashboard, the log page, a broadcast's page and the CSV name the same state
with the same words (rendered through the Flask test client over a real SQLite file)."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from html import unescape
from itertools import zip_longest
from pathlib import Path
from typing import Any

import pytest

from broadcaster.broadcasts import views
from broadcaster.domain import Source, Tier
from broadcaster.models import Announcement as AnnouncementRow
from broadcaster.models import Approval, Broadcast, BroadcastState, Delivery, DeliveryState
from tests.fixtures_web import login

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("kind", "enum"),
    [("broadcast", BroadcastState), ("delivery", DeliveryState), ("tier", Tier), ("approval", Approval)],
)
def test_every_state_has_one_label_of_its_own(kind: str, enum: Any) -> None:
    table = views.LABELS[kind]
    assert set(table) == {member.value for member in enum}, f"{kind}: states and labels differ"
    labels = [views.label(kind, member) for member in enum]
    assert all(labels) and len(set(labels)) == len(labels), f"{kind}: two states share a label"
    for text in labels:
        assert text == text.strip() and text[0].isupper(), text
        assert "huỷ" not in text.lower() and "_" not in text, text


def test_unknown_values_are_shown_as_they_are() -> None:
    assert views.broadcast_state_label("new_state") == "new_state"
    assert views.delivery_state_label(None) == ""
    assert views.label("schedule_kind", "daily") == "Hằng ngày"
    assert views.label("source", Source.SCHEDULE) == "Lịch phát định kỳ"


def test_the_wording_rules_hold_in_the_officer_pages() -> None:
    """'hủy' not 'huỷ', «» quotes, no jargon in the templates and the UI code."""
    files = [
        *(ROOT / "broadcaster/web/templates").glob("*.html"),
        *(ROOT / "broadcaster/web/ui").glob("*.py"),
    ]
    assert files
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert "huỷ" not in text.lower(), path
        assert "“" not in text and "”" not in text, f"{path}: use «» quotes"
        if path.suffix == ".html":
            for jargon in ("MQTT", "dBFS", "Bộ đọc", "cron"):
                assert jargon not in text, f"{path}: {jargon}"
    assert views.DELIVERY_STATE_LABELS[DeliveryState.PENDING] == "Đang chờ đến lượt phát"
    assert views.BROADCAST_STATE_LABELS[BroadcastState.CANCELLED] == "Đã hủy"


def _add_broadcast(sessions: Any) -> int:
    start = datetime.now(UTC) - timedelta(minutes=2)
    with sessions.begin() as session:
        row = Broadcast(
            announcement=AnnouncementRow(
                title="Tin nhãn", text="Tin để so nhãn.", tier="normal", source="web"
            ),
            tier="normal",
            targets=["loa-1a"],
            state="done",
            start_at=start,
            deliveries=[Delivery(speaker_id="loa-1a", state="done", started_at=start, seconds_played=10.0)],
        )
        session.add(row)
        session.flush()
        return row.id


def _set(sessions: Any, broadcast_id: int, state: str, delivery: str, tier: str) -> None:
    with sessions.begin() as session:
        row = session.get(Broadcast, broadcast_id)
        row.state, row.tier = state, tier
        row.deliveries[0].state = delivery


def _pill(html: str, anchor: str) -> str:
    """The text of the first state pill after ``anchor``."""
    rest = html[html.index(anchor) :]
    return unescape(re.search(r'<span class="pill [a-z]+[^"]*">([^<]*)</span>', rest).group(1)).strip()


def _shown(client: Any, broadcast_id: int) -> dict[str, str]:
    """Where the broadcast's state, its cluster's result and its tier are named, and how."""
    live = client.get("/dashboard.json").get_json()
    recent = next(b for b in live["recent"] if b["id"] == broadcast_id)
    item = live["html"][live["html"].index(f'data-broadcast="{broadcast_id}"') :]
    log = client.get("/log").get_data(as_text=True)
    entry = log[log.index(f'data-broadcast="{broadcast_id}"') :]
    detail = client.get(f"/broadcasts/{broadcast_id}").get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(client.get("/log.csv").data.decode("utf-8-sig"))))
    row = next(r for r in rows if r["Mã lượt phát"] == str(broadcast_id))
    return {
        "dashboard": _pill(item, "<a"),
        "dashboard json": recent["state_label"],
        "log": _pill(entry, "<header>"),
        "page": _pill(detail, 'class="head-actions"'),
        "csv": row["Trạng thái lượt phát"],
        "log cluster": _pill(entry, 'data-speaker="loa-1a"'),
        "page cluster": _pill(detail, 'data-speaker="loa-1a"'),
        "csv cluster": row["Kết quả tại cụm loa"],
        "dashboard tier": recent["tier"],
        "log tier": unescape(re.search(r'class="tier tier-[a-z]+">([^<]*)<', entry).group(1)),
        "csv tier": row["Mức độ"],
    }


def test_dashboard_log_page_and_csv_name_each_state_alike(client: Any, web_services: Any) -> None:
    login(client, "approver")
    broadcast_id = _add_broadcast(web_services.sessions)
    tiers = list(Tier)
    for i, (state, delivery) in enumerate(zip_longest(BroadcastState, DeliveryState)):
        state = state or BroadcastState.DONE
        tier = tiers[i % len(tiers)]
        _set(web_services.sessions, broadcast_id, state.value, delivery.value, tier.value)
        shown = _shown(client, broadcast_id)
        expected = {
            key: views.tier_label(tier)
            if "tier" in key
            else views.delivery_state_label(delivery)
            if "cluster" in key
            else views.broadcast_state_label(state)
            for key in shown
        }
        assert shown == expected, (state, delivery, tier)
    # The log's state filter offers the same words.
    log = client.get("/log").get_data(as_text=True)
    for state in BroadcastState:
        option = rf'<option value="{state.value}"\s*>{re.escape(views.broadcast_state_label(state))}</option>'
        assert re.search(option, log), state

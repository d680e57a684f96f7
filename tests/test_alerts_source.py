"""Controller-level alerts about relay sources (``source_stalled``): written with no cluster, told to
the alert listeners, sent as a message that names the source (not a cluster), resolved once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from broadcaster.alerts.config import AlertsConfig
from broadcaster.alerts.messages import Formatter
from broadcaster.alerts.policy import Entry, Outgoing
from broadcaster.db import create_schema, make_engine, make_session_factory
from broadcaster.fleet.alerting import AlertChange
from broadcaster.fleet.sources import SourceAlerts
from broadcaster.models import Alert, LogEntry


@pytest.fixture
def sessions(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'alerts.db'}")
    create_schema(engine)
    yield make_session_factory(engine)
    engine.dispose()


def test_a_stall_is_one_alert_raised_then_resolved(sessions) -> None:  # type: ignore[no-untyped-def]
    told: list[AlertChange] = []
    alerts = SourceAlerts(sessions, told.append)
    alerts.stalled("ch1", "VOV1", "không có âm thanh 5 giây")
    alerts.stalled("ch1", "VOV1", "không kết nối được")  # still the same stall: no second alert
    assert [a["message"] for a in alerts.active()] == [
        "Nguồn tiếp sóng «VOV1» mất tín hiệu (không có âm thanh 5 giây); đang kết nối lại"
    ]
    alerts.resumed("ch1", "VOV1")
    alerts.resumed("ch1", "VOV1")  # nothing open: nothing told
    assert alerts.active() == []
    assert [(c.state, c.speaker, c.kind) for c in told] == [
        ("raised", "VOV1", "source_stalled"),
        ("resolved", "VOV1", "source_stalled"),
    ]
    assert told[1].cleared_at is not None and told[1].alert_id == told[0].alert_id
    with sessions() as session:
        (row,) = session.scalars(select(Alert)).all()
        assert row.speaker_id is None and row.cleared_at is not None
        kinds = [e.kind for e in session.scalars(select(LogEntry).order_by(LogEntry.id))]
        assert kinds == ["alert", "alert_cleared"]


def test_alerts_left_open_by_a_previous_run_are_closed_at_start(sessions) -> None:  # type: ignore[no-untyped-def]
    SourceAlerts(sessions).stalled("ch2", "Đài huyện", "nguồn kết thúc")
    fresh = SourceAlerts(sessions)
    assert fresh.close_stale() == 1 and fresh.active() == []


def test_the_message_names_the_source_not_a_cluster() -> None:
    raised = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
    change = AlertChange("raised", 7, "VOV1", "source_stalled", "Nguồn tiếp sóng «VOV1» mất tín hiệu", raised)
    notice = Formatter("Xã Yên Lạc").notice(Outgoing("mail", (Entry(change),)))
    assert "Nguồn tiếp sóng: VOV1" in notice.text and "Cụm loa" not in notice.text
    assert notice.subject == "[Loa xã – Xã Yên Lạc] Nguồn tiếp sóng mất tín hiệu: VOV1"
    assert (notice.payload["source"], notice.payload["speaker"]) == ("VOV1", None)
    resolved = AlertChange(
        "resolved", 7, "VOV1", "source_stalled", change.message, raised, raised + timedelta(seconds=40)
    )
    done = Formatter().notice(Outgoing("mail", (Entry(resolved),)))
    assert done.subject.startswith("[Loa xã] Đã khắc phục: Nguồn tiếp sóng mất tín hiệu")
    assert "kéo dài 40 giây" in done.text


def test_a_channel_can_be_given_only_source_alerts() -> None:
    config = AlertsConfig.model_validate(
        {"channels": [{"type": "webhook", "url": "https://hook.example.vn/x", "kinds": ["source_stalled"]}]}
    )
    assert config.channels[0].kinds == ["source_stalled"]

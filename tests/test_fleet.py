"""Fleet: live state, alerts, batched health ingest, malformed messages, time answers."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from broadcaster.db import create_schema, make_engine, make_session_factory
from broadcaster.fleet import Fleet, FleetConfig
from broadcaster.models import Alert, HealthSample, LogEntry, Speaker, Zone
from broadcaster.transport.memory import MemoryBroker, MemoryTransport
from speakers import protocol as proto
from tests.fakes import FakeNode, FlakyCommitSessions
from tests.fixtures_controller import wait_until
from tests.fixtures_postgres import db_url_for

# On SQLite and on PostgreSQL (tests/fixtures_postgres.py).
pytestmark = pytest.mark.usefixtures("database")


class Harness:
    def __init__(self, tmp_path: Path, flaky: bool = False, **config: object) -> None:
        self.engine = make_engine(db_url_for(tmp_path / "fleet.db"))
        create_schema(self.engine)
        self.sessions = make_session_factory(self.engine)
        # flaky: the fleet's commits can be made to fail (FlakyCommitSessions on its worker thread).
        self.fleet_sessions = (
            FlakyCommitSessions(self.sessions, thread="fleet-worker") if flaky else self.sessions
        )
        with self.sessions.begin() as s:
            s.add(Zone(id="thon-1", name="Thôn Đông"))
            for i in (1, 2, 3):
                s.add(Speaker(id=f"loa-0{i}", name=f"Loa {i}", zone_id="thon-1"))
        self.broker = MemoryBroker()
        self.transport = MemoryTransport(self.broker)
        self.fleet = Fleet(self.fleet_sessions, self.transport, FleetConfig(**config))  # type: ignore[arg-type]
        self.nodes = {f"loa-0{i}": FakeNode(self.broker, f"loa-0{i}", "thon-1") for i in (1, 2, 3)}
        self.online: list[tuple[str, bool]] = []
        self.fleet.add_online_listener(lambda s, o: self.online.append((s, o)))
        self.fleet.start()
        self.transport.start()

    def raw(self, topic: str, payload: bytes) -> None:
        self.broker.publish(topic, payload, False)

    def active_alerts(self) -> set[tuple[str, str]]:
        with self.sessions() as s:
            return {
                (a.speaker_id, a.kind) for a in s.scalars(select(Alert).where(Alert.cleared_at.is_(None)))
            }

    def close(self) -> None:
        self.fleet.stop()
        for n in self.nodes.values():
            n.stop()
        self.engine.dispose()


@pytest.fixture
def harness(tmp_path: Path):  # type: ignore[no-untyped-def]
    h = Harness(tmp_path, health_interval_s=30)
    yield h
    h.close()


def test_online_offline_from_status_and_last_will(harness: Harness) -> None:
    h = harness
    h.nodes["loa-01"].connect()
    wait_until(lambda: h.fleet.is_online("loa-01"), what="online")
    assert ("loa-01", True) in h.online
    h.nodes["loa-01"].disconnect()  # last will: retained online=false
    wait_until(lambda: not h.fleet.is_online("loa-01"), what="offline")
    h.fleet.flush()
    assert ("loa-01", "offline") in h.active_alerts()
    snap = h.fleet.speaker("loa-01")
    assert snap is not None and snap["online"] is False
    assert snap["alerts"] == [{"kind": "offline", "message": "Cụm loa mất kết nối"}]
    h.nodes["loa-01"].reconnect()
    wait_until(lambda: h.fleet.is_online("loa-01"), what="back online")
    h.fleet.flush()
    assert ("loa-01", "offline") not in h.active_alerts()
    with h.sessions() as s:
        log = [e.message for e in s.scalars(select(LogEntry).order_by(LogEntry.id))]
    assert any("mất kết nối" in m for m in log) and any("hết cảnh báo" in m for m in log)


def test_snapshot_fields_health_and_amplifier_alert(harness: Harness) -> None:
    h = harness
    node = h.nodes["loa-02"]
    node.connect()
    node.send_health(volume=65, amplifier_on=False, playing="42", last_error="thẻ nhớ đầy")
    h.fleet.flush()
    wait_until(lambda: (h.fleet.speaker("loa-02") or {}).get("health"), what="health")
    h.fleet.flush()
    snap = h.fleet.speaker("loa-02")
    assert snap is not None
    assert snap["zone"] == "thon-1" and snap["name"] == "Loa 2" and snap["online"] is True
    assert snap["volume"] == 65 and snap["amplifier_on"] is False
    assert snap["playing"]["broadcast_id"] == 42
    kinds = {a["kind"] for a in snap["alerts"]}
    assert kinds == {"amplifier", "error"}
    assert "thẻ nhớ đầy" in [a for a in snap["alerts"] if a["kind"] == "error"][0]["message"]
    node.send_health(volume=65, amplifier_on=True, playing=None)
    h.fleet.flush()
    wait_until(lambda: h.fleet.speaker("loa-02")["alerts"] == [], what="alerts cleared")
    h.fleet.flush()  # the snapshot changes before the commit: wait for it (this raced)
    assert h.active_alerts() == set()
    assert {s["id"] for s in h.fleet.snapshot()} == {"loa-01", "loa-02", "loa-03"}


def test_no_amplifier_alert_from_a_report_taken_before_playback(harness: Harness) -> None:
    """The amplifier switches on just before playback; a health report sent before that must not
    be read against a later 'playing' receipt (the officer saw false alarms on every cluster)."""
    h = harness
    node = h.nodes["loa-01"]
    node.connect()
    node.send_health(amplifier_on=False, playing=None)
    h.fleet.flush()
    wait_until(lambda: (h.fleet.speaker("loa-01") or {}).get("health"), what="health")
    node._event("playing", broadcast_id="7", started_at=time.time())
    h.fleet.flush()
    wait_until(lambda: (h.fleet.speaker("loa-01") or {}).get("playing"), what="playing")
    h.fleet.flush()
    assert "amplifier" not in {a["kind"] for a in h.fleet.speaker("loa-01")["alerts"]}
    # A report taken while playing, with the amplifier off, is a real fault.
    node.send_health(amplifier_on=False, playing="7")
    h.fleet.flush()
    wait_until(
        lambda: "amplifier" in {a["kind"] for a in h.fleet.speaker("loa-01")["alerts"]},
        what="amplifier alert",
    )


def test_stale_node_goes_offline_with_alert(tmp_path: Path) -> None:
    h = Harness(tmp_path, health_interval_s=0.2, stale_factor=2.0)
    try:
        node = h.nodes["loa-03"]
        node.connect()
        node.send_health()
        wait_until(lambda: h.fleet.is_online("loa-03"))
        # No more health: after 2 x 0.2 s the node is stale.
        wait_until(lambda: not h.fleet.is_online("loa-03"), what="stale")
        h.fleet.flush()
        assert ("loa-03", "stale") in h.active_alerts()
        assert ("loa-03", False) in h.online
        node.send_health()
        wait_until(lambda: h.fleet.is_online("loa-03"), what="fresh again")
        h.fleet.flush()
        assert ("loa-03", "stale") not in h.active_alerts()
        # Never-connected clusters get an offline alert after the same grace.
        wait_until(lambda: ("loa-01", "offline") in h.active_alerts(), what="never seen alert")
    finally:
        h.close()


def test_health_written_in_batches(tmp_path: Path) -> None:
    h = Harness(tmp_path, health_batch_size=50, health_batch_interval_s=5)
    try:
        h.nodes["loa-01"].connect()
        for _ in range(120):
            h.nodes["loa-01"].send_health()
        h.broker.flush()
        wait_until(lambda: h.fleet.stats["health_received"] == 120)
        h.fleet.flush()
        with h.sessions() as s:
            assert s.scalar(select(func.count()).select_from(HealthSample)) == 120
        assert h.fleet.stats["health_written"] == 120
        assert h.fleet.stats["commits"] <= 10  # far fewer commits than messages
    finally:
        h.close()


def test_one_commit_per_message_mode(tmp_path: Path) -> None:
    h = Harness(tmp_path, health_batch_size=1)
    try:
        h.nodes["loa-01"].connect()
        for _ in range(20):
            h.nodes["loa-01"].send_health()
        h.broker.flush()
        wait_until(lambda: h.fleet.stats["health_received"] == 20)
        h.fleet.flush()
        assert h.fleet.stats["health_written"] == 20 and h.fleet.stats["commits"] >= 20
    finally:
        h.close()


def test_retention_deletes_old_samples(tmp_path: Path) -> None:
    engine = make_engine(db_url_for(tmp_path / "fleet.db"))
    create_schema(engine)
    sessions = make_session_factory(engine)
    old = datetime.now(UTC) - timedelta(days=40)
    with sessions.begin() as s:
        s.add(HealthSample(speaker_id="loa-01", ts=old, data={}))
        s.add(HealthSample(speaker_id="loa-01", ts=datetime.now(UTC), data={}))
    engine.dispose()
    h = Harness(tmp_path, health_retention_days=30)
    try:
        h.nodes["loa-01"].connect()
        h.nodes["loa-01"].send_health()
        wait_until(lambda: h.fleet.stats["health_received"] == 1)
        h.fleet.flush()
        with h.sessions() as s:
            assert (
                s.scalar(
                    select(func.count())
                    .select_from(HealthSample)
                    .where(HealthSample.ts < old + timedelta(days=1))
                )
                == 0
            )
            assert s.scalar(select(func.count()).select_from(HealthSample)) == 2
    finally:
        h.close()


def test_malformed_messages_are_counted_and_ignored(harness: Harness) -> None:
    h = harness
    h.nodes["loa-01"].connect()
    wait_until(lambda: h.fleet.is_online("loa-01"))
    bad = [
        ("loa/speakers/loa-01/health", b"\xff\xfe not json"),
        ("loa/speakers/loa-01/health", b'{"v": 1, "type": "health"}'),  # fields missing
        ("loa/speakers/loa-01/events", b"[1, 2]"),
        (
            "loa/speakers/loa-01/status",
            json.dumps(
                {"v": 1, "type": "health", "ts": 1, "uptime_s": 1, "volume": 1, "amplifier_on": True}
            ).encode(),
        ),
        ("loa/speakers/bad id/health", b"{}"),
        ("loa/speakers/loa-01/events", b'{"v": 0, "type": "event"}'),
    ]
    for topic, payload in bad:
        h.raw(topic, payload)
    h.nodes["loa-01"].send_health(volume=33)
    h.broker.flush()
    h.fleet.flush()
    metrics = h.fleet.metrics()
    assert metrics["malformed"] == len(bad)
    assert metrics["malformed_by_speaker"]["loa-01"] == 5
    snap = h.fleet.speaker("loa-01")
    assert snap["volume"] == 33 and snap["online"] is True and snap["malformed"] == 5


def test_time_request_answered_on_the_network_thread(harness: Harness) -> None:
    h = harness
    answers: list[proto.TimeSync] = []
    node = MemoryTransport(h.broker)
    node.subscribe("loa/speakers/loa-01/cmd", lambda t, p: answers.append(proto.decode_command(p)))
    node.start()
    t0 = time.time()
    node.publish("loa/speakers/loa-01/time", proto.TimeRequest(seq=5, t_node=t0).encode())
    wait_until(lambda: answers, what="time answer")
    assert answers[0].seq == 5 and answers[0].t_node == t0
    assert abs(answers[0].t_controller - time.time()) < 5
    node.stop()


def _health_rows(h: Harness) -> int:
    with h.sessions() as s:
        return s.scalar(select(func.count()).select_from(HealthSample)) or 0


def test_failed_health_commit_retried_then_the_bad_sample_dropped(tmp_path: Path) -> None:
    h = Harness(tmp_path, flaky=True, health_batch_size=10, health_batch_interval_s=60)
    try:
        h.nodes["loa-01"].connect()
        h.fleet.flush()
        # Once: the retry writes the batch, nothing lost.
        h.fleet_sessions.fail_commits = 1
        for _ in range(10):
            h.nodes["loa-01"].send_health()
        h.broker.flush()
        h.fleet.flush()
        assert h.fleet_sessions.failed == 1
        assert _health_rows(h) == 10 and h.fleet.stats["health_dropped"] == 0
        # Three times: batch and retry fail, then one by one the first sample fails and is dropped
        # (nothing written in that pass: the rest waits for the next one); later commits are not
        # poisoned by it.
        h.fleet_sessions.fail_commits = 3
        for _ in range(10):
            h.nodes["loa-01"].send_health()
        h.broker.flush()
        h.fleet.flush()
        assert h.fleet_sessions.failed == 4
        assert h.fleet.stats["health_dropped"] == 1
        assert _health_rows(h) + h.fleet.metrics()["health_pending"] == 19
        h.fleet.flush()
        assert _health_rows(h) == 19
        for _ in range(10):
            h.nodes["loa-01"].send_health()
        h.broker.flush()
        h.fleet.flush()
        assert _health_rows(h) == 29 and h.fleet.metrics()["health_pending"] == 0
    finally:
        h.close()


def test_unwritten_health_samples_are_bounded(tmp_path: Path) -> None:
    h = Harness(tmp_path, flaky=True, health_batch_size=10, health_batch_interval_s=60)
    try:
        h.fleet._max_pending = 50  # the floor is 20,000 in production; small here to stay fast
        h.nodes["loa-01"].connect()
        h.fleet.flush()
        h.fleet_sessions.fail_commits = 10**6  # the database refuses every write
        for _ in range(200):
            h.nodes["loa-01"].send_health()
        h.broker.flush()
        wait_until(lambda: h.fleet.stats["health_received"] == 200, what="200 samples received")
        h.fleet.flush()
        assert h.fleet.metrics()["health_pending"] <= 50
        assert h.fleet.stats["health_dropped"] >= 150
        # The database is back: what is pending gets written.
        h.fleet_sessions.fail_commits = 0
        pending = h.fleet.metrics()["health_pending"]
        h.nodes["loa-01"].send_health()
        h.broker.flush()
        h.fleet.flush()
        assert _health_rows(h) == pending + 1 and h.fleet.metrics()["health_pending"] == 0
    finally:
        h.close()


def test_non_finite_and_hostile_payloads_are_malformed(harness: Harness) -> None:
    h = harness
    h.nodes["loa-01"].connect()
    h.fleet.flush()
    before = h.fleet.metrics()
    bad = [
        (
            "loa/speakers/loa-01/events",
            b'{"v":1,"type":"event","state":"done","ts":1,"broadcast_id":"1","seconds_played":NaN}',
        ),
        (
            "loa/speakers/loa-01/events",
            b'{"v":1,"type":"event","state":"done","ts":1,"broadcast_id":"1","rms_dbfs":-Infinity}',
        ),
        ("loa/speakers/loa-01/health", b'{"v":1,"type":"health","ts":1,"uptime_s":Infinity,"volume":10}'),
        ("loa/speakers/loa-01/health", b"[" * 100_000 + b"]" * 100_000),  # deep nesting
    ]
    events: list[proto.Event] = []
    h.fleet.add_event_listener(lambda speaker, event: events.append(event))
    for topic, payload in bad:
        h.raw(topic, payload)
    h.nodes["loa-01"].send_health(volume=44)  # ingest goes on after them
    h.broker.flush()
    h.fleet.flush()
    metrics = h.fleet.metrics()
    assert metrics["malformed"] == before["malformed"] + len(bad)
    assert metrics["malformed_by_speaker"]["loa-01"] == before["malformed_by_speaker"].get("loa-01", 0) + len(
        bad
    )
    assert events == []  # no non-finite figure reached the broadcasts
    assert h.fleet.speaker("loa-01")["volume"] == 44


# ---------------------------------------------------------------------------- alert kinds from health


def _kinds(h: Harness, speaker: str) -> set[str]:
    return {a["kind"] for a in (h.fleet.speaker(speaker) or {}).get("alerts", [])}


def _messages(h: Harness, speaker: str) -> dict[str, str]:
    return {a["kind"]: a["message"] for a in (h.fleet.speaker(speaker) or {}).get("alerts", [])}


def test_backup_power_low_voltage_and_disk_alerts_clear_past_a_margin(harness: Harness) -> None:
    h = harness
    node = h.nodes["loa-01"]
    node.connect()
    node.send_health(on_backup=True, supply_v=11.04, disk_free_bytes=100 * 1024**2)
    h.broker.flush()
    h.fleet.flush()
    assert _kinds(h, "loa-01") == {"backup_power", "low_voltage", "disk_low"}
    messages = _messages(h, "loa-01")
    assert messages["backup_power"] == "Cụm loa đang chạy bằng nguồn dự phòng (mất điện lưới)"
    assert messages["low_voltage"] == "Điện áp nguồn thấp: 11,0 V (ngưỡng 11,5 V)"
    assert messages["disk_low"] == "Bộ nhớ cụm loa sắp đầy: chỉ còn trống 100 MB"
    assert {k for s, k in h.active_alerts() if s == "loa-01"} == {"backup_power", "low_voltage", "disk_low"}
    # Mains back; voltage and disk just above their thresholds but inside the margins: they stay, with
    # the text they were raised with (a new reading is not a new alert).
    node.send_health(on_backup=False, supply_v=11.6, disk_free_bytes=210 * 1024**2)
    h.broker.flush()
    h.fleet.flush()
    assert _kinds(h, "loa-01") == {"low_voltage", "disk_low"}
    assert _messages(h, "loa-01")["low_voltage"] == messages["low_voltage"]
    # A report without the fields (an older agent, a sensor that failed) changes nothing.
    node.send_health()
    h.broker.flush()
    h.fleet.flush()
    assert _kinds(h, "loa-01") == {"low_voltage", "disk_low"}
    node.send_health(on_backup=False, supply_v=12.6, disk_free_bytes=2 * 1024**3)
    h.broker.flush()
    h.fleet.flush()
    assert _kinds(h, "loa-01") == set() and h.active_alerts() == set()
    with h.sessions() as s:
        rows = s.scalars(select(Alert).where(Alert.speaker_id == "loa-01")).all()
    assert sorted(a.kind for a in rows) == ["backup_power", "disk_low", "low_voltage"]  # one row each


def test_thresholds_are_configurable_and_can_be_switched_off(tmp_path: Path) -> None:
    h = Harness(
        tmp_path, thresholds={"supply_v_min": 22.0, "disk_free_min_bytes": None, "output_dbfs_min": None}
    )
    try:
        node = h.nodes["loa-01"]
        node.connect()
        node.send_health(supply_v=21.5, disk_free_bytes=1, playing="3", output_dbfs=-99.0)
        h.broker.flush()
        h.fleet.flush()
        assert _kinds(h, "loa-01") == {"low_voltage"}
        assert "ngưỡng 22,0 V" in _messages(h, "loa-01")["low_voltage"]
    finally:
        h.close()


def test_no_sound_from_health_and_receipts_clears_only_when_sound_is_heard(harness: Harness) -> None:
    h = harness
    node = h.nodes["loa-01"]
    node.connect()
    # Quiet output while idle is not a fault.
    node.send_health(playing=None, output_dbfs=-90.0)
    h.broker.flush()
    h.fleet.flush()
    assert _kinds(h, "loa-01") == set()
    node.send_health(playing="7", output_dbfs=-80.0)
    h.broker.flush()
    h.fleet.flush()
    assert _kinds(h, "loa-01") == {"no_sound"}
    assert _messages(h, "loa-01")["no_sound"] == "Cụm loa không phát ra tiếng khi đang phát bản tin"
    # Playback ended: nothing was fixed, the alert stays.
    node.send_health(playing=None, output_dbfs=-90.0)
    h.broker.flush()
    h.fleet.flush()
    assert _kinds(h, "loa-01") == {"no_sound"}
    # A receipt with a normal level: sound was heard.
    node._event("done", broadcast_id="8", seconds_played=3.0, rms_dbfs=-20.0)
    h.broker.flush()
    h.fleet.flush()
    assert _kinds(h, "loa-01") == set()
    # A silent receipt raises it; a report while playing with sound clears it.
    node._event("done", broadcast_id="9", seconds_played=3.0, rms_dbfs=-95.0)
    h.broker.flush()
    h.fleet.flush()
    assert _kinds(h, "loa-01") == {"no_sound"}
    node.send_health(playing="10", output_dbfs=-18.0)
    h.broker.flush()
    h.fleet.flush()
    assert _kinds(h, "loa-01") == set()


def test_no_sound_is_not_raised_when_the_volume_is_zero(harness: Harness) -> None:
    h = harness
    node = h.nodes["loa-02"]
    node.connect()
    node.send_health(volume=0, playing="4", output_dbfs=-120.0)
    node._event("done", broadcast_id="4", seconds_played=3.0, rms_dbfs=-120.0)
    h.broker.flush()
    h.fleet.flush()
    assert _kinds(h, "loa-02") == set()


def test_health_alerts_hold_while_the_cluster_is_offline(harness: Harness) -> None:
    """A battery that runs flat takes the cluster offline: that must not 'resolve' the backup-power
    alert, nor may the old report raise anything again when the cluster is back."""
    h = harness
    changes: list[object] = []
    h.fleet.add_alert_listener(changes.append)
    node = h.nodes["loa-03"]
    node.connect()
    node.send_health(on_backup=True, playing="5", amplifier_on=False)
    h.broker.flush()
    h.fleet.flush()
    assert _kinds(h, "loa-03") == {"backup_power", "amplifier"}
    node.disconnect()
    h.broker.flush()
    h.fleet.flush()
    assert _kinds(h, "loa-03") == {"backup_power", "amplifier", "offline"}
    node.reconnect()
    h.broker.flush()
    h.fleet.flush()
    assert _kinds(h, "loa-03") == {"backup_power", "amplifier"}
    node.send_health(on_backup=False, playing=None, amplifier_on=True)
    h.broker.flush()
    h.fleet.flush()
    assert _kinds(h, "loa-03") == set()
    summary = sorted((c.kind, c.state) for c in changes)  # type: ignore[attr-defined]
    assert summary == [
        ("amplifier", "raised"),
        ("amplifier", "resolved"),
        ("backup_power", "raised"),
        ("backup_power", "resolved"),
        ("offline", "raised"),
        ("offline", "resolved"),
    ]


def test_alert_listener_gets_committed_changes_with_names(harness: Harness) -> None:
    h = harness
    seen: list[tuple[object, bool]] = []

    def listener(change: Any) -> None:
        with h.sessions() as s:  # the row is committed when the listener is told
            row = s.get(Alert, change.alert_id)
            seen.append(
                (change, row is not None and (row.cleared_at is not None) == (change.state == "resolved"))
            )

    def broken(change: Any) -> None:
        raise RuntimeError("a listener bug")

    h.fleet.add_alert_listener(broken)  # must not stop the fleet or the next listener
    h.fleet.add_alert_listener(listener)
    node = h.nodes["loa-01"]
    node.connect()
    node.disconnect()
    h.broker.flush()
    h.fleet.flush()
    node.reconnect()
    h.broker.flush()
    h.fleet.flush()
    assert [ok for _, ok in seen] == [True, True]
    raised, resolved = (c for c, _ in seen)
    assert (raised.state, resolved.state) == ("raised", "resolved")  # type: ignore[attr-defined]
    for change in (raised, resolved):
        assert change.speaker == "loa-01" and change.kind == "offline"  # type: ignore[attr-defined]
        assert change.speaker_name == "Loa 1" and change.zone == "thon-1"  # type: ignore[attr-defined]
        assert change.zone_name == "Thôn Đông" and change.message == "Cụm loa mất kết nối"  # type: ignore[attr-defined]
    assert raised.alert_id == resolved.alert_id  # type: ignore[attr-defined]
    assert resolved.raised_at == raised.raised_at and resolved.cleared_at >= raised.raised_at  # type: ignore[attr-defined]
    assert h.fleet.is_online("loa-01")

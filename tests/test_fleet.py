"""Fleet: live state, alerts, batched health ingest, malformed messages, time answers."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from broadcaster.db import create_schema, make_engine, make_session_factory
from broadcaster.fleet import Fleet, FleetConfig
from broadcaster.models import Alert, HealthSample, LogEntry, Speaker, Zone
from broadcaster.transport.memory import MemoryBroker, MemoryTransport
from speakers import protocol as proto
from tests.fakes import FakeNode, FlakyCommitSessions
from tests.fixtures_controller import wait_until


class Harness:
    def __init__(self, tmp_path: Path, flaky: bool = False, **config: object) -> None:
        self.engine = make_engine(f"sqlite:///{tmp_path / 'fleet.db'}")
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
    engine = make_engine(f"sqlite:///{tmp_path / 'fleet.db'}")
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

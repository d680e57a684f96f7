"""BroadcastManager on the in-memory transport with fake nodes and a real SQLite file."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest

from broadcaster.broadcasts import BroadcastError
from broadcaster.domain import Announcement, Tier
from tests.fakes import payloads
from tests.fixtures_controller import UnitController, wait_until

# On SQLite and on PostgreSQL (tests/fixtures_postgres.py).
pytestmark = pytest.mark.usefixtures("database")


def _overlaps(timeline: list[dict]) -> list[tuple[dict, dict]]:
    items = sorted(timeline, key=lambda e: e["start"])
    return [(a, b) for a, b in zip(items, items[1:], strict=False) if b["start"] < a["end"] - 1e-3]


def test_broadcast_to_all_done_with_zone_publishes(unit_controller: UnitController) -> None:
    uc = unit_controller
    gate = threading.Event()
    uc.speech.gate = gate
    bid = uc.manager.submit(Announcement(text="UBND xã thông báo", title="Thông báo"))
    # submit returned while the render is still held: nothing slow ran in the caller's thread.
    assert uc.manager.get(bid)["state"] == "rendering"
    gate.set()
    b = uc.wait_state(bid, "done")
    assert {d["speaker"] for d in b["deliveries"]} == set(uc.nodes)
    assert all(d["state"] == "done" and d["seconds_played"] > 0.5 for d in b["deliveries"])
    assert b["engine"] == "fake" and b["normalized_text"] == "ubnd xã thông báo"
    # One play per zone topic (whole zones targeted), none per speaker.
    plays = [(t, p) for t, p, *_ in uc.transport.sent if t.endswith("/cmd")]
    assert sorted(t for t, _ in plays) == [f"loa/zones/thon-{i}/cmd" for i in (1, 2, 3)]
    # Every node started at the commanded instant: one synchronized start.
    starts = [n.timeline[0]["start"] for n in uc.nodes.values()]
    assert max(starts) - min(starts) < 0.2
    # Audio chunks went out once per chunk although nine nodes asked for them.
    chunk_topics = [t for t, *_ in uc.transport.sent if "/audio/" in t]
    assert len(chunk_topics) == len(set(chunk_topics)) == 3  # 150 kB / 64 KiB
    assert uc.manager.stats["chunk_requests_deduped"] >= 1 or uc.manager.stats["chunks_published"] == 3


def test_zone_and_speaker_targets(unit_controller: UnitController) -> None:
    uc = unit_controller
    bid = uc.manager.submit(Announcement(text="Thôn Đoài họp", targets=("thon-2", "loa-01")))
    b = uc.wait_state(bid, "done")
    assert sorted(d["speaker"] for d in b["deliveries"]) == ["loa-01", "loa-04", "loa-05", "loa-06"]
    assert uc.nodes["loa-02"].timeline == [] and uc.nodes["loa-09"].timeline == []
    topics = [t for t, *_ in uc.transport.sent if t.endswith("/cmd")]
    assert "loa/zones/thon-2/cmd" in topics and "loa/speakers/loa-01/cmd" in topics
    assert "loa/zones/thon-1/cmd" not in topics


@pytest.mark.parametrize(
    ("ann", "message"),
    [
        (Announcement(text="x", targets=("thon-9",)), "thon-9"),
        (Announcement(text="   "), "trống"),
        (Announcement(text="x", repeat=0), "Số lần"),
        (Announcement(text="x", tier="urgent"), "Mức ưu tiên"),  # type: ignore[arg-type]
        (Announcement(text="x", at=datetime(2030, 1, 1)), "múi giờ"),
    ],
)
def test_bad_requests_are_refused_clearly(
    unit_controller: UnitController, ann: Announcement, message: str
) -> None:
    with pytest.raises(BroadcastError, match=message):
        unit_controller.manager.submit(ann)
    assert unit_controller.manager.list() == []  # nothing half-written


def test_two_normal_items_never_overlap(unit_controller: UnitController) -> None:
    uc = unit_controller
    uc.speech.duration_s = 1.0
    a = uc.manager.submit(Announcement(text="Bản tin một", targets=("thon-1",)))
    b = uc.manager.submit(Announcement(text="Bản tin hai", targets=("thon-1", "thon-2")))
    uc.wait_state(a, "done")
    uc.wait_state(b, "done")
    for sid in ("loa-01", "loa-02", "loa-03"):
        tl = uc.nodes[sid].timeline
        assert [e["broadcast_id"] for e in tl] == [str(a), str(b)]
        assert not _overlaps(tl)
    # b started together on all six clusters, after a ended on thôn 1.
    starts = [uc.nodes[s].timeline[-1]["start"] for s in ("loa-01", "loa-04", "loa-06")]
    assert max(starts) - min(starts) < 0.2
    assert any(f"xếp hàng sau #{a}" in m for m in uc.log(b))


def test_priority_goes_before_queued_normal(unit_controller: UnitController) -> None:
    uc = unit_controller
    uc.speech.durations = {"Dài": 1.5}
    first = uc.manager.submit(Announcement(text="Dài", targets=("loa-01",)))
    wait_until(lambda: uc.nodes["loa-01"].timeline or uc.nodes["loa-01"]._current, what="first playing")
    normal = uc.manager.submit(Announcement(text="Thường", targets=("loa-01",)))
    prio = uc.manager.submit(Announcement(text="Ưu tiên", targets=("loa-01",), tier=Tier.PRIORITY))
    for bid in (first, normal, prio):
        uc.wait_state(bid, "done")
    order = [e["broadcast_id"] for e in uc.nodes["loa-01"].timeline]
    assert order == [str(first), str(prio), str(normal)]
    assert not _overlaps(uc.nodes["loa-01"].timeline)


def test_emergency_preempts_and_interrupted_item_is_requeued(unit_controller: UnitController) -> None:
    uc = unit_controller
    uc.speech.durations = {"Thông báo dài": 3.0, "Khẩn cấp: lũ": 0.5}
    normal = uc.manager.submit(Announcement(text="Thông báo dài", targets=("thon-1",)))
    wait_until(
        lambda: all(uc.nodes[s]._current for s in ("loa-01", "loa-02", "loa-03")), what="normal playing"
    )
    emergency = uc.manager.submit(Announcement(text="Khẩn cấp: lũ", targets=("thon-1",), tier=Tier.EMERGENCY))
    # While it waits to be aired again, the interrupted item is not shown as playing. (Its first
    # "sending", before the nodes' receipts said it plays, has no reason: wait for the interruption.)
    why = f"Bị ngắt bởi bản tin khẩn cấp #{emergency}"
    wait_until(
        lambda: (
            (b := uc.manager.get(normal)) is not None
            and b["state"] == "sending"
            and why in (b["reason"] or "")
        ),
        what="the interrupted item waiting, not shown as playing",
    )
    e = uc.wait_state(emergency, "done")
    n = uc.wait_state(normal, "done", timeout=20)
    assert all(d["state"] == "done" for d in e["deliveries"])
    for sid in ("loa-01", "loa-02", "loa-03"):
        tl = uc.nodes[sid].timeline
        assert [(x["broadcast_id"], x["outcome"]) for x in tl] == [
            (str(normal), "preempted"),
            (str(emergency), "done"),
            (f"{normal}-r1", "done"),  # re-aired under a fresh wire id (nodes dedupe ids)
        ]
        assert tl[0]["end"] <= tl[1]["start"] + 0.05  # interrupted when the emergency began
        assert not _overlaps(tl)
    assert all(d["state"] == "done" and d["seconds_played"] >= 2.9 for d in n["deliveries"])
    # Every airing stays visible, the cut first one included, with why it ended.
    assert n["interruptions"].startswith("bị ngắt 3 lần (loa-01, loa-02, loa-03)")
    assert "bị ngắt 3 lần" in n["reason"]
    by = {(a["speaker"], a["attempt"]): a for a in n["airings"]}
    for sid in ("loa-01", "loa-02", "loa-03"):
        cut, again = by[(sid, 0)], by[(sid, 1)]
        assert (
            cut["outcome"] == "preempted" and f"#{emergency}" in cut["reason"] and cut["seconds_played"] > 0
        )
        assert again["outcome"] == "done" and again["seconds_played"] >= 2.9
    # The minutes count both airings (before, the cut first airing was missing).
    from datetime import date

    from broadcaster.reports import log_csv, log_rows, minutes_per_day

    with uc.sessions() as session:
        minutes = minutes_per_day(session, date.today(), date.today(), tz="UTC")
        row = next(r for r in minutes if r["speaker"] == "loa-01")
        assert (
            row["seconds"] >= by[("loa-01", 0)]["seconds_played"] + by[("loa-01", 1)]["seconds_played"] - 0.01
        )
        from broadcaster.reports import broadcast_log

        rows = [r for r in log_rows(broadcast_log(session, tz="UTC")) if r["broadcast_id"] == normal]
    assert [(r["speaker"], r["airing"], r["delivery_state"]) for r in rows if r["speaker"] == "loa-01"] == [
        ("loa-01", 1, "Bị ngắt bởi tin ưu tiên hơn"),
        ("loa-01", 2, "Đã phát xong"),
    ]
    assert "Bị ngắt bởi tin ưu tiên hơn" in log_csv(broadcast_log_for(uc, normal))
    log = uc.log(normal)
    assert any(f"bị ngắt bởi bản tin khẩn cấp #{emergency}" in m for m in log)
    assert any("xếp hàng phát lại" in m for m in log)


def broadcast_log_for(uc: UnitController, broadcast_id: int) -> list[dict]:
    from broadcaster.reports import broadcast_log

    with uc.sessions() as session:
        return [b for b in broadcast_log(session, tz="UTC") if b["id"] == broadcast_id]


def test_emergency_preemption_without_requeue_marks_interrupted(tmp_path) -> None:  # type: ignore[no-untyped-def]
    uc = UnitController(tmp_path, requeue_preempted=False)
    try:
        uc.speech.durations = {"Dài": 3.0}
        normal = uc.manager.submit(Announcement(text="Dài", targets=("loa-01",)))
        wait_until(lambda: uc.nodes["loa-01"]._current, what="normal playing")
        emergency = uc.manager.submit(Announcement(text="Khẩn", targets=("loa-01",), tier=Tier.EMERGENCY))
        n = uc.wait_state(normal, "interrupted")
        assert n["deliveries"][0]["state"] == "preempted"
        assert f"#{emergency}" in n["deliveries"][0]["reason"]
        uc.wait_state(emergency, "done")
    finally:
        uc.close()


def test_offline_cluster_catches_up_emergency(unit_controller: UnitController) -> None:
    uc = unit_controller
    uc.nodes["loa-05"].disconnect()
    wait_until(lambda: "loa-05" not in uc.fleet.online_ids(), what="loa-05 offline")
    bid = uc.manager.submit(Announcement(text="Khẩn cấp", tier=Tier.EMERGENCY))
    b = wait_until(
        lambda: (x := uc.manager.get(bid)) and sum(d["state"] == "done" for d in x["deliveries"]) == 8 and x,
        what="8 clusters done",
    )
    pending = [d for d in b["deliveries"] if d["speaker"] == "loa-05"][0]
    assert pending["state"] == "pending" and b["state"] in ("sending", "playing")
    uc.nodes["loa-05"].reconnect()
    uc.wait_state(bid, "done")
    assert [e["broadcast_id"] for e in uc.nodes["loa-05"].timeline] == [str(bid)]
    assert any("chờ loa-05 kết nối lại" in m for m in uc.log(bid))


def test_offline_past_validity_is_missed(unit_controller: UnitController) -> None:
    uc = unit_controller
    uc.nodes["loa-09"].disconnect()
    wait_until(lambda: "loa-09" not in uc.fleet.online_ids())
    until = datetime.now(UTC) + timedelta(seconds=2)
    bid = uc.manager.submit(Announcement(text="Họp", targets=("thon-3",)), valid_until=until)
    b = uc.wait_state(bid, "partial")
    states = {d["speaker"]: d["state"] for d in b["deliveries"]}
    assert states == {"loa-07": "done", "loa-08": "done", "loa-09": "missed"}


def test_quiet_hours_hold_normal_but_not_emergency(unit_controller: UnitController) -> None:
    from zoneinfo import ZoneInfo

    from broadcaster.models import Zone

    uc = unit_controller
    local = datetime.now(ZoneInfo("Asia/Ho_Chi_Minh"))
    start = (local - timedelta(minutes=5)).strftime("%H:%M")
    end = (local + timedelta(minutes=30)).strftime("%H:%M")
    with uc.sessions.begin() as s:
        z = s.get(Zone, "thon-2")
        z.quiet_start, z.quiet_end = start, end
    uc.manager.registry_changed()
    normal = uc.manager.submit(Announcement(text="Thông báo", targets=("thon-1", "thon-2")))
    b = wait_until(
        lambda: (
            (x := uc.manager.get(normal)) and sum(d["state"] == "done" for d in x["deliveries"]) == 3 and x
        ),
        what="thôn 1 done",
    )
    held = [d for d in b["deliveries"] if d["speaker"] in ("loa-04", "loa-05", "loa-06")]
    assert all(d["state"] == "pending" and "giờ yên lặng" in d["reason"] for d in held)
    # Validity was extended past the end of the quiet hours.
    assert datetime.fromisoformat(b["valid_until"]) > datetime.now(UTC) + timedelta(minutes=30)
    emergency = uc.manager.submit(Announcement(text="Cháy", targets=("thon-2",), tier=Tier.EMERGENCY))
    uc.wait_state(emergency, "done")
    assert all(
        uc.nodes[s].timeline and uc.nodes[s].timeline[0]["broadcast_id"] == str(emergency)
        for s in ("loa-04", "loa-05", "loa-06")
    )
    assert any("giờ yên lặng thon-2" in m for m in uc.log(normal))


def test_scheduled_broadcast_renders_ahead_and_airs_once(unit_controller: UnitController) -> None:
    uc = unit_controller
    at = datetime.now(UTC) + timedelta(hours=1)
    bid = uc.manager.submit(Announcement(text="Bản tin sáng", at=at, targets=("thon-1",)))
    # Rendered ahead, not aired: the dispatcher keeps it until its time.
    b = wait_until(lambda: (x := uc.manager.get(bid)) and x["audio_key"] and x, what="render ahead")
    assert b["state"] == "scheduled" and uc.speech.store.pinned.get(b["audio_key"]) == {f"broadcast:{bid}"}
    assert uc.manager.active_ids() == [] and uc.nodes["loa-01"].timeline == []
    renders = len(uc.speech.renders)
    uc.manager.air(bid)
    uc.manager.air(bid)  # the scheduler firing twice must not air twice
    uc.wait_state(bid, "done")
    uc.manager.air(bid)
    assert len(uc.speech.renders) == renders  # no synthesis at air time
    assert [e["broadcast_id"] for e in uc.nodes["loa-01"].timeline] == [str(bid)]
    assert uc.speech.store.pinned.get(b["audio_key"]) == set()


def test_scheduled_without_scheduler_airs_at_its_time(unit_controller: UnitController) -> None:
    uc = unit_controller
    at = datetime.now(UTC) + timedelta(seconds=1.5)
    bid = uc.manager.submit(Announcement(text="Hẹn giờ", at=at, targets=("loa-02",)))
    assert uc.manager.get(bid)["state"] == "scheduled"
    b = uc.wait_state(bid, "done")
    assert datetime.fromisoformat(b["start_at"]) >= at


def test_duplicate_schedule_fire_returns_existing(unit_controller: UnitController) -> None:
    from broadcaster.models import Schedule

    uc = unit_controller
    with uc.sessions.begin() as s:
        s.add(Schedule(id=7, name="Sáng", text="Bản tin sáng", kind="daily", time="06:00"))
    fire = datetime(2024, 3, 15, 6, 0, tzinfo=UTC)
    first = uc.manager.submit(
        Announcement(text="Bản tin sáng", targets=("loa-03",)), schedule_id=7, fire_time=fire
    )
    again = uc.manager.submit(
        Announcement(text="Bản tin sáng", targets=("loa-03",)), schedule_id=7, fire_time=fire
    )
    assert first == again
    uc.wait_state(first, "done")
    assert len(uc.manager.list()) == 1
    assert len(uc.nodes["loa-03"].timeline) == 1


def test_approval_flow(unit_controller: UnitController) -> None:
    uc = unit_controller
    bid = uc.manager.submit(
        Announcement(text="Chờ duyệt", targets=("loa-01",), author="bien-tap"), approved=False
    )
    b = wait_until(lambda: (x := uc.manager.get(bid)) and x["audio_key"] and x, what="rendered for preview")
    assert b["state"] == "pending_approval" and b["approval"] == "pending"
    assert uc.nodes["loa-01"].timeline == []
    uc.manager.approve(b["announcement_id"], by="chu-tich")
    uc.wait_state(bid, "done")
    rejected = uc.manager.submit(Announcement(text="Bị từ chối", targets=("loa-01",)), approved=False)
    uc.manager.reject(uc.manager.get(rejected)["announcement_id"], by="chu-tich", reason="sai nội dung")
    r = uc.manager.get(rejected)
    assert r["state"] == "cancelled" and "sai nội dung" in r["reason"]
    with pytest.raises(BroadcastError):
        uc.manager.approve(99999, by="x")


def test_cancel_stops_playing_and_stop_all(unit_controller: UnitController) -> None:
    uc = unit_controller
    uc.speech.durations = {"Dài": 5.0, "Dài nữa": 5.0}
    bid = uc.manager.submit(Announcement(text="Dài", targets=("thon-1",)))
    wait_until(lambda: all(uc.nodes[s]._current for s in ("loa-01", "loa-02", "loa-03")), what="playing")
    assert uc.manager.cancel(bid, by="can-bo") is True
    b = wait_until(
        lambda: (x := uc.manager.get(bid)) and all(d["state"] == "stopped" for d in x["deliveries"]) and x,
        what="stopped receipts",
    )
    assert b["state"] == "cancelled"
    assert all(n.timeline[0]["seconds"] < 4.0 for n in (uc.nodes["loa-01"], uc.nodes["loa-02"]))
    assert uc.manager.cancel(bid) is False
    other = uc.manager.submit(Announcement(text="Dài nữa"))
    wait_until(lambda: uc.nodes["loa-09"]._current, what="playing everywhere")
    uc.manager.stop_all(by="can-bo", reason="thử")
    o = uc.wait_state(other, "cancelled")
    wait_until(lambda: all(n._current is None for n in uc.nodes.values()), what="silence")
    stops = payloads(uc.transport, "/cmd")
    assert sum(1 for p in stops if p["type"] == "stop" and p["broadcast_id"] is None) == 3  # one per zone
    assert "Dừng tất cả" in o["reason"]


def test_render_failure_fails_with_reason(unit_controller: UnitController) -> None:
    uc = unit_controller
    uc.speech.fail = "engine down"
    bid = uc.manager.submit(Announcement(text="Lỗi", targets=("loa-01",)))
    b = uc.wait_state(bid, "failed")
    assert "engine down" in b["reason"] and b["deliveries"][0]["state"] == "failed"


def test_silent_node_gets_no_receipt_failure_never_done(tmp_path) -> None:  # type: ignore[no-untyped-def]
    uc = UnitController(tmp_path, receipt_grace_s=0.5)
    try:
        uc.nodes["loa-01"].mute = True
        bid = uc.manager.submit(Announcement(text="Im lặng", targets=("thon-1",)))
        b = uc.wait_state(bid, "partial")
        states = {d["speaker"]: (d["state"], d["reason"]) for d in b["deliveries"]}
        assert states["loa-01"][0] == "failed" and "xác nhận" in states["loa-01"][1]
        assert states["loa-02"][0] == states["loa-03"][0] == "done"
    finally:
        uc.close()


def test_list(unit_controller: UnitController) -> None:
    uc = unit_controller
    bid = uc.manager.submit(Announcement(text="Theo dõi", targets=("loa-04",), title="Tiêu đề"))
    uc.wait_state(bid, "done")
    listed = uc.manager.list(limit=10)
    assert listed[0]["id"] == bid and listed[0]["title"] == "Tiêu đề"
    assert listed[0]["delivery_counts"] == {"done": 1}
    assert uc.manager.list(state="failed") == []
    snap = uc.fleet.speaker("loa-04")
    assert snap is not None and snap["online"] is True


def test_emergency_follows_a_running_emergency(unit_controller: UnitController) -> None:
    uc = unit_controller
    uc.speech.durations = {"Khẩn một": 1.0, "Khẩn hai": 0.5}
    first = uc.manager.submit(Announcement(text="Khẩn một", targets=("loa-01",), tier=Tier.EMERGENCY))
    wait_until(lambda: uc.nodes["loa-01"]._current, what="first emergency playing")
    second = uc.manager.submit(Announcement(text="Khẩn hai", targets=("loa-01",), tier=Tier.EMERGENCY))
    uc.wait_state(first, "done")
    uc.wait_state(second, "done")
    tl = uc.nodes["loa-01"].timeline
    assert [(e["broadcast_id"], e["outcome"]) for e in tl] == [(str(first), "done"), (str(second), "done")]
    assert not _overlaps(tl)


def test_sent_but_not_started_item_is_postponed_by_emergency(tmp_path) -> None:  # type: ignore[no-untyped-def]
    uc = UnitController(tmp_path, lead_s=3.0)
    try:
        normal = uc.manager.submit(Announcement(text="Thường", targets=("thon-1",)))
        wait_until(
            lambda: all(uc.nodes[s].states(normal)[-1:] == ["scheduled"] for s in ("loa-01", "loa-02")),
            what="normal scheduled on the nodes",
        )
        emergency = uc.manager.submit(Announcement(text="Khẩn", targets=("thon-1",), tier=Tier.EMERGENCY))
        uc.wait_state(emergency, "done")
        n = uc.wait_state(normal, "done", timeout=20)
        for sid in ("loa-01", "loa-02", "loa-03"):
            assert [(e["broadcast_id"], e["outcome"]) for e in uc.nodes[sid].timeline] == [
                (str(emergency), "done"),
                (f"{normal}-r1", "done"),
            ]
        assert all(d["state"] == "done" for d in n["deliveries"])
        assert any(f"vì bản tin khẩn cấp #{emergency}" in m for m in uc.log(normal))
    finally:
        uc.close()


def test_uploaded_recording_and_lexicon(unit_controller: UnitController) -> None:
    from broadcaster.models import LexiconEntry

    uc = unit_controller
    with uc.sessions.begin() as s:
        s.add(LexiconEntry(term="HTX", reading="hợp tác xã"))
    bid = uc.manager.submit(Announcement(text="HTX thông báo", targets=("loa-01",)))
    uc.wait_state(bid, "done")
    assert uc.speech.renders[-1]["lexicon"] == {"HTX": "hợp tác xã"}  # the DB lexicon reaches the render
    # An uploaded recording airs as is: no synthesis.
    key = "ab" * 32
    uc.speech.store.put(key, b"\x01" * 70_000, {"duration_s": 0.4, "engine": "recording"})
    renders = len(uc.speech.renders)
    rec = uc.manager.submit(Announcement(text="", audio_key=key, targets=("loa-02",), title="Ghi âm"))
    b = uc.wait_state(rec, "done")
    assert len(uc.speech.renders) == renders
    assert b["engine"] == "recording" and b["duration_s"] == 0.4
    with pytest.raises(BroadcastError, match="Bản ghi âm đã tải lên không còn"):
        uc.manager.submit(Announcement(text="", audio_key="cd" * 32, targets=("loa-02",)))


def test_set_volume_zone_and_speaker_publishes(unit_controller: UnitController) -> None:
    from broadcaster.models import Speaker

    uc = unit_controller
    before = len(uc.transport.sent)
    reached = uc.manager.set_volume(["thon-2", "loa-01"], 35, by="can-bo")
    assert reached == ["loa-01", "loa-04", "loa-05", "loa-06"]
    sent = [(t, json.loads(p), q) for t, p, q, *_ in uc.transport.sent[before:]]
    # One command on the whole zone's topic, one for the single cluster, QoS 1, nothing else.
    assert sorted(t for t, _, _ in sent) == ["loa/speakers/loa-01/cmd", "loa/zones/thon-2/cmd"]
    assert all(m["type"] == "volume" and m["volume"] == 35 and q == 1 for _, m, q in sent)
    assert any("Đặt âm lượng 35% cho 4 cụm loa" in m and "can-bo" in m for m in uc.log())

    # A zone with a disabled member is addressed cluster by cluster, the disabled one left out.
    with uc.sessions.begin() as s:
        s.get(Speaker, "loa-08").enabled = False
    before = len(uc.transport.sent)
    assert uc.manager.set_volume(["thon-3"], 60) == ["loa-07", "loa-09"]
    assert sorted(t for t, *_ in uc.transport.sent[before:]) == [
        "loa/speakers/loa-07/cmd",
        "loa/speakers/loa-09/cmd",
    ]


@pytest.mark.parametrize("volume", [-1, 101, 50.5, True, "40"])
def test_set_volume_rejects_bad_volume(unit_controller: UnitController, volume: object) -> None:
    uc = unit_controller
    before = len(uc.transport.sent)
    with pytest.raises(BroadcastError, match="Âm lượng phải là số nguyên từ 0 đến 100"):
        uc.manager.set_volume(["all"], volume)  # type: ignore[arg-type]
    assert len(uc.transport.sent) == before


def test_set_volume_rejects_bad_targets(unit_controller: UnitController) -> None:
    uc = unit_controller
    before = len(uc.transport.sent)
    with pytest.raises(BroadcastError, match="loa-99"):
        uc.manager.set_volume(["loa-99"], 50)
    with pytest.raises(BroadcastError, match="nơi đặt âm lượng"):
        uc.manager.set_volume([], 50)
    with pytest.raises(BroadcastError, match="nơi đặt âm lượng"):
        uc.manager.set_volume("all", 50)  # type: ignore[arg-type]
    assert len(uc.transport.sent) == before


# ----------------------------------------------------------------------------- failures in a batch


@pytest.fixture
def flaky_controller(tmp_path) -> UnitController:  # type: ignore[no-untyped-def]
    harness = UnitController(tmp_path, flaky=True)
    yield harness
    harness.close()


def test_failed_publish_in_a_dispatch_loses_nothing(flaky_controller: UnitController) -> None:
    """The play publish fails once (TransportError) in the batch that also records the render: the
    render is kept, the in-memory state is re-read, and the next pass sends the item."""
    uc = flaky_controller
    uc.transport.fail_publishes = 1
    bid = uc.manager.submit(Announcement(text="Thông báo lỗi gửi", targets=("thon-1",)))
    b = uc.wait_state(bid, "done", "failed", "partial", "cancelled")
    assert uc.transport.failed == 1
    assert b["state"] == "done"
    assert b["engine"] == "fake" and b["audio_key"] and b["duration_s"] == pytest.approx(0.6)
    assert any("âm thanh 0.6 giây" in m for m in uc.log(bid))  # the "rendered" decision survived
    assert all(d["state"] == "done" for d in b["deliveries"])
    assert uc.manager.stats["ticks_failed"] == 1


def test_failed_commit_answers_the_caller_and_keeps_state(flaky_controller: UnitController) -> None:
    from sqlalchemy.exc import OperationalError

    uc = flaky_controller
    at = datetime.now(UTC) + timedelta(seconds=120)
    bid = uc.manager.submit(Announcement(text="Hẹn giờ", targets=("loa-02",), at=at))
    wait_until(lambda: uc.manager.get(bid)["audio_key"], what="rendered ahead")
    uc.manager_sessions.fail_commits = 1
    # The caller gets the database error (not a 30 s timeout), and nothing of the cancel is kept.
    with pytest.raises(OperationalError, match="database is locked"):
        uc.manager.cancel(bid, by="can-bo")
    assert uc.manager_sessions.failed == 1
    assert uc.manager.get(bid)["state"] == "scheduled"
    assert uc.manager.cancel(bid, by="can-bo") is True
    assert uc.manager.get(bid)["state"] == "cancelled"
    assert uc.manager.stats["batches_failed"] == 1


def test_failed_commit_of_a_receipt_is_retried(flaky_controller: UnitController) -> None:
    """The batch holding the node's "done" receipt fails to commit: it is applied again in a fresh
    transaction, so the delivery ends done (not "no receipt")."""
    uc = flaky_controller
    uc.speech.durations["Bản tin một giây"] = 1.0
    bid = uc.manager.submit(Announcement(text="Bản tin một giây", targets=("loa-03",)))
    wait_until(
        lambda: (b := uc.manager.get(bid)) and b["deliveries"][0]["state"] == "playing",
        what="delivery playing",
    )
    uc.manager_sessions.fail_commits = 1
    b = uc.wait_state(bid, "done", "failed", "partial")
    assert uc.manager_sessions.failed == 1
    assert b["state"] == "done"
    assert b["deliveries"][0]["state"] == "done" and b["deliveries"][0]["seconds_played"] > 0.9
    assert uc.manager.stats["items_retried"] >= 1 and uc.manager.stats["items_dropped"] == 0


def test_node_start_times_are_clamped(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A node whose clock is a day ahead (and whose "done" is lost) does not keep its cluster busy
    for ever; one a day behind is not timed out at once. Both starts are stored clamped."""
    from broadcaster.broadcasts.ledger import NO_RECEIPT

    uc = UnitController(tmp_path, receipt_grace_s=1.0)
    try:
        ahead, behind = uc.nodes["loa-01"], uc.nodes["loa-02"]
        ahead.start_skew_s, ahead.drop_states = 86_400.0, {"done"}
        behind.start_skew_s = -86_400.0
        sent = datetime.now(UTC)
        first = uc.manager.submit(Announcement(text="Giờ lệch", targets=("loa-01", "loa-02")))
        b = uc.wait_state(first, "done", "partial", "failed")
        by = {d["speaker"]: d for d in b["deliveries"]}
        assert b["state"] == "partial"
        assert by["loa-01"]["state"] == "failed" and by["loa-01"]["reason"] == NO_RECEIPT
        assert by["loa-02"]["state"] == "done"
        now = datetime.now(UTC)
        for d in by.values():
            started = datetime.fromisoformat(d["started_at"])
            assert sent - timedelta(seconds=2) <= started <= now + timedelta(seconds=1)
        # The cluster is free again: the next item airs there.
        second = uc.manager.submit(Announcement(text="Bản tin sau", targets=("loa-01",)))
        wait_until(lambda: "playing" in ahead.states(second), what="second item playing on loa-01")
    finally:
        uc.close()


def test_a_render_finishing_after_stop_puts_nothing_on_air(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """stop() must not wait for a slow engine, and a render that finishes during or after the stop
    must not send a play command (before, the dispatcher was joined first and the render's result
    was then processed inline, publishing a play after stop)."""
    uc = UnitController(tmp_path)
    try:
        gate = threading.Event()
        uc.speech.gate = gate
        bid = uc.manager.submit(Announcement(text="Tin dừng giữa chừng", targets=("thon-1",)))
        wait_until(lambda: bid in uc.manager.renderer.rendering, what="render started")
        uc.manager.stop()  # returns although the engine still hangs
        plays_before = [t for t, *_ in uc.transport.sent if t.endswith("/cmd")]
        gate.set()
        wait_until(lambda: len(uc.speech.renders) == 1, what="render finished")
        wait_until(
            lambda: not any(t.name.startswith("render") and t.is_alive() for t in threading.enumerate()),
            what="render workers gone",
        )
        assert [t for t, *_ in uc.transport.sent if t.endswith("/cmd")] == plays_before == []
        assert uc.manager.get(bid)["state"] == "rendering"  # picked up again at the next start
        with pytest.raises(BroadcastError, match="đang dừng"):
            uc.manager.cancel(bid)
    finally:
        uc.close()

"""Three levels on one machine with real parts: a province, a district and two communes, each a
controller with its own managed mosquitto, espeak-ng, SQLite and two simulated clusters (the real
agent code), each serving its web app on loopback; the lower levels reach the upper ones over HTTP
through the signed link. One chain per module (starting four controllers takes a few seconds)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures_controller import wait_until
from tests.fixtures_federation import RealLevel

pytestmark = pytest.mark.integration

# A priority bulletin from the province stays valid this long: shorter than the cut below, so a
# bulletin sent during the cut expires before the communes can get it.
PROVINCE_VALID_S = 4.0
# How long the district refuses its communes: longer than the validity above. A minute would show
# the same (the reports queue, the link retries with backoff capped at retry_max_s).
CUT_S = 6.0


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, RealLevel]]:
    root = tmp_path_factory.mktemp("chain")
    levels: dict[str, RealLevel] = {}
    try:
        levels["tinh"] = RealLevel(root, "tinh", broadcasts={"normal_valid_s": PROVINCE_VALID_S})
        levels["huyen-a"] = RealLevel(root, "huyen-a")
        levels["xa-b"] = RealLevel(root, "xa-b")
        levels["xa-c"] = RealLevel(root, "xa-c")
        levels["huyen-a"].link_to(levels["tinh"], "huyen-a")
        levels["xa-b"].link_to(levels["huyen-a"], "xa-b")
        levels["xa-c"].link_to(levels["huyen-a"], "xa-c")
        # The district reports its communes' clusters up: the province learns the paths below.
        wait_until(
            lambda: {"unit:huyen-a/xa-b", "unit:huyen-a/xa-c"} <= levels["tinh"].services.targets.known(),
            timeout=20,
            what="the province knows the communes below the district",
        )
        yield levels
    finally:
        for level in reversed(list(levels.values())):
            level.close()


def _send(level: RealLevel, **body: Any) -> int:
    answer = level.post("/api/broadcasts", body)
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()["id"]


def _deliveries(level: RealLevel, bid: int) -> dict[tuple[str, str], str]:
    view = level.get(f"/api/broadcasts/{bid}").get_json()
    return {(d["unit"], d["speaker"]): d["state"] for d in view.get("unit_deliveries", [])}


def _item(level: RealLevel, title: str, *states: str) -> dict[str, Any] | None:
    return next(
        (i for i in level.inbox() if i["title"] == title and (not states or i["state"] in states)), None
    )


def test_an_emergency_from_the_province_airs_everywhere_below_and_proof_of_play_comes_back(chain) -> None:
    tinh = chain["tinh"]
    bid = _send(tinh, text="Cháy rừng lan rộng, bà con khẩn trương sơ tán.", title="Cháy rừng", tier="emergency",
                targets=["all", "unit:*"])  # fmt: skip
    below = {
        ("huyen-a", "huyen-a-loa-1"),
        ("huyen-a", "huyen-a-loa-2"),
        ("huyen-a/xa-b", "xa-b-loa-1"),
        ("huyen-a/xa-b", "xa-b-loa-2"),
        ("huyen-a/xa-c", "xa-c-loa-1"),
        ("huyen-a/xa-c", "xa-c-loa-2"),
    }
    done = wait_until(
        lambda: (
            (d := _deliveries(tinh, bid)) and set(d) == below and all(s == "done" for s in d.values()) and d
        ),
        timeout=60,
        what="proof of play of six clusters below at the province",
    )
    assert len(done) == 6
    for name in ("huyen-a", "xa-b", "xa-c"):
        level = chain[name]
        item = _item(level, "Cháy rừng")
        assert item is not None and item["tier"] == "emergency" and item["broadcast_id"]
        local = level.broadcast(item["broadcast_id"])
        assert local["tier"] == "emergency" and local["state"] == "done"
        assert local["normalized_text"]  # rendered by this level's own voice, from the text
        played = [e for e in level.sim.timeline() if e["broadcast_id"] == str(item["broadcast_id"])]
        assert {e["speaker_id"] for e in played} == set(level.passwords)  # sound on every cluster
    wait_until(lambda: tinh.broadcast(bid)["state"] == "done", timeout=30, what="the province's own clusters")


def test_an_emergency_only_for_the_units_below_is_rendered_whole_up_there(chain) -> None:
    """No cluster of the province hears it: nothing to stream to. Its render used to go to a stream
    that ended at once (no clusters), logged as a failed render, and left no audio."""
    tinh = chain["tinh"]
    bid = _send(tinh, text="Lũ quét ở đầu nguồn, bà con tránh xa bờ suối.", title="Lũ quét", tier="emergency",
                targets=["unit:*"])  # fmt: skip
    view = wait_until(
        lambda: (v := tinh.broadcast(bid)) and v["audio_key"] and v, timeout=30, what="rendered whole"
    )
    assert view["deliveries"] == [] and view["state"] != "failed"
    wait_until(lambda: _item(chain["xa-b"], "Lũ quét") is not None, timeout=30, what="the bulletin below")


def test_a_normal_bulletin_waits_in_one_communes_inbox_until_accepted(chain) -> None:
    tinh, huyen, xa_b, xa_c = chain["tinh"], chain["huyen-a"], chain["xa-b"], chain["xa-c"]
    bid = _send(tinh, text="Kế hoạch ra quân làm sạch kênh mương vào sáng Chủ nhật.", title="Làm sạch kênh",
                targets=["unit:huyen-a/xa-b"])  # fmt: skip
    item = wait_until(lambda: _item(xa_b, "Làm sạch kênh", "inbox"), timeout=20, what="in xa-b's inbox")
    forwarded = wait_until(lambda: _item(huyen, "Làm sạch kênh"), what="at the district")
    assert (
        forwarded["state"] == "forwarded" and forwarded["broadcast_id"] is None
    )  # not for the district itself
    assert _item(xa_c, "Làm sạch kênh") is None  # not routed to xa-c
    time.sleep(0)  # nothing airs by itself: the item stays in the inbox
    assert _item(xa_b, "Làm sạch kênh", "inbox") is not None
    local = xa_b.federation.desk.accept(item["id"], "can-bo-xa-b")
    assert local is not None
    wait_until(lambda: xa_b.broadcast(local)["state"] == "done", timeout=30, what="aired in xa-b")
    wait_until(
        lambda: (
            _deliveries(tinh, bid)
            == {("huyen-a/xa-b", "xa-b-loa-1"): "done", ("huyen-a/xa-b", "xa-b-loa-2"): "done"}
        ),
        timeout=30,
        what="xa-b's proof of play at the province",
    )


def test_the_district_cut_loses_nothing_doubles_nothing_and_expired_bulletins_are_missed(chain) -> None:
    tinh, huyen, xa_b, xa_c = chain["tinh"], chain["huyen-a"], chain["xa-b"], chain["xa-c"]
    normal = _send(tinh, text="Thông báo lịch họp giao ban quý.", title="Giao ban", targets=["unit:*"])
    wait_until(lambda: _item(xa_c, "Giao ban", "inbox"), timeout=20, what="in xa-c's inbox")
    applied_before = huyen.federation.hub.stats["reports_applied"]
    huyen.switch.cut.set()
    try:
        # While the district is unreachable: xa-c declines, both communes keep airing their own items.
        xa_c.federation.desk.decline(
            _item(xa_c, "Giao ban", "inbox")["id"], "can-bo-xa-c", "Đã phát ở cuộc họp thôn"
        )
        own = {
            name: _own(chain[name], f"Tin riêng của {name} khi mất liên lạc.") for name in ("xa-b", "xa-c")
        }
        for name, broadcast_id in own.items():
            level, own_id = chain[name], broadcast_id
            wait_until(lambda: level.broadcast(own_id)["state"] == "done", timeout=30, what="own item")  # noqa: B023
        # A priority bulletin from the province, valid shorter than the cut.
        priority = _send(tinh, text="Ưu tiên: kiểm tra đê điều trước mùa lũ.", title="Kiểm tra đê", tier="priority",
                         targets=["unit:*"])  # fmt: skip
        sent_at = time.monotonic()
        wait_until(lambda: _item(huyen, "Kiểm tra đê"), timeout=20, what="the district got it during the cut")
        assert _item(xa_b, "Kiểm tra đê") is None and _item(xa_c, "Kiểm tra đê") is None
        wait_until(
            lambda: xa_b.federation.queue.size() > 0 and xa_c.federation.queue.size() > 0,
            what="queued reports",
        )
        wait_until(
            lambda: time.monotonic() - sent_at > CUT_S, timeout=CUT_S + 5, what="the cut to outlast it"
        )
    finally:
        huyen.switch.cut.clear()
    assert huyen.switch.refused > 0
    wait_until(
        lambda: xa_b.federation.queue.size() == 0 and xa_c.federation.queue.size() == 0,
        timeout=30,
        what="the communes' queues drained",
    )
    assert huyen.federation.hub.stats["reports_applied"] > applied_before
    # Expired during the cut: recorded as missed in both communes, never aired late.
    for level in (xa_b, xa_c):
        late = wait_until(
            lambda level=level: _item(level, "Kiểm tra đê"), timeout=20, what="the late bulletin"
        )
        assert late["state"] == "missed" and late["broadcast_id"] is None
    states = wait_until(
        lambda: (s := _unit_states(tinh, priority)) and {"huyen-a/xa-b", "huyen-a/xa-c"} <= set(s) and s,
        timeout=30,
        what="missed reported to the province",
    )
    assert (
        states["huyen-a/xa-b"] == ("missed", states["huyen-a/xa-b"][1])
        and states["huyen-a/xa-c"][0] == "missed"
    )
    declined = wait_until(
        lambda: _unit_states(tinh, normal).get("huyen-a/xa-c"), timeout=30, what="the decline"
    )
    assert declined == ("declined", "Đã phát ở cuộc họp thôn")
    # Nothing doubled: one row per (unit, cluster) of the own items' minutes, each counted once.
    minutes = _minutes(huyen, "xa-c")
    assert minutes and all(count >= 1 for count in minutes.values())


def _own(level: RealLevel, text: str) -> int:
    from broadcaster.domain import Announcement, Source

    return level.services.broadcasts.submit(Announcement(text=text, source=Source.WEB, author="can-bo"))


def _unit_states(level: RealLevel, bid: int) -> dict[str, tuple[str, str | None]]:
    from sqlalchemy import select

    from broadcaster.federation.models import FedBulletin
    from broadcaster.federation.views import unit_states

    with level.sessions() as session:
        ids = session.scalars(select(FedBulletin.id).where(FedBulletin.broadcast_id == bid)).all()
        return {s["unit"]: (s["state"], s["reason"]) for i in ids for s in unit_states(session, i)}


def _minutes(level: RealLevel, unit: str) -> dict[str, int]:
    from sqlalchemy import select

    from broadcaster.federation.models import FedMinutes

    level.services.federation.collector.minutes(time.time())
    with level.sessions() as session:
        rows = session.scalars(select(FedMinutes).where(FedMinutes.unit == unit)).all()
        return {f"{r.day}:{r.speaker}": r.broadcasts for r in rows if r.seconds > 0}

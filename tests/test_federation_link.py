"""Two levels in one process over real HTTP: a district (no clusters of its own) and a commune
with nine fake clusters, joined by the real signed link. One pair per module: each test uses its
own bulletins."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_controller import wait_until
from tests.fixtures_federation import Level


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Level, Level]]:
    root = tmp_path_factory.mktemp("federation-link")
    district = Level(root, "huyen", nodes=False)
    commune = Level(root, "xa", clash_timeout_s=1.5)
    commune.link_to(district, "xa-a")
    yield district, commune
    commune.close()
    district.close()


def _send(district: Level, **body: Any) -> int:
    answer = district.post("/api/broadcasts", {"targets": ["unit:*"], **body})
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()["id"]


def _unit_deliveries(district: Level, bid: int) -> list[dict[str, Any]]:
    return district.get(f"/api/broadcasts/{bid}").get_json().get("unit_deliveries", [])


def test_an_emergency_airs_on_every_cluster_below_and_its_proof_of_play_comes_back(chain) -> None:
    from broadcaster.federation.base import Upstream

    district, commune = chain
    assert isinstance(commune.federation.link, Upstream)
    bid = _send(district, text="Bão số 3 đổ bộ, bà con không ra biển.", tier="emergency")
    item = wait_until(
        lambda: next((i for i in commune.inbox() if i["tier"] == "emergency" and i["broadcast_id"]), None),
        what="received and submitted",
    )
    local = commune.broadcast(item["broadcast_id"])
    assert local["tier"] == "emergency" and local["source"] == "upstream"
    done = wait_until(
        lambda: (
            (d := _unit_deliveries(district, bid))
            and len(d) == 9
            and all(x["state"] == "done" for x in d)
            and d
        ),
        timeout=20,
        what="9 done deliveries reported up",
    )
    assert {d["unit"] for d in done} == {"xa-a"}
    assert {d["speaker"] for d in done} == set(commune.nodes)
    assert all(d["seconds_played"] and d["started_at"] for d in done)
    view = district.broadcast(bid)
    assert view["state"] == "done"  # nothing to air at the district itself


def test_a_normal_bulletin_waits_in_the_inbox_until_declined_with_a_reason(chain) -> None:
    district, commune = chain
    bid = _send(district, text="Mời bà con dự họp tổ dân phố tối thứ Bảy.", title="Họp tổ")
    item = wait_until(
        lambda: next((i for i in commune.inbox() if i["title"] == "Họp tổ" and i["state"] == "inbox"), None),
        what="normal item in the inbox",
    )
    assert item["broadcast_id"] is None  # nothing airs by itself
    commune.federation.desk.decline(item["id"], "can-bo-xa", "Trùng lịch họp của xã")
    states = wait_until(
        lambda: [s for s in _states(district, bid) if s["state"] == "declined"], what="declined reported"
    )
    assert states[0]["unit"] == "xa-a" and states[0]["reason"] == "Trùng lịch họp của xã"


def _states(district: Level, bid: int) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from broadcaster.federation.models import FedBulletin
    from broadcaster.federation.views import unit_states

    with district.sessions() as session:
        ids = session.scalars(select(FedBulletin.id).where(FedBulletin.broadcast_id == bid)).all()
        return [s for i in ids for s in unit_states(session, i)]


def test_a_normal_bulletin_accepted_from_the_inbox_airs(chain) -> None:
    district, commune = chain
    bid = _send(district, text="Lịch tiêm chủng mở rộng tháng này.", title="Tiêm chủng")
    item = wait_until(
        lambda: next(
            (i for i in commune.inbox() if i["title"] == "Tiêm chủng" and i["state"] == "inbox"), None
        ),
        what="in the inbox",
    )
    local = commune.federation.desk.accept(item["id"], "can-bo-xa")
    assert local is not None
    wait_until(lambda: commune.broadcast(local)["state"] == "done", timeout=20, what="aired")
    wait_until(
        lambda: len([d for d in _unit_deliveries(district, bid) if d["state"] == "done"]) == 9,
        what="proof of play",
    )


def test_a_link_cut_loses_nothing_and_doubles_nothing(chain) -> None:
    """The district refuses every request for a while (a cut of a few seconds shows what a minute
    would: the reports queue and go in order once it is back)."""
    district, commune = chain
    district.switch.cut.set()
    try:
        # The commune keeps working: its own item airs while the link is down.
        own = commune.services.broadcasts.submit(_announcement("Thông báo của xã trong lúc mất liên lạc."))
        wait_until(lambda: commune.broadcast(own)["state"] == "done", timeout=20, what="own item aired")
        wait_until(lambda: district.switch.refused >= 3, what="requests refused while cut")
        assert commune.federation.link.status()["state"] == "error"
        commune.federation.collector.minutes(commune.services.broadcasts.clock())
        waiting = commune.federation.queue.pending(1000)
        assert any(r.kind == "minutes" for r in waiting)  # made during the cut, waiting to go up
    finally:
        district.switch.cut.clear()
    cut_seqs = [r.seq for r in waiting]
    wait_until(lambda: commune.federation.queue.size() == 0, timeout=20, what="queue drained after the cut")
    from sqlalchemy import func, select

    from broadcaster.federation.admin import show_upstream
    from broadcaster.federation.models import FedMinutes, FedUnit

    def applied_up_to() -> int:
        with district.sessions() as session:
            row = session.get(FedUnit, "xa-a")
            return row.last_report_seq if row is not None else 0

    # Everything numbered during the cut reached the district, in order (its cursor passed them).
    wait_until(lambda: applied_up_to() >= max(cut_seqs), what="the district applied the queued reports")
    assert applied_up_to() <= show_upstream(commune.sessions)["next_report"] - 1
    with district.sessions() as session:
        seconds = session.scalar(select(func.sum(FedMinutes.seconds)).where(FedMinutes.unit == "xa-a"))
        rows = session.scalar(select(func.count()).select_from(FedMinutes).where(FedMinutes.unit == "xa-a"))
        speakers = session.scalar(
            select(func.count(func.distinct(FedMinutes.speaker))).where(FedMinutes.unit == "xa-a")
        )
    assert seconds and seconds > 0
    assert rows == 2 * speakers  # one row per day and cluster, nothing doubled


def _announcement(text: str, tier: str = "normal") -> Any:
    from broadcaster.domain import Announcement, Source, Tier

    return Announcement(text=text, tier=Tier(tier), source=Source.WEB, author="can-bo-xa")


def test_a_priority_clash_asks_and_applies_the_default_after_the_timeout(chain) -> None:
    district, commune = chain
    text = "Tin ưu tiên của xã về lịch cắt điện."
    commune.services.speech.durations[text] = 20.0  # long enough to still play when the bulletin comes
    own = commune.services.broadcasts.submit(_announcement(text, "priority"))
    wait_until(
        lambda: commune.broadcast(own)["state"] in ("sending", "playing"), what="own priority item on air"
    )
    _send(district, text="Tin ưu tiên của huyện về phòng chống dịch.", title="Phòng dịch", tier="priority")
    held = wait_until(
        lambda: next(
            (i for i in commune.inbox() if i["title"] == "Phòng dịch" and i["state"] == "held"), None
        ),
        what="the clash question",
    )
    assert held["clash"] == [own]
    # Nobody answers: after clash_timeout_s the default (upstream first) applies.
    decided = wait_until(
        lambda: next((i for i in commune.inbox() if i["id"] == held["id"] and i["broadcast_id"]), None),
        timeout=10,
        what="default applied",
    )
    assert decided["decided_by"] == "tự động"
    assert commune.broadcast(own)["state"] == "cancelled"
    upstream_first = decided["broadcast_id"]
    again = wait_until(
        lambda: (
            max(b["id"] for b in commune.services.broadcasts.list(limit=10) if b["text"] == text) > own
            and max(b["id"] for b in commune.services.broadcasts.list(limit=10) if b["text"] == text)
        ),
        what="the commune's own item put back",
    )
    assert again > upstream_first  # behind the bulletin
    wait_until(
        lambda: commune.broadcast(upstream_first)["state"] == "done", timeout=20, what="bulletin aired"
    )
    assert commune.broadcast(again)["state"] in ("sending", "playing", "done")


def _raw_sync(level: Level, unit: str, token: str, body: dict[str, Any], *, ts: float | None = None) -> Any:
    """A sync request signed as a unit would sign it, sent over real HTTP (urllib)."""
    import time

    from broadcaster.federation import signing

    data = signing.canonical_json(body)
    headers = signing.sign_request(
        signing.derive_key(token),
        "POST",
        "/federation/v1/sync",
        unit,
        data,
        ts if ts is not None else time.time(),
    )
    return _post(level.url + "/federation/v1/sync", data, headers)


def _post(url: str, data: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str]]:
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=data, headers={**headers, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read()), dict(answer.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


def test_forged_and_replayed_messages_are_refused(chain) -> None:
    district, _ = chain
    token = district.add_unit("xa-thu")
    body = {"version": 1, "unit": "xa-thu", "link": "link-test-1", "ack": 0, "wait": 0, "reports": []}
    status, answer, _ = _raw_sync(district, "xa-thu", token, body)
    assert status == 200 and answer["acked"] == 0
    # Forged: signed with another token of the same shape.
    from broadcaster.federation import signing

    status, answer, _ = _raw_sync(district, "xa-thu", signing.new_token("xa-thu"), body)
    assert (status, answer["error"]["code"]) == (401, "bad_signature")
    # Altered on the way: a valid signature over another body.
    data = signing.canonical_json(body)
    import time

    headers = signing.sign_request(
        signing.derive_key(token), "POST", "/federation/v1/sync", "xa-thu", data, time.time()
    )
    tampered = data.replace(b'"ack":0', b'"ack":9')
    status, answer, _ = _post(district.url + "/federation/v1/sync", tampered, headers)
    assert (status, answer["error"]["code"]) == (401, "bad_signature")
    # Replayed: the very same signed request a second time.
    status, _, _ = _post(district.url + "/federation/v1/sync", data, headers)
    assert status == 200
    status, answer, _ = _post(district.url + "/federation/v1/sync", data, headers)
    assert (status, answer["error"]["code"]) == (409, "replay")
    # Outside the replay window (an old message).
    status, answer, reply = _raw_sync(district, "xa-thu", token, body, ts=time.time() - 3600)
    assert (status, answer["error"]["code"]) == (409, "stale")
    assert reply.get("X-Loa-Signature")  # signed, so the unit can trust the clock it carries
    assert district.federation.hub.stats["refused"] >= 4


def test_reports_are_applied_once_in_order(chain) -> None:
    district, _ = chain
    token = district.add_unit("xa-lap")
    clusters = {"unit": "", "clusters": [{"id": "loa-01", "name": "Loa 1", "online": True, "faults": []}]}
    offline = {
        "unit": "",
        "clusters": [{"id": "loa-01", "name": "Loa 1", "online": False, "faults": ["offline"]}],
    }
    first = {"version": 1, "unit": "xa-lap", "link": "link-lap-1", "ack": 0, "wait": 0,
             "reports": [{"seq": 1, "kind": "clusters", "data": clusters}, {"seq": 2, "kind": "clusters", "data": offline}]}  # fmt: skip
    status, answer, _ = _raw_sync(district, "xa-lap", token, first)
    assert status == 200 and answer["acked"] == 2
    # The same reports again (a retry after a lost answer): nothing changes, report 1 is not re-applied.
    status, answer, _ = _raw_sync(district, "xa-lap", token, first)
    assert answer["acked"] == 2
    from broadcaster.federation.models import FedCluster

    with district.sessions() as session:
        row = session.get(FedCluster, ("xa-lap", "loa-01"))
        assert row is not None and row.online is False and row.faults == ["offline"]


def test_a_revoked_token_cuts_the_link(tmp_path: Path) -> None:
    from broadcaster.federation.admin import show_upstream
    from broadcaster.federation.units import revoke_unit

    upper = Level(tmp_path, "tinh", nodes=False)
    lower = Level(tmp_path, "huyen", nodes=False)
    try:
        lower.link_to(upper, "huyen-b")
        revoke_unit(upper.sessions, "huyen-b")
        wait_until(
            lambda: show_upstream(lower.sessions)["state"] == "revoked", timeout=10, what="link revoked"
        )
        wait_until(lambda: lower.federation.link is None, timeout=10, what="the link stopped")
        link = show_upstream(lower.sessions)
        assert link is not None and link["state"] == "revoked" and "revoked" in (link["last_error"] or "")
        listed = {
            u["name"]: u
            for u in __import__("broadcaster.federation.units", fromlist=["x"]).list_units(upper.sessions)
        }
        assert listed["huyen-b"]["revoked"] is True
    finally:
        lower.close()
        upper.close()


def test_a_recording_goes_down_as_audio_with_its_sha256(chain) -> None:
    """An officer's recording at the district: the commune fetches the mp3 (signed GET), checks
    its size and sha256, and airs exactly those bytes."""
    import hashlib

    from broadcaster.domain import Announcement, AudioKey, Source, Tier

    district, commune = chain
    data = bytes(range(256)) * 40
    key = hashlib.sha256(b"recording-of-the-district").hexdigest()
    district.services.speech.store.put(key, data, {"engine": "recording", "duration_s": 0.8})
    ann = Announcement(text="", title="Ghi âm của huyện", tier=Tier.PRIORITY, targets=("unit:xa-a",),
                       source=Source.WEB, author="huyen", audio_key=AudioKey(key))  # fmt: skip
    bid = district.services.broadcasts.submit(ann)
    item = wait_until(
        lambda: next(
            (i for i in commune.inbox() if i["title"] == "Ghi âm của huyện" and i["broadcast_id"]), None
        ),
        what="the recording received and aired",
    )
    assert item["format"] == "audio" and item["audio_key"] == key
    assert commune.services.speech.store.read_bytes(key) == data
    assert commune.broadcast(item["broadcast_id"])["audio_key"] == key
    wait_until(
        lambda: len([d for d in _unit_deliveries(district, bid) if d["state"] == "done"]) == 9, what="played"
    )

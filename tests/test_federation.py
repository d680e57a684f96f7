"""The pure parts of the federation, without servers: tokens and signatures, the replay window,
the wire messages, routes, the report queue (order, coalescing, bound), unit targets."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from broadcaster.domain import Tier
from broadcaster.federation import signing
from broadcaster.federation.outbound import forward_routes, plan_routes
from broadcaster.federation.wire import Bulletin, Item, Report, SyncRequest, SyncResponse, WireError

# ------------------------------------------------------------------ tokens and signatures


def test_a_token_names_its_unit_and_derives_a_key() -> None:
    token = signing.new_token("xa-phuc-hoa")
    assert signing.parse_token(token) == "xa-phuc-hoa"
    assert signing.derive_key(token) == signing.derive_key(token + "\n")  # pasted with a newline
    assert signing.derive_key(token) != signing.derive_key(signing.new_token("xa-phuc-hoa"))
    for bad in (
        "",
        "loa1.xa.short",
        "abc.xa-a." + "x" * 43,
        "loa1.Xã Phúc.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ):
        with pytest.raises(signing.TokenError):
            signing.parse_token(bad)
    with pytest.raises(signing.TokenError):
        signing.new_token("Xã A")


def test_a_request_signature_covers_method_path_unit_time_nonce_and_body() -> None:
    key = signing.derive_key(signing.new_token("xa-a"))
    body = signing.canonical_json({"version": 1, "text": "Bão số 3"})
    headers = signing.sign_request(key, "POST", "/federation/v1/sync", "xa-a", body, 1_700_000_000.0)
    args = ("POST", "/federation/v1/sync", "xa-a", headers["X-Loa-Time"], headers["X-Loa-Nonce"], body)
    assert signing.verify(key, signing.request_string(*args), headers["X-Loa-Signature"])
    for i, other in enumerate(
        ["GET", "/federation/v1/audio/x", "xa-b", "1700000001.000", "n" * 24, body + b" "]
    ):
        changed = list(args)
        changed[i] = other
        assert not signing.verify(key, signing.request_string(*changed), headers["X-Loa-Signature"])
    assert not signing.verify(
        signing.derive_key(signing.new_token("xa-a")),
        signing.request_string(*args),
        headers["X-Loa-Signature"],
    )
    assert not signing.verify(key, signing.request_string(*args), "not-hex")


def test_a_response_is_bound_to_the_request_it_answers() -> None:
    key = signing.derive_key(signing.new_token("xa-a"))
    body = b'{"version":1}'
    headers = signing.sign_response(key, 200, "nonce-of-request-1", body, 1_700_000_000.0)
    ok, server_time = signing.verify_response(key, 200, "nonce-of-request-1", headers, body)
    assert ok and server_time == pytest.approx(1_700_000_000.0)
    assert signing.verify_response(key, 200, "nonce-of-request-2", headers, body) == (False, None)
    assert signing.verify_response(key, 409, "nonce-of-request-1", headers, body)[0] is False
    assert signing.verify_response(key, 200, "nonce-of-request-1", headers, body + b" ")[0] is False


def test_the_replay_window_refuses_old_and_future_times() -> None:
    assert signing.time_problem(1000.0, 1000.0, 300) is None
    assert signing.time_problem(1299.0, 1000.0, 300) is None
    assert "off by +301" in (signing.time_problem(1301.0, 1000.0, 300) or "")
    assert "off by -400" in (signing.time_problem(600.0, 1000.0, 300) or "")
    assert signing.time_problem(None, 1000.0, 300) == "missing or malformed time"
    assert signing.parse_time("nan") is None and signing.parse_time("1e30") is None
    assert signing.parse_time("1700000000.125") == 1700000000.125


def test_canonical_json_is_one_serialisation_with_vietnamese_as_is() -> None:
    assert signing.canonical_json({"b": 1, "a": "Thôn Đông"}) == '{"a":"Thôn Đông","b":1}'.encode()
    with pytest.raises(ValueError):
        signing.canonical_json({"x": float("nan")})


# ------------------------------------------------------------------ wire messages


def test_messages_round_trip() -> None:
    request = SyncRequest(
        "xa-a", "link-0001", 3, 20.0, (Report(7, "bulletin", {"bulletin": "2", "state": "done"}),)
    )
    assert SyncRequest.from_dict(request.to_dict()) == request
    bulletin = Bulletin(
        "12",
        Tier.EMERGENCY,
        title="Bão",
        text="Bão số 3 đổ bộ.",
        valid_until=datetime(2026, 3, 15, 1, 0, tzinfo=UTC),
        route=("*",),
        sender="UBND huyện A",
    )
    assert Bulletin.from_dict(bulletin.to_dict()) == bulletin
    response = SyncResponse(
        7, (Item(4, "bulletin", bulletin.to_dict()), Item(5, "cancel", {"id": "12"})), True, "t"
    )
    assert SyncResponse.from_dict(response.to_dict()) == response


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"version": 2}, "unsupported_version"),
        ({"link": "x"}, "bad_request"),
        ({"wait": 600}, "bad_request"),
        (
            {
                "reports": [
                    {"seq": 2, "kind": "bulletin", "data": {}},
                    {"seq": 1, "kind": "bulletin", "data": {}},
                ]
            },
            "bad_request",
        ),
        ({"reports": [{"seq": 1, "kind": "gossip", "data": {}}]}, "bad_request"),
        ({"ack": -1}, "bad_request"),
    ],
)
def test_malformed_requests_are_refused_with_a_code(change: dict, code: str) -> None:
    data = {**SyncRequest("xa-a", "link-0001").to_dict(), **change}
    with pytest.raises(WireError) as err:
        SyncRequest.from_dict(data)
    assert err.value.code == code


def test_a_bulletin_is_checked_field_by_field() -> None:
    good = Bulletin("1", Tier.NORMAL, text="Họp thôn").to_dict()
    for change in (
        {"class": "urgent"},
        {"format": "video"},
        {"format": "audio"},  # no audio reference
        {"text": ""},
        {"route": ["../etc"]},
        {"route": []},
        {"valid_until": "2026-03-15T07:30:00"},  # no offset
        {"audio": {"key": "x", "sha256": "y", "size": 1}},
    ):
        with pytest.raises(WireError):
            Bulletin.from_dict({**good, **change})


# ------------------------------------------------------------------ routes


def test_unit_targets_become_routes_per_direct_unit() -> None:
    units = ["huyen-a", "huyen-b"]
    assert plan_routes(["unit:*"], units) == {"huyen-a": ["*"], "huyen-b": ["*"]}
    assert plan_routes(["unit:huyen-a"], units) == {"huyen-a": ["*"]}
    assert plan_routes(["unit:huyen-a/xa-b", "unit:huyen-a/xa-c"], units) == {"huyen-a": ["xa-b", "xa-c"]}
    assert plan_routes(["unit:huyen-a/xa-b", "unit:huyen-a"], units) == {"huyen-a": ["*"]}
    assert plan_routes(["all", "unit:huyen-z"], units) == {}


def test_a_district_forwards_emergencies_to_all_and_the_rest_as_routed() -> None:
    communes = ["xa-b", "xa-c"]
    assert forward_routes(["xa-b"], Tier.EMERGENCY, communes) == {"xa-b": ["*"], "xa-c": ["*"]}
    assert forward_routes(["*"], Tier.NORMAL, communes) == {"xa-b": ["*"], "xa-c": ["*"]}
    assert forward_routes(["xa-b"], Tier.PRIORITY, communes) == {"xa-b": ["*"]}
    assert forward_routes(["xa-z"], Tier.NORMAL, communes) == {}


# ------------------------------------------------------------------ the report queue


@pytest.fixture
def queue(tmp_path: Path):  # type: ignore[no-untyped-def]
    from broadcaster.db import create_schema, make_engine, make_session_factory
    from broadcaster.federation.admin import set_upstream
    from broadcaster.federation.reportqueue import ReportQueue

    engine = make_engine(f"sqlite:///{tmp_path / 'q.db'}")
    create_schema(engine)
    sessions = make_session_factory(engine)
    set_upstream(sessions, "http://127.0.0.1:9", signing.new_token("xa-a"))
    yield ReportQueue(sessions, 100, threading.RLock())
    engine.dispose()


def test_reports_are_numbered_in_order_and_never_reuse_a_number(queue) -> None:  # type: ignore[no-untyped-def]
    seqs = [queue.add("bulletin", {"bulletin": "1", "state": s}) for s in ("received", "sending", "done")]
    assert seqs == [1, 2, 3]
    assert [r.seq for r in queue.pending(10)] == [1, 2, 3]
    assert [r.data["state"] for r in queue.pending(10)] == ["received", "sending", "done"]
    assert queue.ack(3) == 3 and queue.size() == 0
    assert queue.add("bulletin", {"bulletin": "1", "state": "x"}) == 4  # the queue emptied: still 4


def test_a_newer_snapshot_replaces_the_one_still_waiting(queue) -> None:  # type: ignore[no-untyped-def]
    queue.add("clusters", {"n": 1}, coalesce="clusters:")
    queue.add("delivery", {"d": 1})
    queue.add("clusters", {"n": 2}, coalesce="clusters:")
    assert [(r.kind, r.data) for r in queue.pending(10)] == [("delivery", {"d": 1}), ("clusters", {"n": 2})]


def test_a_full_queue_drops_snapshots_first_then_the_oldest(queue) -> None:  # type: ignore[no-untyped-def]
    queue.add("minutes", {"old": True}, coalesce="minutes:")
    for i in range(100):
        queue.add("delivery", {"i": i})
    assert queue.size() == 100
    assert all(r.kind == "delivery" for r in queue.pending(200))  # the snapshot went first
    queue.add("delivery", {"i": 100})
    kept = [r.data["i"] for r in queue.pending(200)]
    assert kept == list(range(1, 101))  # then the oldest report
    from broadcaster.federation.admin import show_upstream

    assert show_upstream(queue.sessions)["dropped_reports"] == 2


def test_without_an_upstream_nothing_is_queued(tmp_path: Path) -> None:
    from broadcaster.db import create_schema, make_engine, make_session_factory
    from broadcaster.federation.reportqueue import ReportQueue

    engine = make_engine(f"sqlite:///{tmp_path / 'top.db'}")
    create_schema(engine)
    q = ReportQueue(make_session_factory(engine), 100, threading.RLock())
    assert q.add("bulletin", {}) is None and q.size() == 0
    engine.dispose()


# ------------------------------------------------------------------ unit targets


def test_unit_targets_have_their_own_shape_and_messages(tmp_path: Path) -> None:
    from broadcaster.broadcasts import AnnouncementInvalid, Draft
    from broadcaster.federation.units import add_unit
    from broadcaster.fleet.targets import TargetError, check_target_list, resolve
    from tests.fixtures_controller import unit_services

    assert check_target_list(["all", "unit:*"]) == ("all", "unit:*")
    with pytest.raises(TargetError):
        check_target_list(["unit:Xã A"])
    with pytest.raises(TargetError):
        check_target_list(["all", "thon-1", "unit:*"])
    services = unit_services(tmp_path)
    try:
        with pytest.raises(AnnouncementInvalid, match="chưa có đơn vị cấp dưới"):
            services.validator.check(Draft(text="Họp", targets=["unit:*"]))
        add_unit(services.sessions, "xa-a")
        services.targets.invalidate()
        checked = services.validator.check(Draft(text="Họp", targets=["unit:xa-a"]))
        assert checked.targets == ("unit:xa-a",)
        with pytest.raises(AnnouncementInvalid, match="Không có đơn vị cấp dưới: unit:xa-z"):
            services.validator.check(Draft(text="Họp", targets=["unit:xa-z"]))
        with services.sessions() as session:
            only_units = resolve(session, ["unit:*"])
            both = resolve(session, ["all", "unit:xa-a"])
        assert only_units.speakers == () and only_units.units == ("unit:*",)
        assert len(both.speakers) == 9 and both.units == ("unit:xa-a",)
        assert services.targets.describe(["all", "unit:*"]) == "tất cả 9 cụm loa và mọi đơn vị cấp dưới"
    finally:
        services.db_engine.dispose()


def test_an_emergency_from_above_goes_through_the_alert_channels(tmp_path: Path) -> None:
    """The intake's emergency notice reaches every alert channel (AlertNotifier.announce)."""
    from broadcaster.alerts import AlertNotifier
    from broadcaster.alerts.config import AlertsConfig
    from broadcaster.federation.build import build_federation
    from tests.fixtures_controller import unit_services, wait_until

    class Recorder:
        name, kinds = "recorder", None

        def __init__(self) -> None:
            self.sent: list[Any] = []

        def send(self, notice: Any) -> None:
            self.sent.append(notice)

    channel = Recorder()
    notifier = AlertNotifier(AlertsConfig(instance_name="Xã Phúc Hòa"), None, channels=[channel])
    services = unit_services(tmp_path, alerts={"instance_name": "Xã Phúc Hòa"})
    notifier.start()
    try:
        federation = build_federation(
            services.settings, sessions=services.sessions, broadcasts=services.broadcasts,
            speech=services.speech, fleet=services.fleet, alerts=notifier,
        )  # fmt: skip
        for callback in federation.intake.on_emergency:
            callback({"id": 1, "title": "Cháy rừng", "sender": "UBND huyện A", "origin": "upstream"})
        notice = wait_until(lambda: channel.sent and channel.sent[0], what="the notice sent")
        assert notice.subject == "[Xã Phúc Hòa] Đang phát tin KHẨN CẤP từ UBND huyện A"
        assert "«Cháy rừng»" in notice.text and notice.payload["kind"] == "upstream_emergency"
    finally:
        notifier.stop()
        services.db_engine.dispose()


def test_bulletins_expired_before_they_could_air_are_reported_missed(tmp_path: Path) -> None:
    import time as _time

    from broadcaster.federation.admin import set_upstream
    from broadcaster.federation.intake import Incoming
    from tests.fixtures_controller import unit_services

    services = unit_services(tmp_path)
    try:
        federation = services.federation
        set_upstream(services.sessions, "http://127.0.0.1:9", signing.new_token("xa-a"))
        now = [_time.time()]
        federation.intake.clock = lambda: now[0]
        until = datetime.fromtimestamp(now[0] + 60, UTC)
        waiting = federation.intake.receive(
            Incoming("upstream", Bulletin("5", Tier.NORMAL, text="Họp thôn.", valid_until=until))
        )
        assert (
            federation.intake.receive(Incoming("upstream", Bulletin("5", Tier.NORMAL, text="Họp thôn.")))
            == waiting
        )
        late = federation.intake.receive(
            Incoming(
                "upstream",
                Bulletin(
                    "6", Tier.EMERGENCY, text="Bão.", valid_until=datetime.fromtimestamp(now[0] - 1, UTC)
                ),
            )
        )
        now[0] += 120
        federation.intake.tick()
        from broadcaster.federation.models import FedInbox

        with services.sessions() as session:
            rows = {r.ref: (r.state, r.broadcast_id) for r in session.query(FedInbox)}
        assert rows == {"5": ("missed", None), "6": ("missed", None)}
        assert services.broadcasts.list() == []  # nothing aired late
        reports = [(r.data["bulletin"], r.data["state"]) for r in federation.queue.pending(20)]
        assert reports == [("5", "received"), ("5", "inbox"), ("6", "missed"), ("5", "missed")]
        assert late != waiting
    finally:
        services.db_engine.dispose()


def test_the_command_line_registers_units_and_sets_the_upstream(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from broadcaster.__main__ import main

    upper, lower = str(tmp_path / "huyen"), str(tmp_path / "xa")
    assert main(["--instance", upper, "downstream", "add", "xa-phuc-hoa", "--name", "Xã Phúc Hòa"]) == 0
    token = capsys.readouterr().out.strip()
    assert signing.parse_token(token) == "xa-phuc-hoa"  # printed alone, once
    assert main(["--instance", upper, "downstream", "add", "xa-phuc-hoa"]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["--instance", upper, "downstream", "add", "Xã A"]) == 1
    assert main(["--instance", upper, "downstream", "list"]) == 0
    listed = capsys.readouterr().out
    assert "xa-phuc-hoa  active" in listed and token not in listed
    assert main(["--instance", lower, "upstream", "set", "ftp://x", "--token", token]) == 1
    assert main(["--instance", lower, "upstream", "set", "https://huyen.example.vn/", "--token", "nope"]) == 1
    capsys.readouterr()
    assert main(["--instance", lower, "upstream", "set", "https://huyen.example.vn/", "--token", token]) == 0
    assert "as unit xa-phuc-hoa" in capsys.readouterr().out
    assert main(["--instance", lower, "upstream", "show"]) == 0
    shown = capsys.readouterr().out
    assert "url: https://huyen.example.vn" in shown and token not in shown
    assert main(["--instance", upper, "downstream", "revoke", "xa-phuc-hoa"]) == 0
    assert main(["--instance", upper, "downstream", "revoke", "xa-khac"]) == 1
    assert main(["--instance", lower, "upstream", "clear"]) == 0
    capsys.readouterr()
    assert main(["--instance", lower, "upstream", "show"]) == 0
    assert "no upstream" in capsys.readouterr().out


def test_a_poll_beyond_the_held_limit_is_answered_at_once_with_when_to_poll_again(tmp_path: Path) -> None:
    import time as _time

    from broadcaster.db import create_schema, make_engine, make_session_factory
    from broadcaster.federation.config import FederationConfig
    from broadcaster.federation.downstream import Hub
    from broadcaster.federation.units import add_unit

    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    create_schema(engine)
    sessions = make_session_factory(engine)
    token = add_unit(sessions, "xa-a")
    hub = Hub(sessions, FederationConfig(max_held_polls=0, poll_after_s=3.0), threading.RLock())

    def poll() -> SyncResponse:
        body = signing.canonical_json(SyncRequest("xa-a", "link-0001", wait=30.0).to_dict())
        headers = signing.sign_request(
            signing.derive_key(token), "POST", "/federation/v1/sync", "xa-a", body, _time.time()
        )
        answer = hub.handle_sync(headers, body)
        assert answer.status == 200
        return SyncResponse.from_dict(__import__("json").loads(answer.body))

    assert poll().poll_after == 3.0  # not held: would otherwise have waited 20 s for nothing
    assert hub.stats["polls_not_held"] == 1
    engine.dispose()

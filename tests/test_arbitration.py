"""Arbitration as a pure function: plain values in, decisions out. No database, no broker, no threads,
no clock (``now`` is an argument)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from broadcaster.broadcasts.arbitration import (
    DISPATCH_SLACK_S,
    Expire,
    Interrupt,
    NoReceipt,
    Play,
    Policy,
    Queued,
    Snapshot,
    Wait,
    arbitrate,
    validity_end,
)
from broadcaster.broadcasts.state import Airing, Hold
from broadcaster.domain import Tier
from broadcaster.fleet.targets import ZoneMap
from speakers.protocol import AudioRef

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
# 10:00 local on a weekday: outside the quiet hours used below.
NOW = datetime(2026, 3, 16, 10, 0, tzinfo=HCM).timestamp()
POLICY = Policy(
    lead_s=2.0, emergency_lead_s=0.5, lead_per_1000_s=0.0, gap_s=1.0, receipt_grace_s=30.0, tz=HCM
)
ZONES = ZoneMap(
    speaker_zone={"a1": "thon-1", "a2": "thon-1", "b1": "thon-2", "b2": "thon-2"},
    members={"thon-1": frozenset({"a1", "a2"}), "thon-2": frozenset({"b1", "b2"})},
    quiet={"thon-1": (None, None), "thon-2": (None, None)},
)
EVERYONE = frozenset({"a1", "a2", "b1", "b2"})


def airing(
    id: int,
    tier: Tier = Tier.NORMAL,
    pending: set[str] | None = None,
    active: dict[str, tuple[float, float]] | None = None,
    duration: float = 10.0,
    valid_until: float = NOW + 3600,
) -> Airing:
    return Airing(
        id=id,
        tier=tier,
        order=id,
        title=f"tin {id}",
        audio_key="k" * 64,
        audio=AudioRef.for_bytes(bytes([id]) * 100, duration_s=duration),
        duration=duration,
        valid_until=valid_until,
        whole_zones=set(),
        pending=set(pending or ()),
        active=dict(active or {}),
    )


def snap(
    *airings: Airing, online=EVERYONE, zones: ZoneMap = ZONES, holds=(), policy: Policy = POLICY
) -> Snapshot:
    return Snapshot(
        airings=list(airings), holds=list(holds), online=frozenset(online), zones=zones, policy=policy
    )


def plays(decisions) -> list[Play]:  # type: ignore[no-untyped-def]
    return [d for d in decisions if isinstance(d, Play)]


# ------------------------------------------------------------------ synchronized start


def test_a_free_item_starts_everywhere_at_one_instant_after_the_lead() -> None:
    decisions = arbitrate(snap(airing(1, pending={"a1", "a2", "b1"})), NOW)
    assert decisions == [Play(1, ("a1", "a2", "b1"), NOW + 2.0)]


def test_a_large_dispatch_gets_a_longer_lead() -> None:
    policy = Policy(lead_s=2.0, lead_per_1000_s=3.0, tz=HCM)
    (play,) = plays(arbitrate(snap(airing(1, pending={"a1", "a2"}), policy=policy), NOW))
    assert play.start == NOW + 2.0 + 3.0 * 2 / 1000


# ------------------------------------------------------------------ tiers and order


def test_priority_goes_before_an_earlier_normal_item_on_the_same_clusters() -> None:
    normal = airing(1, Tier.NORMAL, pending={"a1"})
    priority = airing(2, Tier.PRIORITY, pending={"a1"})
    decisions = arbitrate(snap(normal, priority), NOW)
    (play,) = plays(decisions)
    assert play.airing == 2
    assert Queued(1, "a1", 2) in decisions  # the normal one waits for it, named in the log


def test_two_normal_items_never_overlap_and_keep_their_order() -> None:
    first = airing(1, pending={"a1", "a2"}, duration=20)
    second = airing(2, pending={"a1"})
    decisions = arbitrate(snap(first, second), NOW)
    assert [p.airing for p in plays(decisions)] == [1]
    assert Queued(2, "a1", 1) in decisions


def test_a_waiting_item_reserves_its_clusters_so_a_later_one_cannot_slip_in() -> None:
    busy = airing(1, active={"a1": (NOW - 1, NOW + 60)})
    waiting = airing(2, pending={"a1", "a2"})  # must wait for a1, so a2 is reserved too
    later = airing(3, pending={"a2"})
    decisions = arbitrate(snap(busy, waiting, later), NOW)
    assert plays(decisions) == []
    assert Queued(2, "a1", 1) in decisions


def test_an_item_starts_once_its_last_cluster_is_free_if_that_is_soon() -> None:
    busy = airing(1, active={"a1": (NOW - 9, NOW + 1.0 + DISPATCH_SLACK_S)})  # a1 free in 1.25 s
    waiting = airing(2, pending={"a1", "a2"})
    (play,) = plays(arbitrate(snap(busy, waiting), NOW))
    assert play.airing == 2 and play.start == NOW + 1.0 + DISPATCH_SLACK_S + POLICY.gap_s


def test_an_item_still_rendering_keeps_its_place() -> None:
    hold = Hold(1, Tier.NORMAL, frozenset({"a1"}))
    later = airing(2, pending={"a1", "a2"})
    assert plays(arbitrate(snap(later, holds=[hold]), NOW)) == []
    # A higher tier is not held back by a rendering normal item.
    urgent = airing(3, Tier.PRIORITY, pending={"a1"})
    assert [p.airing for p in plays(arbitrate(snap(urgent, holds=[hold]), NOW))] == [3]


# ------------------------------------------------------------------ emergencies


def test_an_emergency_interrupts_what_plays_and_stops_what_has_not_started() -> None:
    playing = airing(1, active={"a1": (NOW - 5, NOW + 5)})
    sent = airing(2, Tier.PRIORITY, active={"a2": (NOW + 1, NOW + 11)})
    emergency = airing(3, Tier.EMERGENCY, pending={"a1", "a2"})
    decisions = arbitrate(snap(playing, sent, emergency), NOW)
    takeover = NOW + POLICY.emergency_lead_s
    assert Interrupt(1, "a1", 3, started=True, until=takeover) in decisions
    assert Interrupt(2, "a2", 3, started=False, until=takeover) in decisions
    assert Play(3, ("a1", "a2"), NOW + POLICY.emergency_lead_s) in decisions
    # The interrupted items are decided before the emergency's play (stops go out first).
    assert decisions.index(Play(3, ("a1", "a2"), takeover)) > max(
        i for i, d in enumerate(decisions) if isinstance(d, Interrupt)
    )


def test_an_emergency_follows_a_running_emergency_instead_of_cutting_it() -> None:
    first = airing(1, Tier.EMERGENCY, active={"a1": (NOW - 1, NOW + 20)})
    second = airing(2, Tier.EMERGENCY, pending={"a1"})
    decisions = arbitrate(snap(first, second), NOW)
    assert not any(isinstance(d, Interrupt) for d in decisions)
    assert Play(2, ("a1",), NOW + 20 + POLICY.gap_s) in decisions
    assert Queued(2, "a1", 1) in decisions


def test_an_item_interrupted_before_it_started_waits_behind_the_emergency() -> None:
    sent = airing(1, active={"a1": (NOW + 1, NOW + 11)})
    emergency = airing(2, Tier.EMERGENCY, pending={"a1"}, duration=30)
    decisions = arbitrate(snap(sent, emergency), NOW)
    # Put back in the queue on a1 in the same pass: it waits for the emergency, it does not replay.
    assert [p.airing for p in plays(decisions)] == [2]
    assert Queued(1, "a1", 2) in decisions


# ------------------------------------------------------------------ quiet hours and offline


def test_quiet_hours_hold_normal_items_but_not_priority_or_emergency() -> None:
    zones = ZoneMap(ZONES.speaker_zone, ZONES.members, {"thon-1": ("09:00", "11:00"), "thon-2": (None, None)})
    normal = airing(1, pending={"a1", "b1"})
    decisions = arbitrate(snap(normal, zones=zones), NOW)
    end = datetime(2026, 3, 16, 11, 0, tzinfo=HCM).timestamp()
    assert Wait(1, "a1", "quiet", "thon-1", end) in decisions
    assert [p.speakers for p in plays(decisions)] == [("b1",)]
    for tier in (Tier.PRIORITY, Tier.EMERGENCY):
        assert plays(arbitrate(snap(airing(2, tier, pending={"a1"}), zones=zones), NOW))[0].speakers == (
            "a1",
        )


def test_an_offline_cluster_waits_and_the_others_go_ahead() -> None:
    decisions = arbitrate(snap(airing(1, pending={"a1", "b1"}), online={"b1"}), NOW)
    assert Wait(1, "a1", "offline") in decisions
    assert plays(decisions) == [Play(1, ("b1",), NOW + 2.0)]


# ------------------------------------------------------------------ validity and receipts


def test_waiting_past_validity_expires_and_is_not_dispatched() -> None:
    late = airing(1, pending={"a1"}, valid_until=NOW - 1)
    decisions = arbitrate(snap(late), NOW)
    assert decisions == [Expire(1, ("a1",))]


def test_a_silent_cluster_after_the_planned_end_is_a_missing_receipt_and_frees_it() -> None:
    silent = airing(1, active={"a1": (NOW - 100, NOW - 31)})
    waiting = airing(2, pending={"a1"})
    decisions = arbitrate(snap(silent, waiting), NOW)
    assert NoReceipt(1, "a1") in decisions
    assert Play(2, ("a1",), NOW + 2.0) in decisions


def test_validity_of_a_normal_item_extends_past_the_quiet_hours_that_hold_it() -> None:
    zones = ZoneMap(ZONES.speaker_zone, ZONES.members, {"thon-1": ("21:00", "05:00"), "thon-2": (None, None)})
    at_22 = datetime(2026, 3, 16, 22, 0, tzinfo=HCM).timestamp()
    five = datetime(2026, 3, 17, 5, 0, tzinfo=HCM).timestamp()
    assert validity_end(Tier.NORMAL, at_22, ["a1"], zones, POLICY, 3600) == five + 3600
    assert validity_end(Tier.PRIORITY, at_22, ["a1"], zones, POLICY, 3600) == at_22 + 3600
    assert validity_end(Tier.NORMAL, at_22, ["b1"], zones, POLICY, 3600) == at_22 + 3600


def test_arbitration_reads_the_airings_and_never_changes_them() -> None:
    a = airing(1, active={"a1": (NOW - 5, NOW + 5)})
    e = airing(2, Tier.EMERGENCY, pending={"a1"})
    before = (dict(a.active), set(a.pending), dict(e.active), set(e.pending))
    arbitrate(snap(a, e), NOW)
    assert (dict(a.active), set(a.pending), dict(e.active), set(e.pending)) == before


# ------------------------------------------------------------------ stream items (relays, live)


def stream(
    id: int,
    end_at: float | None,
    tier: Tier = Tier.NORMAL,
    pending: set[str] | None = None,
    active: dict[str, tuple[float, float]] | None = None,
    min_lead: float = 0.0,
) -> Airing:
    return Airing(
        id=id,
        tier=tier,
        order=id,
        title=f"tiếp sóng {id}",
        audio_key="",
        audio=None,
        duration=0.0,
        valid_until=end_at if end_at is not None else NOW + 3600,
        whole_zones=set(),
        pending=set(pending or ()),
        active=dict(active or {}),
        stream=f"ch{id}",
        kind="relay",
        end_at=end_at,
        min_lead=min_lead,
    )


def test_a_relay_holds_its_clusters_until_its_fixed_end_and_waits_for_its_frames() -> None:
    relay = stream(1, end_at=NOW + 1800, pending={"a1", "b1"}, min_lead=2.3)
    (play,) = plays(arbitrate(snap(relay), NOW))
    assert play.start == NOW + 2.3  # its playout delay, not the shorter lead
    # A normal item after it waits for the relay's end, not for a duration from its start.
    after = arbitrate(
        snap(stream(1, NOW + 1800, active={"a1": (NOW, NOW + 1800)}), airing(2, pending={"a1"})), NOW
    )
    assert [d for d in after if isinstance(d, Queued)] == [Queued(2, "a1", 1)]
    later = arbitrate(
        snap(stream(1, NOW + 1800, active={"a1": (NOW, NOW + 1800)}), airing(2, pending={"a1"})), NOW + 1800
    )
    assert plays(later)[0].start == NOW + 1800 + POLICY.lead_s


def test_an_emergency_interrupts_a_relay_which_then_resumes_at_the_live_point_for_what_remains() -> None:
    end = NOW + 600
    relay = stream(1, end_at=end, active={"a1": (NOW - 60, end), "a2": (NOW - 60, end)})
    alarm = airing(2, tier=Tier.EMERGENCY, pending={"a1", "a2"}, duration=30.0)
    decisions = arbitrate(snap(relay, alarm), NOW)
    cuts = [d for d in decisions if isinstance(d, Interrupt)]
    assert {(c.airing, c.speaker, c.started) for c in cuts} == {(1, "a1", True), (1, "a2", True)}
    # The nodes report it preempted: the relay is pending again on both clusters, the emergency plays.
    emergency_end = cuts[0].until + 30.0
    resumed = stream(1, end_at=end, pending={"a1", "a2"})
    playing = airing(
        2,
        tier=Tier.EMERGENCY,
        active={"a1": (cuts[0].until, emergency_end), "a2": (cuts[0].until, emergency_end)},
    )
    waiting = arbitrate(snap(resumed, playing), NOW + 10)
    assert not plays(waiting)  # nothing slips in under the emergency
    (again,) = plays(arbitrate(snap(resumed, airing(2, tier=Tier.EMERGENCY)), emergency_end + 0.5))
    # It starts again after the emergency (gap and lead), with the same fixed end: the live point.
    assert again.airing == 1 and emergency_end < again.start < end
    assert resumed.end_for(again.start) == end and resumed.remaining(again.start) < 600 - 30


def test_a_relay_with_less_than_the_gap_left_is_not_aired_again_and_expires() -> None:
    end = NOW + 2.8
    relay = stream(1, end_at=end, pending={"a1"}, min_lead=2.3)  # a relay's 2 s delay + margin
    assert not plays(arbitrate(snap(relay), NOW))  # 2.8 s left, starts at NOW + 2.3: nothing worth it
    assert arbitrate(snap(relay), end + 0.1) == [Expire(1, ("a1",))]


def test_a_live_item_without_an_end_holds_its_clusters_until_it_ends() -> None:
    live = stream(1, end_at=None, active={"a1": (NOW, NOW + 4 * 3600)})
    assert live.end_for(NOW) == NOW + 4 * 3600
    queued = arbitrate(snap(live, airing(2, pending={"a1"})), NOW + 100)
    assert [d for d in queued if isinstance(d, Queued)] == [Queued(2, "a1", 1)]


# ------------------------------------------------------------------ emergency lead from measurements


def test_the_emergency_lead_follows_the_slowest_measured_cluster_above_a_floor() -> None:
    policy = Policy(lead_s=2.0, emergency_lead_s=0.8, lead_per_1000_s=0.0, tz=HCM, emergency_lead_floor_s=0.3)
    clusters = ["a1", "a2"]
    # A LAN: every cluster answers in a few ms -> the floor.
    assert policy.emergency_lead(clusters, {"a1": 0.004, "a2": 0.006}) == 0.3
    # A slow 4G cluster: 1.5 x its delivery time + the margin.
    assert policy.emergency_lead(clusters, {"a1": 0.004, "a2": 0.9}) == 0.9 * 1.5 + 0.1
    # A cluster never measured: the configured emergency lead stands in for it.
    assert policy.emergency_lead(clusters, {"a1": 0.004}) == 0.8
    decisions = arbitrate(
        Snapshot(
            airings=[airing(1, tier=Tier.EMERGENCY, pending={"a1", "a2"})],
            holds=[],
            online=EVERYONE,
            zones=ZONES,
            policy=policy,
            delivery_s={"a1": 0.01, "a2": 0.02},
        ),
        NOW,
    )
    assert plays(decisions) == [Play(1, ("a1", "a2"), NOW + 0.3)]


# ------------------------------------------------------------------ emergencies streamed as synthesized


def test_a_streamed_emergency_starts_no_sooner_than_its_frames_are_on_the_wire() -> None:
    alarm = stream(1, end_at=None, tier=Tier.EMERGENCY, pending={"a1", "a2"}, min_lead=0.9)
    relay = stream(2, end_at=NOW + 600, active={"a1": (NOW - 60, NOW + 600)})
    decisions = arbitrate(snap(alarm, relay), NOW)
    assert plays(decisions) == [Play(1, ("a1", "a2"), NOW + 0.9)]  # its delay, not the 0.5 s lead
    assert Interrupt(2, "a1", 1, True, NOW + 0.9) in decisions


def test_an_emergency_behind_one_without_an_end_waits_for_its_end_instead_of_a_far_start() -> None:
    first = stream(1, end_at=None, tier=Tier.EMERGENCY, active={"a1": (NOW - 5, NOW - 5 + 4 * 3600)})
    second = airing(2, tier=Tier.EMERGENCY, pending={"a1", "a2"}, duration=20.0)
    decisions = arbitrate(snap(first, second), NOW)
    assert plays(decisions) == []  # not sent with a start four hours away
    assert Queued(2, "a1", 1) in decisions
    # Once the first one's end is known, the second follows it after the gap.
    first.end_at = NOW + 12.0
    first.active["a1"] = (NOW - 5, NOW + 12.0)
    (play,) = plays(arbitrate(snap(first, second), NOW))
    assert play == Play(2, ("a1", "a2"), NOW + 12.0 + POLICY.gap_s)


def test_a_live_stream_starts_after_its_playout_delay_not_the_file_lead() -> None:
    """Live speech must not wait the lead nodes need to fetch a file (2 s here): its frames are
    on the wire after its delay and margin; the speaker's first words sound then."""
    live = stream(1, end_at=None, tier=Tier.PRIORITY, pending={"a1", "b1"}, min_lead=0.9)
    assert plays(arbitrate(snap(live), NOW)) == [Play(1, ("a1", "b1"), NOW + 0.9)]

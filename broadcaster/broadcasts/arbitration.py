"""Who plays what, and when: a pure function of a snapshot and the time.

``arbitrate(snapshot, now)`` reads the airings in progress (it never changes them) and returns the
decisions the dispatcher applies, in order. No database, no threads, no clock of its own, so every
rule below is unit-tested with plain values (``tests/test_arbitration.py``).

Policy, per cluster:

- **Synchronized start.** An item is dispatched to all its (online, free) target clusters at once
  with one start a little in the future (``lead_s``, plus ``lead_per_1000_s`` per thousand clusters
  for large fleets), so neighbouring clusters do not echo.
- **No overlap, FIFO by tier.** A cluster plays one item at a time. Waiting items go by tier
  (emergency, priority, normal), then by arrival. An item waits until *all* its target clusters are
  free, then starts on all of them together after ``gap_s`` of silence. While it waits its clusters
  are reserved: a later item of the same or a lower tier cannot slip in before it. An earlier item
  that is due but still rendering (a :class:`Hold`) keeps its place the same way.
- **Stream items** (relays, live speech) hold their clusters from their start to their fixed end
  (``Airing.end_for``), whatever their start; they start as soon as their frames are on the wire
  (``Airing.min_lead``, their playout delay and a margin), not after ``lead_s``: there is no file
  to fetch, and live speech must not wait. One interrupted by an emergency is re-aired afterwards at the live
  point for the time that remains; once less than ``gap_s`` remains it is not re-aired.
- **Open ends.** An item whose end is not known yet (live speech, an emergency streamed as it is
  synthesized) holds its clusters until it is: an emergency behind one waits for its end instead
  of being sent with a start hours away (normal items already wait, being reserved).
- **Emergency preempts.** An emergency is dispatched at once, with a lead derived from the
  measured delivery time of its clusters (``Snapshot.delivery_s``: round trips and past deliveries,
  see :meth:`Policy.emergency_lead`) above a floor: nodes interrupt
  whatever non-emergency item plays when it starts (:class:`Interrupt` with ``started=True``); items
  sent but not yet started on those clusters are stopped and put back in the queue
  (``started=False``). A second emergency follows a running one: nodes never cut an emergency.
- **Quiet hours** hold *normal* items on the clusters of a zone until they end (:class:`Wait`).
- **Offline clusters** keep waiting (:class:`Wait`) until they reconnect or the item's validity
  ends (:class:`Expire`).
- **Receipts.** A cluster silent ``receipt_grace_s`` after an item's planned end gets
  :class:`NoReceipt`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal
from zoneinfo import ZoneInfo

from broadcaster.broadcasts.quiet import quiet_until
from broadcaster.broadcasts.state import Airing, Hold
from broadcaster.domain import Tier
from broadcaster.fleet.targets import ZoneMap

# A dispatch whose common start is at most this much later than the earliest possible one goes now
# (waiting a quarter of a second for the last busy cluster beats reserving them all).
DISPATCH_SLACK_S = 0.25


@dataclass(frozen=True)
class Policy:
    """The timing rules (from ``BroadcastsConfig``) and the controller's time zone."""

    lead_s: float = 2.0
    emergency_lead_s: float = 0.8
    lead_per_1000_s: float = 3.0
    gap_s: float = 1.0
    receipt_grace_s: float = 30.0
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Ho_Chi_Minh"))
    emergency_lead_floor_s: float = 0.3
    delivery_factor: float = 1.5
    delivery_margin_s: float = 0.1

    def emergency_lead(self, clusters: Sequence[str], delivery_s: Mapping[str, float]) -> float:
        """Lead of an emergency to ``clusters``: the slowest measured delivery among them (times
        ``delivery_factor``, plus ``delivery_margin_s``), at least ``emergency_lead_floor_s``; a
        cluster never measured counts as ``emergency_lead_s``. Plus ``lead_extra`` for big fleets."""
        measured = [delivery_s[c] for c in clusters if c in delivery_s]
        need = max(measured, default=0.0) * self.delivery_factor + self.delivery_margin_s
        if len(measured) < len(clusters):
            need = max(need, self.emergency_lead_s)
        return max(self.emergency_lead_floor_s, need) + self.lead_extra(len(clusters))

    def lead_extra(self, clusters: int) -> float:
        """More clusters need longer to receive the command and fetch the audio before the common
        start: ``lead_per_1000_s`` per thousand (0.03 s for a commune of 9, 6 s for 2,000)."""
        return self.lead_per_1000_s * clusters / 1000


@dataclass(frozen=True)
class Snapshot:
    airings: Sequence[Airing]
    holds: Sequence[Hold]
    online: frozenset[str]
    zones: ZoneMap
    policy: Policy
    # Measured seconds for a command to reach each cluster and the cluster to be ready (round trips
    # from its health, deliveries of earlier items); clusters never measured are absent.
    delivery_s: Mapping[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------ decisions


@dataclass(frozen=True)
class Play:
    """Send the item to ``speakers`` to start together at ``start``."""

    airing: int
    speakers: tuple[str, ...]
    start: float


@dataclass(frozen=True)
class Wait:
    """The item waits on ``speaker``: it is offline, or in its zone's quiet hours until ``until``."""

    airing: int
    speaker: str
    reason: Literal["offline", "quiet"]
    zone: str | None = None
    until: float | None = None


@dataclass(frozen=True)
class Queued:
    """The item waits for ``blocker`` to finish on ``speaker``."""

    airing: int
    speaker: str
    blocker: int


@dataclass(frozen=True)
class Interrupt:
    """Emergency ``by`` takes ``speaker`` from ``airing``: it cuts it when it starts (``started``),
    or, when ``airing`` was sent but has not started there, stops it and puts it back in the queue."""

    airing: int
    speaker: str
    by: int
    started: bool
    until: float  # when the emergency takes over the cluster


@dataclass(frozen=True)
class Expire:
    """The item's validity ended while ``speakers`` were still waiting for it."""

    airing: int
    speakers: tuple[str, ...]


@dataclass(frozen=True)
class NoReceipt:
    """``speaker`` never said it finished the item, ``receipt_grace_s`` after its planned end."""

    airing: int
    speaker: str


Decision = Play | Wait | Queued | Interrupt | Expire | NoReceipt


# ------------------------------------------------------------------ the function


class _Board:
    """Who holds which cluster until when, as the decisions of one pass accumulate."""

    def __init__(self, airings: Iterable[Airing]) -> None:
        # cluster -> {airing id: (start, end, tier)}
        self.slots: dict[str, dict[int, tuple[float, float, Tier]]] = {}
        airings = list(airings)
        # Stream items still without an end (their slot's end is only a bound).
        self.open_ended = {a.id for a in airings if a.stream is not None and a.end_at is None}
        for airing in airings:
            for speaker, (start, end) in airing.active.items():
                self.take(speaker, airing.id, start, end, airing.tier)

    def take(self, speaker: str, airing: int, start: float, end: float, tier: Tier) -> None:
        self.slots.setdefault(speaker, {})[airing] = (start, end, tier)

    def release(self, speaker: str, airing: int) -> None:
        self.slots.get(speaker, {}).pop(airing, None)

    def busy(self, speaker: str, exclude: int, emergencies_only: bool = False) -> tuple[float, int | None]:
        """(time the cluster is free, id of the item it waits for)."""
        until, blocker = 0.0, None
        for aid, (_, end, tier) in self.slots.get(speaker, {}).items():
            if aid == exclude or (emergencies_only and tier is not Tier.EMERGENCY):
                continue
            if end > until:
                until, blocker = end, aid
        return until, blocker


def _quiet_end(snapshot: Snapshot, speaker: str, now: float) -> tuple[str | None, float | None]:
    zone = snapshot.zones.zone_of(speaker)
    if zone is None:
        return None, None
    start, end = snapshot.zones.quiet.get(zone, (None, None))
    until = quiet_until(start, end, datetime.fromtimestamp(now, UTC), snapshot.policy.tz)
    return zone, (until.timestamp() if until is not None else None)


def _timeouts(
    snapshot: Snapshot, now: float
) -> tuple[list[Decision], dict[int, set[str]], set[tuple[int, str]]]:
    """Expired waits and missing receipts; returns them with the pending sets and the active
    slots that remain once they are applied."""
    decisions: list[Decision] = []
    pending: dict[int, set[str]] = {}
    gone: set[tuple[int, str]] = set()
    grace = snapshot.policy.receipt_grace_s
    for airing in snapshot.airings:
        waiting = set(airing.pending)
        if waiting and now > airing.valid_until:
            decisions.append(Expire(airing.id, tuple(sorted(waiting))))
            waiting = set()
        pending[airing.id] = waiting
        for speaker, (_, end) in sorted(airing.active.items()):
            if now > end + grace:
                decisions.append(NoReceipt(airing.id, speaker))
                gone.add((airing.id, speaker))
    return decisions, pending, gone


def arbitrate(snapshot: Snapshot, now: float) -> list[Decision]:
    """The decisions for this instant, in the order to apply them (see the module docstring)."""
    decisions, pending, gone = _timeouts(snapshot, now)
    policy = snapshot.policy
    board = _Board(snapshot.airings)
    for aid, speaker in gone:
        board.release(speaker, aid)
    started_on: dict[int, dict[str, float]] = {
        a.id: {s: start for s, (start, _) in a.active.items() if (a.id, s) not in gone}
        for a in snapshot.airings
    }
    reserved: set[str] = set()
    queue: list[tuple[int, int, Airing | Hold]] = [(-a.tier.rank, a.order, a) for a in snapshot.airings]
    queue += [(-h.tier.rank, h.id, h) for h in snapshot.holds]
    for _, _, entry in sorted(queue, key=lambda q: (q[0], q[1])):
        if isinstance(entry, Hold):
            reserved.update(entry.targets)
            continue
        airing = entry
        waiting = pending.get(airing.id, set())
        if not waiting or airing.cancelled:
            continue
        group: list[str] = []
        for speaker in sorted(waiting):
            if speaker not in snapshot.online:
                decisions.append(Wait(airing.id, speaker, "offline"))
                continue
            if airing.tier is Tier.NORMAL:
                zone, until = _quiet_end(snapshot, speaker, now)
                if until is not None:
                    decisions.append(Wait(airing.id, speaker, "quiet", zone, until))
                    continue
            group.append(speaker)
        if not group:
            continue
        if airing.tier is Tier.EMERGENCY:
            lead = policy.emergency_lead(group, snapshot.delivery_s)
            decisions.extend(_emergency(airing, group, now, lead, policy, board, started_on, pending))
            continue
        if reserved.intersection(group):
            # An earlier item waits for (or renders for) some of these clusters: wait for it, all
            # together, so the item still starts at one instant everywhere.
            reserved.update(group)
            continue
        free, blockers = 0.0, {}
        for speaker in group:
            until, blocker = board.busy(speaker, airing.id)
            if until > now - policy.gap_s and blocker is not None:
                blockers[speaker] = blocker
            free = max(free, until)
        # A stream's frames carry their own timing: it needs only its playout delay (``min_lead``),
        # not the lead nodes need to fetch a file before a synchronized start.
        lead = airing.min_lead if airing.stream is not None else policy.lead_s
        earliest = now + lead + policy.lead_extra(len(group))
        start = max(earliest, free + policy.gap_s) if free else earliest
        if airing.stream is not None and airing.remaining(start) < policy.gap_s:
            continue  # what remains of a stream is too short to air; its validity ends it
        if start - earliest <= DISPATCH_SLACK_S:
            decisions.append(Play(airing.id, tuple(group), start))
            for speaker in group:
                board.take(speaker, airing.id, start, airing.end_for(start), airing.tier)
        else:
            # Wait for all of them together; meanwhile nobody later may slip in before it.
            reserved.update(group)
            decisions.extend(Queued(airing.id, s, b) for s, b in sorted(blockers.items()))
    return decisions


def _emergency(
    airing: Airing,
    group: list[str],
    now: float,
    lead: float,
    policy: Policy,
    board: _Board,
    started_on: dict[int, dict[str, float]],
    pending: dict[int, set[str]],
) -> list[Decision]:
    """Interrupt everything but another emergency, which it follows (nodes do the same)."""
    out: list[Decision] = []
    # A stream needs its frames on the wire before it starts (its playout delay).
    lead = max(lead, airing.min_lead)
    start = now + lead
    waits_for_end = False
    for speaker in group:
        until, blocker = board.busy(speaker, airing.id, emergencies_only=True)
        if until + policy.gap_s > start:
            start = until + policy.gap_s
            if blocker is not None:
                out.append(Queued(airing.id, speaker, blocker))
                waits_for_end = waits_for_end or blocker in board.open_ended
    if waits_for_end:
        # Behind an emergency whose end is not known yet: wait until it is (sending now would
        # start it at the bound, hours away); its clusters stay the other emergency's meanwhile.
        return out
    takeover = now + lead
    for speaker in group:
        for other_id, (slot_start, _, tier) in sorted(board.slots.get(speaker, {}).items()):
            if other_id == airing.id or tier is Tier.EMERGENCY:
                continue
            began = started_on.get(other_id, {}).get(speaker, slot_start) <= now
            out.append(Interrupt(other_id, speaker, airing.id, began, takeover))
            if began:
                board.take(speaker, other_id, slot_start, takeover, tier)
            else:
                board.release(speaker, other_id)
                pending.setdefault(other_id, set()).add(speaker)
    out.append(Play(airing.id, tuple(group), start))
    for speaker in group:
        board.take(speaker, airing.id, start, airing.end_for(start), airing.tier)
    return out


def validity_end(
    tier: Tier, base: float, speakers: Iterable[str], zones: ZoneMap, policy: Policy, valid_s: float
) -> float:
    """Until when an item due at ``base`` may still air: ``valid_s`` after it is due, and for a
    normal item after the quiet hours that hold it on any of its clusters, so a notice submitted at
    22:00 airs after the quiet hours instead of being refused."""
    latest = base
    if tier is Tier.NORMAL:
        when = datetime.fromtimestamp(base, UTC)
        for zone in {zones.zone_of(s) for s in speakers} - {None}:
            start, end = zones.quiet.get(zone, (None, None))  # type: ignore[arg-type]
            until = quiet_until(start, end, when, policy.tz)
            if until is not None:
                latest = max(latest, until.timestamp())
    return latest + valid_s


__all__ = [
    "DISPATCH_SLACK_S",
    "Decision",
    "Expire",
    "Interrupt",
    "NoReceipt",
    "Play",
    "Policy",
    "Queued",
    "Snapshot",
    "Wait",
    "arbitrate",
    "validity_end",
]

"""What goes out to the clusters at each tick: arbitration's decisions applied to the airings.

:class:`DecisionApplier` builds the :class:`~broadcaster.broadcasts.arbitration.Snapshot` of the
airings in progress, asks :func:`~broadcaster.broadcasts.arbitration.arbitrate` what to do, and
applies the answer on the dispatcher thread, inside its batch transaction:

- ``Play``: the play (or stream) command goes out, the deliveries become ``sent``;
- ``Interrupt``: an emergency takes a cluster. An item already playing there is marked preempted
  (the node cuts it when the emergency starts); one sent but not started is stopped and put back
  in the queue (requeued, with a new attempt number) once the batch of decisions is read;
- ``Wait`` (offline, quiet hours), ``Queued``, ``Expire`` and ``NoReceipt``: written to the log
  once per airing and cluster, with the deliveries' reasons.

It also keeps the measured delivery time per cluster (from the ``scheduled`` receipts) that the
emergency lead is derived from, and re-sends a stream to a cluster that comes back online.
The airings themselves (which exist, when they start and end) belong to
:class:`~broadcaster.broadcasts.lifecycle.Lifecycle`, which shares its ``airings`` dict with this.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from sqlalchemy.orm import Session

from broadcaster.broadcasts.arbitration import (
    Decision,
    Expire,
    Interrupt,
    NoReceipt,
    Play,
    Policy,
    Queued,
    Snapshot,
    Wait,
    arbitrate,
)
from broadcaster.broadcasts.commands import CommandSender
from broadcaster.broadcasts.ledger import NO_RECEIPT, Ledger, utc
from broadcaster.broadcasts.ports import FleetPort
from broadcaster.broadcasts.state import Airing, Hold
from broadcaster.broadcasts.streams import StreamItems
from broadcaster.fleet.targets import TargetResolver, ZoneMap
from broadcaster.models import Broadcast, DeliveryState

_LOGGER = logging.getLogger(__name__)

# A "ready" measure outside [0, this) seconds is a clock step or a stale receipt, not a delivery.
_READY_MAX_S = 60


class DecisionApplier:
    """See the module docstring. Only the dispatcher thread calls it."""

    def __init__(
        self,
        *,
        airings: dict[int, Airing],
        ledger: Ledger,
        sender: CommandSender,
        streams: StreamItems,
        targets: TargetResolver,
        fleet: FleetPort | None,
        policy: Policy,
        clock: Callable[[], float],
    ) -> None:
        self.airings = airings  # the lifecycle's: shared, never replaced
        self.ledger = ledger
        self.sender = sender
        self.streams = streams
        self.targets = targets
        self.fleet = fleet
        self.policy = policy
        self.clock = clock
        # Measured seconds from a command's publish to the cluster being ready (its "scheduled"
        # receipt): a moving average per cluster, for the emergency lead (arbitration).
        self.delivery_s: dict[str, float] = {}

    # ------------------------------------------------------------------ delivery times

    def note_ready(self, speaker: str, seconds: float) -> None:
        """A cluster was ready ``seconds`` after its command went out (moving average)."""
        if not 0 <= seconds < _READY_MAX_S:
            return
        old = self.delivery_s.get(speaker)
        # 0.7 of the past: one slow delivery moves the lead a little, a lasting change in a few.
        self.delivery_s[speaker] = seconds if old is None else 0.7 * old + 0.3 * seconds

    def delivery_estimates(self) -> dict[str, float]:
        """Per cluster: the slower of its measured readiness and its clock round trip (health)."""
        estimates = dict(self.delivery_s)
        round_trips = getattr(self.fleet, "round_trips_s", None)
        if round_trips is not None:
            for speaker, rtt in round_trips().items():
                estimates[speaker] = max(estimates.get(speaker, 0.0), rtt)
        return estimates

    # ------------------------------------------------------------------ a tick

    def arbitrate(self, session: Session, holds: Sequence[Hold], now: float) -> None:
        """One round of arbitration over the airings in progress, applied. ``holds``: items due
        but still rendering (they keep their place in the queue)."""
        zones = self.targets.zone_map(session)
        snapshot = Snapshot(
            airings=list(self.airings.values()),
            holds=holds,
            online=frozenset(self.fleet.online_ids() if self.fleet is not None else ()),
            zones=zones,
            policy=self.policy,
            delivery_s=self.delivery_estimates(),
        )
        self.apply(session, arbitrate(snapshot, now), now)

    def rejoin(self, session: Session, speaker: str) -> None:
        """A cluster came back online: stream items it should be playing are sent to it again (a
        restarted node joins at the live point; a node that still plays sees a duplicate)."""
        zones = self.targets.zone_map(session)
        for airing in self.airings.values():
            if airing.stream is None or speaker not in airing.active or airing.cancelled:
                continue
            start, end = airing.active[speaker]
            if end <= self.clock():
                continue
            self.sender.stream(airing, [speaker], start, zones, lone=True)

    # ------------------------------------------------------------------ applying decisions

    def apply(self, session: Session, decisions: list[Decision], now: float) -> None:
        zones = self.targets.zone_map(session)
        stops: dict[tuple[int, int], set[str]] = {}
        for decision in decisions:
            airing = self.airings.get(decision.airing)
            if airing is None:
                continue
            if isinstance(decision, Play):
                self._flush_stops(session, stops, zones, now)
                self._play(session, airing, decision, zones)
            elif isinstance(decision, Interrupt):
                self._interrupt(session, airing, decision, stops)
            elif isinstance(decision, Wait):
                self._wait(session, airing, decision)
            elif isinstance(decision, Queued):
                key = f"{decision.speaker}:{decision.blocker}"
                if self._once(airing, "queued", key):
                    message = (
                        f"Bản tin #{airing.id}: xếp hàng sau #{decision.blocker} trên {decision.speaker}"
                    )
                    self.ledger.log(session, "queued", message, airing.id, decision.speaker, now=now)
            elif isinstance(decision, Expire):
                self._expire(session, airing, decision, now)
            elif isinstance(decision, NoReceipt):
                airing.active.pop(decision.speaker, None)
                self.ledger.end_open_attempts(session, airing.id, decision.speaker, "failed", NO_RECEIPT)
                self.ledger.set_delivery(
                    session,
                    airing.id,
                    decision.speaker,
                    DeliveryState.FAILED,
                    reason=NO_RECEIPT,
                    only_open=True,
                )
                message = f"Bản tin #{airing.id}: {decision.speaker} không báo đã phát xong"
                self.ledger.log(session, "no_receipt", message, airing.id, decision.speaker, now=now)
        self._flush_stops(session, stops, zones, now)

    @staticmethod
    def _once(airing: Airing, kind: str, key: str) -> bool:
        if (kind, key) in airing.logged:
            return False
        airing.logged.add((kind, key))
        return True

    def _play(self, session: Session, airing: Airing, play: Play, zones: ZoneMap) -> None:
        if airing.stream is not None:
            self.sender.stream(airing, play.speakers, play.start, zones)
            self.streams.started(airing, play.start)
        else:
            self.sender.play(airing, play.speakers, play.start, zones)
        end = airing.end_for(play.start)
        sent_at = self.clock()
        for speaker in play.speakers:
            airing.sent_at[speaker] = sent_at
            airing.pending.discard(speaker)
            airing.active[speaker] = (play.start, end)
            self.ledger.set_delivery(session, airing.id, speaker, DeliveryState.SENT, reason=None, force=True)
        bc = session.get(Broadcast, airing.id)
        if bc is not None:
            self.ledger.set_started(bc, play.start)
        airing.started = True
        when = self.ledger.local(play.start, seconds=True)
        what = {"relay": "Tiếp sóng", "live": "Phát trực tiếp"}.get(airing.kind, "Bản tin")
        message = f"{what} #{airing.id} gửi tới {len(play.speakers)} cụm loa, bắt đầu lúc {when}"
        self.ledger.log(session, "sent", message, airing.id, now=sent_at)

    def _interrupt(
        self, session: Session, airing: Airing, cut: Interrupt, stops: dict[tuple[int, int], set[str]]
    ) -> None:
        if cut.started:
            airing.preempted_by[cut.speaker] = cut.by
            message = f"Bản tin #{airing.id} bị ngắt bởi bản tin khẩn cấp #{cut.by} trên {cut.speaker}"
            self.ledger.log(session, "preempted", message, airing.id, cut.speaker, now=self.clock())
            # The node interrupts it when the emergency starts; the cluster is the emergency's then.
            start, _ = airing.active.get(cut.speaker, (cut.until, cut.until))
            airing.active[cut.speaker] = (start, cut.until)
            return
        stops.setdefault((airing.id, cut.by), set()).add(cut.speaker)

    def _flush_stops(
        self, session: Session, stops: dict[tuple[int, int], set[str]], zones: ZoneMap, now: float
    ) -> None:
        """Items sent but not started where an emergency takes over: stop them, put them back."""
        for (aid, by), speakers in sorted(stops.items()):
            airing = self.airings.get(aid)
            if airing is None:
                continue
            self.sender.stop(airing, speakers, f"khẩn cấp #{by}", zones)
            for speaker in sorted(speakers):
                airing.active.pop(speaker, None)
                airing.attempts[speaker] = airing.attempts.get(speaker, 0) + 1
                airing.pending.add(speaker)
                self.ledger.set_delivery(
                    session,
                    aid,
                    speaker,
                    DeliveryState.PENDING,
                    reason=f"hoãn vì bản tin khẩn cấp #{by}",
                    force=True,
                )
            message = f"Bản tin #{aid} hoãn trên {', '.join(sorted(speakers))} vì bản tin khẩn cấp #{by}"
            self.ledger.log(session, "requeued", message, aid, now=now)
        stops.clear()

    def _wait(self, session: Session, airing: Airing, wait: Wait) -> None:
        now = self.clock()
        if wait.reason == "offline":
            if self._once(airing, "offline", wait.speaker):
                message = f"Bản tin #{airing.id}: chờ {wait.speaker} kết nối lại"
                self.ledger.log(session, "waiting", message, airing.id, wait.speaker, now=now)
                self.ledger.set_delivery(
                    session, airing.id, wait.speaker, DeliveryState.PENDING, reason="cụm loa đang mất kết nối"
                )
            return
        if self._once(airing, "held", wait.speaker):
            end = utc(wait.until or now).astimezone(self.policy.tz).strftime("%H:%M")
            reason = f"tạm giữ: giờ yên lặng {wait.zone} đến {end}"
            self.ledger.log(
                session, "held", f"Bản tin #{airing.id}: {reason}", airing.id, wait.speaker, now=now
            )
            self.ledger.set_delivery(session, airing.id, wait.speaker, DeliveryState.PENDING, reason=reason)

    def _expire(self, session: Session, airing: Airing, expire: Expire, now: float) -> None:
        for speaker in expire.speakers:
            held = ("held", speaker) in airing.logged
            reason = "hết hạn trong giờ yên lặng" if held else "cụm loa không kết nối trong thời hạn phát"
            self.ledger.set_delivery(session, airing.id, speaker, DeliveryState.MISSED, reason=reason)
            airing.pending.discard(speaker)
        message = f"Bản tin #{airing.id}: quá hạn với {', '.join(expire.speakers)}"
        self.ledger.log(session, "missed", message, airing.id, now=now)


__all__ = ["DecisionApplier"]

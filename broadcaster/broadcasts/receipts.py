"""Receipts from the nodes (``events``): each moves one delivery, and frees or re-queues a cluster.

Runs on the dispatcher thread, inside its batch transaction. Receipts of an older attempt of an
item on a cluster (``"12"`` after ``"12-r1"`` went out) are stale and ignored. An item interrupted
by an emergency is re-queued on that cluster (aired again from the start once it is free), at most
``max_requeues`` times and only while it is still valid; otherwise its delivery ends ``preempted``.
A stream item (relay, live speech) is re-queued whenever time remains before its end: it resumes
at the live point, for what remains.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from broadcaster.broadcasts.chunks import ChunkServer
from broadcaster.broadcasts.config import BroadcastsConfig
from broadcaster.broadcasts.ledger import Ledger
from broadcaster.broadcasts.state import Airing, parse_slot, parse_wire_id
from broadcaster.broadcasts.views import delivery_state_label
from broadcaster.models import Broadcast, DeliveryState
from speakers.protocol import Event

_LOGGER = logging.getLogger(__name__)

# A node's reported start is trusted only within [command sent - this, now + lead]: its clock may
# be off (a start far in the future would keep the cluster "busy" for ever, one far in the past
# would time it out at once). Nodes correct their clock against ours, so honest reports sit well
# inside; one second leaves room for the offset estimate's error.
START_TOLERANCE_S = 1.0

_FINAL = frozenset({"done", "preempted", "stopped", "failed", "expired"})
_ENDINGS = {
    "stopped": DeliveryState.STOPPED,
    "failed": DeliveryState.FAILED,
    "expired": DeliveryState.EXPIRED,
}


class Receipts:
    """Applies node events to the ledger and to the airings in progress."""

    def __init__(
        self,
        ledger: Ledger,
        airings: dict[int, Airing],
        chunks: ChunkServer,
        config: BroadcastsConfig,
        clock: Callable[[], float],
        note_ready: Callable[[str, float], None] | None = None,
    ) -> None:
        """``note_ready(cluster, seconds)``: how long a cluster took from its play command to
        being ready (the lifecycle's delivery estimates, for the emergency lead)."""
        self.ledger = ledger
        self.airings = airings
        self.chunks = chunks
        self.config = config
        self.clock = clock
        self.events = 0
        # Offline receipts (docs/protocol.md 11.4) of an airing the controller has no record of yet:
        # resolved after the batch commits (the airing is created), then applied again.
        self.unmatched: list[tuple[str, Event]] = []
        self.note_ready = note_ready

    def handle(self, session: Session, speaker: str, event: Event) -> None:
        self.events += 1
        now = self.clock()
        parsed = parse_wire_id(event.broadcast_id)
        bid, attempt = parsed if parsed is not None else (None, 0)
        if event.state == "need_audio":
            self.chunks.want(event)
            return
        if event.state == "error":
            message = f"{speaker} báo lỗi: {event.reason or ''}".strip()
            self.ledger.log(session, "node_error", message, bid, speaker, now=now)
            return
        from_slot = False
        if bid is None and event.slot:
            bid = self._slot_broadcast(session, event.slot)
            if bid is None:
                self.unmatched.append((speaker, event))
                return
            from_slot = True  # the node aired the slot on its own (offline): attempt 0, its record
        if bid is None:
            return
        airing = self.airings.get(bid)
        if from_slot and airing is not None and event.state in _FINAL:
            airing.pending.discard(speaker)  # it aired: no play command for it any more
        if not from_slot and airing is not None and attempt != airing.attempts.setdefault(speaker, attempt):
            _LOGGER.debug("stale receipt %s of %s from %s ignored", event.state, event.broadcast_id, speaker)
            return
        state = event.state
        ledger = self.ledger
        if state == "received":
            ledger.set_delivery(session, bid, speaker, DeliveryState.RECEIVED, only_open=True)
        elif state == "scheduled":
            ledger.set_delivery(session, bid, speaker, DeliveryState.SCHEDULED, only_open=True)
            if airing is not None and speaker in airing.sent_at and self.note_ready is not None:
                self.note_ready(speaker, now - airing.sent_at[speaker])
        elif state == "playing":
            reported = event.started_at or event.ts
            if from_slot:  # aired long ago, on the node's clock estimate: bounded by now only
                started = min(reported, now) if math.isfinite(reported) else now
            else:
                started = self._trusted_start(airing, speaker, reported)
            ledger.set_delivery(
                session, bid, speaker, DeliveryState.PLAYING, only_open=True, started_at=started
            )
            ledger.record_attempt(session, bid, speaker, attempt, started_at=started)
            if airing is not None and speaker in airing.active:
                airing.active[speaker] = (started, airing.end_for(started))
            ledger.mark_playing(session, bid)
        elif state == "done":
            ledger.set_delivery(
                session,
                bid,
                speaker,
                DeliveryState.DONE,
                finished_at=event.ts,
                seconds_played=event.seconds_played,
                rms_dbfs=event.rms_dbfs,
                reason=None,
                force=True,
            )
            ledger.record_attempt(
                session,
                bid,
                speaker,
                attempt,
                outcome="done",
                ended_at=event.ts,
                seconds_played=event.seconds_played,
            )
            if airing is not None:
                airing.active.pop(speaker, None)
            else:
                ledger.refinish(session, bid, now=now)
        elif state == "preempted":
            self._preempted(session, airing, bid, attempt, speaker, event)
        elif state == "stopped" and self._stream_rejoins(session, airing, bid, attempt, speaker, event):
            return
        elif state in _ENDINGS:
            reason = event.reason or (
                airing.cancel_reason if airing is not None and airing.cancelled else None
            )
            ledger.set_delivery(
                session,
                bid,
                speaker,
                _ENDINGS[state],
                reason=reason,
                finished_at=event.ts,
                seconds_played=event.seconds_played,
                only_open=True,
            )
            ledger.record_attempt(
                session,
                bid,
                speaker,
                attempt,
                outcome=state,
                ended_at=event.ts,
                seconds_played=event.seconds_played,
                reason=reason,
            )
            if airing is not None:
                airing.active.pop(speaker, None)
            label = delivery_state_label(_ENDINGS[state].value).lower()
            text = f"Bản tin #{bid} trên {speaker}: {label}" + (f" ({reason})" if reason else "")
            ledger.log(session, "delivery", text, bid, speaker, now=now)

    @staticmethod
    def _slot_broadcast(session: Session, slot: str) -> int | None:
        """The airing recorded for a slot (its schedule and fire time), or None."""
        parsed = parse_slot(slot)
        if parsed is None:
            return None
        return session.scalar(
            select(Broadcast.id).where(Broadcast.schedule_id == parsed[0], Broadcast.fire_time == parsed[1])
        )

    def take_unmatched(self) -> list[tuple[str, Event]]:
        items, self.unmatched = self.unmatched, []
        return items

    def _trusted_start(self, airing: Airing | None, speaker: str, reported: float) -> float:
        """The node's reported start, clamped to [command sent - tolerance, now + lead]."""
        now = self.clock()
        if airing is not None and speaker in airing.sent_at:
            earliest = airing.sent_at[speaker] - START_TOLERANCE_S
        elif airing is not None and speaker in airing.active:
            # Re-read after a restart: the planned start minus the longest lead it could have had.
            earliest = airing.active[speaker][0] - self.config.lead_s - START_TOLERANCE_S
        else:
            earliest = now - (airing.duration if airing is not None else 0.0) - self.config.receipt_grace_s
        latest = now + self.config.lead_s
        if not math.isfinite(reported):
            reported = now
        clamped = min(max(reported, earliest), latest)
        if clamped != reported:
            _LOGGER.warning(
                "%s reported a start %.1f s off the plausible range; using %s",
                speaker,
                reported - clamped,
                self.ledger.local(clamped, seconds=True),
            )
        return clamped

    def _stream_rejoins(
        self, session: Session, airing: Airing | None, bid: int, attempt: int, speaker: str, event: Event
    ) -> bool:
        """A node stopped a stream item by itself (it shut down cleanly to restart: we sent no stop,
        the airing is not cancelled). While time remains, the cluster waits for the stream again
        and rejoins at the live point when it is back, as a node that was killed does. True when
        re-queued."""
        now = self.clock()
        if airing is None or airing.stream is None or airing.cancelled or speaker not in airing.active:
            return False
        if now >= min(airing.valid_until, airing.end_for(now)) - self.config.gap_s:
            return False
        self.ledger.record_attempt(
            session,
            bid,
            speaker,
            attempt,
            outcome="stopped",
            ended_at=event.ts,
            seconds_played=event.seconds_played,
            reason=event.reason or "cụm loa dừng",
        )
        airing.active.pop(speaker, None)
        airing.attempts[speaker] = attempt + 1
        airing.pending.add(speaker)
        reason = "cụm loa khởi động lại; sẽ tiếp tục ở thời điểm hiện tại khi kết nối lại"
        self.ledger.set_delivery(
            session,
            bid,
            speaker,
            DeliveryState.PENDING,
            reason=reason,
            seconds_played=event.seconds_played,
            force=True,
        )
        self.ledger.log(session, "requeued", f"#{bid} trên {speaker}: {reason}", bid, speaker, now=now)
        return True

    def _preempted(
        self, session: Session, airing: Airing | None, bid: int, attempt: int, speaker: str, event: Event
    ) -> None:
        now = self.clock()
        by = airing.preempted_by.pop(speaker, None) if airing is not None else None
        cause = f"bản tin khẩn cấp #{by}" if by is not None else (event.reason or "bản tin ưu tiên cao hơn")
        self.ledger.record_attempt(
            session,
            bid,
            speaker,
            attempt,
            outcome="preempted",
            ended_at=event.ts,
            seconds_played=event.seconds_played,
            reason=f"bị ngắt bởi {cause}",
        )
        if airing is not None:
            airing.active.pop(speaker, None)
            count = airing.requeues.get(speaker, 0)
            stream = airing.stream is not None
            if (
                (self.config.requeue_preempted or stream)
                and not airing.cancelled
                and (count < self.config.max_requeues or stream)
                and now < airing.valid_until
            ):
                again = "sẽ tiếp tục ở thời điểm hiện tại" if stream else "sẽ phát lại từ đầu"
                airing.requeues[speaker] = count + 1
                airing.attempts[speaker] = airing.attempts.get(speaker, 0) + 1
                airing.pending.add(speaker)
                self.ledger.set_delivery(
                    session,
                    bid,
                    speaker,
                    DeliveryState.PENDING,
                    reason=f"bị ngắt bởi {cause}; {again}",
                    seconds_played=event.seconds_played,
                    force=True,
                )
                self.ledger.log(
                    session,
                    "requeued",
                    f"Bản tin #{bid} bị ngắt bởi {cause} trên {speaker}; xếp hàng phát lại",
                    bid,
                    speaker,
                    now=now,
                )
                self.ledger.mark_waiting_again(session, bid, f"Bị ngắt bởi {cause}; {again}.")
                return
        self.ledger.set_delivery(
            session,
            bid,
            speaker,
            DeliveryState.PREEMPTED,
            reason=f"bị ngắt bởi {cause}",
            finished_at=event.ts,
            seconds_played=event.seconds_played,
            only_open=True,
        )
        self.ledger.log(
            session, "preempted", f"Bản tin #{bid} bị ngắt bởi {cause} trên {speaker}", bid, speaker, now=now
        )


__all__ = ["START_TOLERANCE_S", "Receipts"]

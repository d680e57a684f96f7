"""The only writer of announcements, broadcasts, deliveries and the decision log.

Every method works inside a transaction its caller owns (the dispatcher's batch, or a short one of
the scheduler) and never commits. The ledger owns the delivery state machine:

    pending -> sent -> received -> scheduled -> playing -> done
       |        `---------------------------------------> failed | preempted | stopped | expired
       `--> missed | cancelled

- progress never goes back (a late "received" never moves a "playing" back);
- ``done`` is final, except that a newer attempt (a re-airing) may start over from ``sent``;
- ``failed`` for want of a receipt is corrected by a late ``done``.

A broadcast that ends (done, partial, interrupted, missed, cancelled, failed) releases the pin on its
audio in the store, however it ended: audio rendered ahead is never pinned for ever.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from broadcaster import domain
from broadcaster.broadcasts.ports import AudioStorePort, pin_owner
from broadcaster.broadcasts.views import broadcast_state_label, delivery_state_label, interruptions
from broadcaster.domain import Tier
from broadcaster.models import (
    Announcement,
    Approval,
    Broadcast,
    BroadcastState,
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    LogEntry,
)

_LOGGER = logging.getLogger(__name__)

TERMINAL = frozenset(
    {
        DeliveryState.DONE,
        DeliveryState.FAILED,
        DeliveryState.PREEMPTED,
        DeliveryState.STOPPED,
        DeliveryState.EXPIRED,
        DeliveryState.MISSED,
        DeliveryState.CANCELLED,
    }
)
# Order of the in-progress delivery states: a late "received" never moves a "playing" back.
PROGRESS = {
    DeliveryState.PENDING: 0,
    DeliveryState.SENT: 1,
    DeliveryState.RECEIVED: 2,
    DeliveryState.SCHEDULED: 3,
    DeliveryState.PLAYING: 4,
}
NO_RECEIPT = "không nhận được xác nhận từ cụm loa"
_UNSET = object()


def utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


@dataclass(frozen=True)
class NewBroadcast:
    """What ``Ledger.insert`` writes: the announcement, its first airing and one delivery per cluster."""

    announcement: domain.Announcement
    tier: Tier
    state: BroadcastState
    approved: bool
    at: float | None
    valid_until: float
    speakers: tuple[str, ...]
    schedule_id: int | None = None
    fire_time: datetime | None = None
    # Stream items (relay, live): the kind, the channel and its name, the planned end.
    kind: str = "announcement"
    channel_id: int | None = None
    source_name: str | None = None
    end_at: float | None = None


class Ledger:
    """See the module docstring. ``store`` is only used to release pins."""

    def __init__(self, store: AudioStorePort, clock_tz: ZoneInfo) -> None:
        self.store = store
        self.tz = clock_tz
        # Delivery rows of the current transaction, one query per broadcast (a receipt storm from
        # 2,000 clusters costs one query per broadcast and batch, not one per receipt).
        self._rows: dict[int, dict[str, Delivery]] = {}
        self._rows_session: Session | None = None

    # ------------------------------------------------------------------ the decision log

    def log(
        self,
        session: Session,
        kind: str,
        message: str,
        broadcast_id: int | None = None,
        speaker: str | None = None,
        *,
        now: float,
    ) -> None:
        session.add(
            LogEntry(ts=utc(now), kind=kind, message=message, broadcast_id=broadcast_id, speaker_id=speaker)
        )
        _LOGGER.info("%s", message)

    def local(self, epoch: float, seconds: bool = False) -> str:
        return utc(epoch).astimezone(self.tz).strftime("%H:%M:%S %d/%m/%Y" if seconds else "%H:%M %d/%m/%Y")

    # ------------------------------------------------------------------ announcements and airings

    @staticmethod
    def existing(session: Session, schedule_id: int, fire_time: datetime) -> int | None:
        """The airing already recorded for one fire time of a schedule (aired or missed)."""
        return session.scalar(
            select(Broadcast.id).where(Broadcast.schedule_id == schedule_id, Broadcast.fire_time == fire_time)
        )

    def insert(self, session: Session, new: NewBroadcast, *, now: float) -> int:
        ann = new.announcement
        row = Announcement(
            title=ann.title,
            text=ann.text,
            normalized_text="",
            tier=new.tier.value,
            targets=list(ann.targets),
            repeat=ann.repeat,
            engine=ann.engine,
            voice=ann.voice,
            audio_key=ann.audio_key,
            author=ann.author,
            source=str(ann.source),
            approval=(Approval.APPROVED if new.approved else Approval.PENDING).value,
            approved_by=ann.author if new.approved else None,
            approved_at=utc(now) if new.approved else None,
        )
        session.add(row)
        session.flush()
        missed = new.state is BroadcastState.MISSED
        bc = Broadcast(
            announcement_id=row.id,
            tier=new.tier.value,
            targets=list(ann.targets),
            state=new.state.value,
            scheduled_at=utc(new.at) if new.at is not None else None,
            valid_until=utc(new.valid_until),
            audio_key=ann.audio_key,
            schedule_id=new.schedule_id,
            fire_time=new.fire_time,
            created_by=ann.author,
            finished_at=utc(now) if missed else None,
            kind=new.kind,
            channel_id=new.channel_id,
            source_name=new.source_name,
            end_at=utc(new.end_at) if new.end_at is not None else None,
        )
        session.add(bc)
        session.flush()
        first = DeliveryState.MISSED if missed else DeliveryState.PENDING
        for speaker in new.speakers:
            session.add(Delivery(broadcast_id=bc.id, speaker_id=speaker, state=first.value))
        if not missed:
            who = (
                f"lịch #{new.schedule_id}" if new.schedule_id is not None else (ann.author or str(ann.source))
            )
            when = ""
            if new.state is BroadcastState.SCHEDULED and new.at is not None:
                when = f", phát lúc {self.local(new.at)}"
            what = {"relay": f"Tiếp sóng «{new.source_name}»", "live": "Phát trực tiếp"}.get(
                new.kind, "Bản tin"
            )
            self.log(
                session,
                "submitted",
                f"{what} #{bc.id} ({new.tier.label_vi}) tới {len(new.speakers)} cụm loa, từ {who}{when}",
                bc.id,
                now=now,
            )
        return bc.id

    def record_missed(self, session: Session, new: NewBroadcast, reason: str, *, now: float) -> int:
        """A scheduled airing that never aired (the controller was down past the grace): a broadcast
        in state ``missed`` with a ``missed`` delivery per cluster, and the reason in the log."""
        bid = self.insert(session, new, now=now)
        bc = session.get(Broadcast, bid)
        assert bc is not None
        bc.reason = reason
        for d in bc.deliveries:
            d.reason = reason
        self.log(session, "missed", reason, bid, now=now)
        return bid

    def set_state(self, bc: Broadcast, state: BroadcastState) -> None:
        bc.state = state.value

    def set_rendered(
        self, bc: Broadcast, *, key: str, engine: str, duration_s: float, normalized_text: str
    ) -> None:
        bc.audio_key = key
        bc.engine_used = engine
        bc.duration_s = duration_s
        ann = bc.announcement
        if normalized_text:
            ann.normalized_text = normalized_text
        ann.audio_key = ann.audio_key or key

    def set_started(self, bc: Broadcast, start: float) -> None:
        if bc.start_at is None:
            bc.start_at = utc(start)
        if bc.state in (BroadcastState.RENDERING.value, BroadcastState.SCHEDULED.value):
            bc.state = BroadcastState.SENDING.value

    def mark_playing(self, session: Session, broadcast_id: int) -> None:
        bc = session.get(Broadcast, broadcast_id)
        if bc is not None and bc.state == BroadcastState.SENDING.value:
            bc.state = BroadcastState.PLAYING.value

    def mark_waiting_again(self, session: Session, broadcast_id: int, reason: str) -> None:
        """An interruption took the item off every cluster that played it: it waits to be aired
        again (it is not "playing" any more), and says why."""
        bc = session.get(Broadcast, broadcast_id)
        if bc is None or bc.state != BroadcastState.PLAYING.value:
            return
        playing = {DeliveryState.PLAYING.value, DeliveryState.SCHEDULED.value, DeliveryState.RECEIVED.value}
        if any(d.state in playing for d in bc.deliveries):
            return
        bc.state = BroadcastState.SENDING.value
        bc.reason = reason

    # ------------------------------------------------------------------ airings (attempts)

    @staticmethod
    def end_open_attempts(session: Session, bid: int, speaker: str, outcome: str, reason: str) -> None:
        """Airings of ``bid`` on ``speaker`` still marked playing end with ``outcome`` (no receipt)."""
        rows = session.scalars(
            select(DeliveryAttempt).where(
                DeliveryAttempt.broadcast_id == bid,
                DeliveryAttempt.speaker_id == speaker,
                DeliveryAttempt.outcome == "playing",
            )
        )
        for row in rows:
            row.outcome, row.reason = outcome, reason

    def record_attempt(
        self,
        session: Session,
        bid: int,
        speaker: str,
        attempt: int,
        *,
        started_at: float | None = None,
        outcome: str | None = None,
        ended_at: float | None = None,
        seconds_played: float | None = None,
        reason: str | None = None,
    ) -> None:
        """Start or end one airing of ``bid`` on ``speaker`` (attempt 0 is the first airing, n the
        n-th re-airing). An ending without a start (a lost "playing") still records the airing."""
        row = session.scalar(
            select(DeliveryAttempt).where(
                DeliveryAttempt.broadcast_id == bid,
                DeliveryAttempt.speaker_id == speaker,
                DeliveryAttempt.attempt == attempt,
            )
        )
        if row is None:
            row = DeliveryAttempt(broadcast_id=bid, speaker_id=speaker, attempt=attempt, outcome="playing")
            session.add(row)
        elif row.outcome != "playing" and outcome is None:
            return  # a late "playing" after the end: the ending stands
        if started_at is not None and row.started_at is None:
            row.started_at = utc(started_at)
        if outcome is not None:
            row.outcome = outcome
        if ended_at is not None and math.isfinite(ended_at):
            row.ended_at = utc(ended_at)
        if seconds_played is not None and math.isfinite(seconds_played):
            row.seconds_played = seconds_played
        if reason is not None:
            row.reason = reason

    def set_approval(
        self, ann: Announcement, approval: Approval, by: str, *, now: float, valid_until: float | None = None
    ) -> None:
        ann.approval = approval.value
        ann.approved_by = by
        ann.approved_at = utc(now)

    @staticmethod
    def extend_validity(bc: Broadcast, until: float) -> None:
        if bc.valid_until is None or bc.valid_until.timestamp() < until:
            bc.valid_until = utc(until)

    # ------------------------------------------------------------------ deliveries

    def _delivery(self, session: Session, bid: int, speaker: str) -> Delivery | None:
        if self._rows_session is not session:
            self._rows.clear()
            self._rows_session = session
        rows = self._rows.get(bid)
        if rows is None:
            rows = self._rows[bid] = {
                d.speaker_id: d for d in session.scalars(select(Delivery).where(Delivery.broadcast_id == bid))
            }
        return rows.get(speaker)

    def forget_rows(self) -> None:
        """Drop the per-transaction cache (at the end of each transaction)."""
        self._rows.clear()
        self._rows_session = None

    def set_delivery(
        self,
        session: Session,
        bid: int,
        speaker: str,
        state: DeliveryState,
        *,
        reason: str | None | object = _UNSET,
        only_open: bool = False,
        force: bool = False,
        started_at: float | None = None,
        finished_at: float | None = None,
        seconds_played: float | None = None,
        rms_dbfs: float | None = None,
    ) -> bool:
        """Move one delivery by the state machine (see the module docstring). ``only_open``: leave a
        delivery that already ended alone; ``force``: a new attempt (re-airing) may start over.
        Returns True when the row changed."""
        d = self._delivery(session, bid, speaker)
        if d is None:
            return False
        current = DeliveryState(d.state)
        if not force:
            if current is DeliveryState.DONE:
                return False
            if (
                current in TERMINAL
                and only_open
                and not (current is DeliveryState.FAILED and d.reason == NO_RECEIPT)
            ):
                return False
            if state in PROGRESS and current in PROGRESS and PROGRESS[state] < PROGRESS[current]:
                return False
        elif current is DeliveryState.DONE and state not in (DeliveryState.DONE, DeliveryState.SENT):
            return False
        d.state = state.value
        if reason is not _UNSET:
            d.reason = reason  # type: ignore[assignment]
        if started_at is not None:
            d.started_at = utc(started_at)
        if finished_at is not None:
            d.finished_at = utc(finished_at)
        # Non-finite figures are refused at ingest; never let one reach the database or the reports.
        if seconds_played is not None and math.isfinite(seconds_played):
            d.seconds_played = seconds_played
        if rms_dbfs is not None and math.isfinite(rms_dbfs):
            d.rms_dbfs = rms_dbfs
        return True

    @staticmethod
    def end_open_deliveries(
        bc: Broadcast, state: DeliveryState, reason: str, *, which: Iterable[DeliveryState] | None = None
    ) -> None:
        """Every delivery not yet ended (or only those in ``which``) -> ``state`` with ``reason``."""
        chosen = set(which) if which is not None else None
        for d in bc.deliveries:
            current = DeliveryState(d.state)
            if (chosen is None and current not in TERMINAL) or (chosen is not None and current in chosen):
                d.state = state.value
                d.reason = reason

    # ------------------------------------------------------------------ finishing

    def finish(
        self, session: Session, bc: Broadcast, state: BroadcastState, reason: str, *, now: float
    ) -> None:
        bc.state = state.value
        bc.reason = reason
        bc.finished_at = utc(now)
        self.unpin(bc.audio_key, bc.id)
        label = broadcast_state_label(state.value)
        self.log(session, "finished", f"Bản tin #{bc.id}: {label} — {reason}", bc.id, now=now)

    def fail(self, session: Session, bc: Broadcast, reason: str, *, now: float) -> None:
        self.end_open_deliveries(bc, DeliveryState.FAILED, reason)
        self.finish(session, bc, BroadcastState.FAILED, reason, now=now)

    def miss(self, session: Session, bc: Broadcast, reason: str, *, now: float) -> None:
        """A deferred airing that is past its time: every waiting delivery is missed."""
        self.end_open_deliveries(bc, DeliveryState.MISSED, reason)
        self.finish(session, bc, BroadcastState.MISSED, reason, now=now)

    def cancel(self, session: Session, bc: Broadcast, reason: str, *, playing: bool, now: float) -> None:
        """Cancel: waiting deliveries end ``cancelled`` (``playing``: those already on their way
        stay open until the nodes report them stopped)."""
        which = (DeliveryState.PENDING, DeliveryState.SENT) if playing else None
        self.end_open_deliveries(bc, DeliveryState.CANCELLED, reason, which=which)
        self.finish(session, bc, BroadcastState.CANCELLED, reason, now=now)

    def finish_by_outcome(self, session: Session, bc: Broadcast, *, now: float) -> None:
        if not BroadcastState(bc.state).finished:
            state, reason = outcome(bc)
            self.finish(session, bc, state, reason, now=now)

    def refinish(self, session: Session, bid: int, *, now: float) -> None:
        """A late receipt for a finished broadcast: recompute its outcome."""
        bc = session.get(Broadcast, bid)
        if bc is None or bc.state == BroadcastState.CANCELLED.value or not BroadcastState(bc.state).finished:
            return
        if any(DeliveryState(d.state) not in TERMINAL for d in bc.deliveries):
            return
        state, reason = outcome(bc)
        if state.value != bc.state:
            bc.state = state.value
            bc.reason = reason
            self.log(session, "finished", f"Bản tin #{bc.id}: {reason}", bc.id, now=now)

    def unpin(self, key: str | None, broadcast_id: int) -> None:
        if not key:
            return
        try:
            self.store.unpin(key, pin_owner(broadcast_id))
        except Exception:
            _LOGGER.warning(
                "could not release the pin of broadcast %s on %s", broadcast_id, key, exc_info=True
            )


def outcome(bc: Broadcast) -> tuple[BroadcastState, str]:
    """The final state of a broadcast from its deliveries, with a reason for the log."""
    states = [DeliveryState(d.state) for d in bc.deliveries]
    total = len(states)
    done = sum(1 for s in states if s is DeliveryState.DONE)
    others = sorted(
        f"{d.speaker_id}: {delivery_state_label(d.state).lower()}"
        for d in bc.deliveries
        if d.state != DeliveryState.DONE.value
    )
    detail = f"{done}/{total} cụm loa phát trọn" + (f"; {', '.join(others[:20])}" if others else "")
    cut = interruptions(bc)
    if cut:
        detail += f"; {cut}"
    if not total:  # only downstream units were targeted (issue 11): nothing to air here
        return BroadcastState.DONE, "không có cụm loa tại chỗ; tin đã chuyển cho đơn vị cấp dưới"
    if total and done == total:
        return BroadcastState.DONE, detail
    if done:
        return BroadcastState.PARTIAL, detail
    if any(s is DeliveryState.PREEMPTED for s in states):
        return BroadcastState.INTERRUPTED, detail
    if states and all(s in (DeliveryState.MISSED, DeliveryState.EXPIRED) for s in states):
        return BroadcastState.MISSED, detail
    if states and all(s in (DeliveryState.STOPPED, DeliveryState.CANCELLED) for s in states):
        return BroadcastState.CANCELLED, detail
    return BroadcastState.FAILED, detail


__all__ = ["NO_RECEIPT", "PROGRESS", "TERMINAL", "Ledger", "NewBroadcast", "outcome", "utc"]

"""Picking up, at start, what a previous run left in progress (and the same after a rolled-back
transaction, when the in-memory airings may have moved ahead of the database)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from broadcaster.broadcasts.ledger import PROGRESS
from broadcaster.broadcasts.lifecycle import Lifecycle
from broadcaster.domain import Tier
from broadcaster.models import Broadcast, BroadcastState, DeliveryState

_IN_PROGRESS = (
    BroadcastState.RENDERING.value,
    BroadcastState.SENDING.value,
    BroadcastState.PLAYING.value,
    BroadcastState.SCHEDULED.value,
)


def load(lifecycle: Lifecycle, session: Session, *, reloaded: bool = False) -> None:
    """Rebuild airings, deferred items and render jobs from the database. ``reloaded``: after a
    failed transaction, without writing "recovered" to the log."""
    now = lifecycle.clock()
    rows = session.scalars(select(Broadcast).where(Broadcast.state.in_(_IN_PROGRESS)).order_by(Broadcast.id))
    for bc in rows.all():
        if bc.id in lifecycle.airings or bc.id in lifecycle.renderer.rendering:
            continue
        state = BroadcastState(bc.state)
        if lifecycle.streams.is_stream(bc):
            _recover_stream(lifecycle, session, bc, state, reloaded)
            continue
        if state is BroadcastState.SCHEDULED:
            if not bc.audio_key:
                lifecycle.renderer.request(bc.id, Tier(bc.tier), air=False)
            if bc.scheduled_at is not None:
                lifecycle.defer(bc.id, bc.scheduled_at.timestamp())
            continue
        if state is BroadcastState.RENDERING or not bc.audio_key:
            lifecycle.ledger.set_state(bc, BroadcastState.RENDERING)
            lifecycle.renderer.request(bc.id, Tier(bc.tier), air=True)
            continue
        open_ = [
            d
            for d in bc.deliveries
            if DeliveryState(d.state) in PROGRESS and d.state != DeliveryState.PENDING.value
        ]
        airing = lifecycle.start_airing(session, bc)
        if airing is None:
            continue
        lifecycle.ledger.set_state(bc, state)
        start = bc.start_at.timestamp() if bc.start_at else now
        for d in open_:
            s = d.started_at.timestamp() if d.started_at else start
            airing.active[d.speaker_id] = (s, max(s + airing.duration, now))
        airing.started = bool(open_)
        if not reloaded:
            message = f"Bản tin #{bc.id} tiếp tục sau khi khởi động lại"
            lifecycle.ledger.log(session, "recovered", message, bc.id, now=now)


def _recover_stream(
    lifecycle: Lifecycle, session: Session, bc: Broadcast, state: BroadcastState, reloaded: bool
) -> None:
    """A relay in progress connects to its source again and is sent anew to its clusters (the live
    point, for the time that remains); a live item cannot continue without its browser."""
    now = lifecycle.clock()
    if state is BroadcastState.SCHEDULED:
        if bc.scheduled_at is not None:
            lifecycle.defer(bc.id, bc.scheduled_at.timestamp())
        return
    if reloaded and bc.id in lifecycle.streams.info:
        # The same process: the source still runs. Queue the airing again from what is recorded.
        lifecycle.ledger.set_state(bc, BroadcastState.RENDERING)
        lifecycle.stream_ready(session, bc.id, lifecycle.streams.info[bc.id])
        return
    if bc.kind == "live":
        lifecycle.ledger.end_open_deliveries(bc, DeliveryState.STOPPED, "bộ điều khiển khởi động lại")
        lifecycle.ledger.finish(
            session,
            bc,
            BroadcastState.CANCELLED,
            "Phát trực tiếp dừng vì bộ điều khiển khởi động lại",
            now=now,
        )
        return
    for d in bc.deliveries:
        if DeliveryState(d.state) in PROGRESS:
            lifecycle.ledger.set_delivery(
                session,
                bc.id,
                d.speaker_id,
                DeliveryState.PENDING,
                reason="tiếp sóng lại sau khi khởi động lại",
                force=True,
            )
    lifecycle.ledger.set_state(bc, BroadcastState.RENDERING)
    lifecycle.streams.open(session, bc)
    if not reloaded:
        lifecycle.ledger.log(
            session, "recovered", f"Tiếp sóng #{bc.id} tiếp tục sau khi khởi động lại", bc.id, now=now
        )


__all__ = ["load"]

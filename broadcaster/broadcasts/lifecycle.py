"""The airings in progress and every change to them, on the dispatcher thread.

A broadcast goes ``scheduled`` (waiting for its time, here in ``deferred``) or ``pending_approval``
-> ``rendering`` -> ``sending`` -> ``playing`` -> finished. :class:`Lifecycle` holds the airings and
applies, inside the dispatcher's batch transaction: approvals, cancellations, "stop everything",
render results, stream items' sources becoming ready, failing or ending (with
:class:`~broadcaster.broadcasts.streams.StreamItems`), and at every tick what is due. What goes out
to the clusters at a tick (arbitration's decisions: play, preempt, requeue, wait, expire) is applied
by :class:`~broadcaster.broadcasts.decisions.DecisionApplier`, which shares the airings. The ledger
writes what happened; the command sender publishes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from broadcaster.broadcasts.arbitration import Policy
from broadcaster.broadcasts.chunks import ChunkServer
from broadcaster.broadcasts.commands import CommandSender
from broadcaster.broadcasts.config import BroadcastsConfig
from broadcaster.broadcasts.decisions import DecisionApplier
from broadcaster.broadcasts.errors import BroadcastError
from broadcaster.broadcasts.ledger import Ledger
from broadcaster.broadcasts.ports import FleetPort, SpeechPort
from broadcaster.broadcasts.rendering import Rendered, Renderer
from broadcaster.broadcasts.state import Airing, slot_key
from broadcaster.broadcasts.streams import StreamItems
from broadcaster.domain import ALL_TARGETS, Tier
from broadcaster.fleet.targets import TargetResolver
from broadcaster.models import Announcement, Approval, Broadcast, BroadcastState, DeliveryState
from speakers.protocol import AudioRef

_LOGGER = logging.getLogger(__name__)


class Lifecycle:
    """See the module docstring. Only the dispatcher thread calls it."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        speech: SpeechPort,
        fleet: FleetPort | None,
        targets: TargetResolver,
        renderer: Renderer,
        sender: CommandSender,
        chunks: ChunkServer,
        config: BroadcastsConfig,
        policy: Policy,
        deferred_grace_s: float,
        clock: Callable[[], float],
        streams: StreamItems | None = None,
    ) -> None:
        self.ledger = ledger
        self.speech = speech
        self.targets = targets
        self.renderer = renderer
        self.sender = sender
        self.chunks = chunks
        self.config = config
        self.deferred_grace_s = deferred_grace_s
        self.clock = clock
        self.airings: dict[int, Airing] = {}
        self.deferred: dict[int, float] = {}  # scheduled broadcasts: id -> when due
        self.titles: dict[int, str] = {}
        self.stopping = False  # set at stop(): nothing new goes on air
        self.streams = streams or StreamItems(ledger, None, clock)
        # Arbitration applied at every tick; it shares the airings (and re-sends streams on rejoin).
        self.decisions = DecisionApplier(
            airings=self.airings,
            ledger=ledger,
            sender=sender,
            streams=self.streams,
            targets=targets,
            fleet=fleet,
            policy=policy,
            clock=clock,
        )

    # ------------------------------------------------------------------ requests

    def defer(self, broadcast_id: int, at: float) -> None:
        self.deferred[broadcast_id] = at

    def air(self, session: Session, broadcast_id: int) -> None:
        """A deferred broadcast is due (or an approved one is due now): render or queue it."""
        bc = session.get(Broadcast, broadcast_id)
        if bc is None or bc.state != BroadcastState.SCHEDULED.value:
            self.deferred.pop(broadcast_id, None)
            return
        self.deferred.pop(broadcast_id, None)
        now = self.clock()
        if bc.valid_until is not None and bc.valid_until.timestamp() < now:
            self.ledger.miss(session, bc, "Quá hạn phát (bộ điều khiển không chạy đúng giờ)", now=now)
            return
        self.ledger.log(session, "due", f"Bản tin #{bc.id} đến giờ phát", bc.id, now=now)
        if self.streams.is_stream(bc):
            self.streams.open(session, bc)
            return
        self.ledger.set_state(bc, BroadcastState.RENDERING)
        if bc.audio_key and self.speech.store.has(bc.audio_key):
            self.start_airing(session, bc)
        else:
            self.renderer.request(bc.id, Tier(bc.tier), air=True)

    def approve(self, session: Session, announcement_id: int, by: str) -> None:
        ann = session.get(Announcement, announcement_id)
        if ann is None:
            raise BroadcastError(f"Không có bản tin {announcement_id}.")
        if ann.approval == Approval.REJECTED.value:
            raise BroadcastError("Bản tin này đã bị từ chối.")
        now = self.clock()
        self.ledger.set_approval(ann, Approval.APPROVED, by, now=now)
        for bc in ann.broadcasts:
            if bc.state != BroadcastState.PENDING_APPROVAL.value:
                continue
            self.ledger.log(session, "approved", f"Bản tin #{bc.id} được {by} phê duyệt", bc.id, now=now)
            self.ledger.set_state(bc, BroadcastState.SCHEDULED)
            at = bc.scheduled_at.timestamp() if bc.scheduled_at is not None else None
            if at is not None and at > now + self.config.lead_s:
                self.defer(bc.id, at)
                continue
            tier = Tier(bc.tier)
            valid = self.config.emergency_valid_s if tier is Tier.EMERGENCY else self.config.normal_valid_s
            self.ledger.extend_validity(bc, now + valid)
            self.air(session, bc.id)

    def reject(self, session: Session, announcement_id: int, by: str, reason: str) -> None:
        ann = session.get(Announcement, announcement_id)
        if ann is None:
            raise BroadcastError(f"Không có bản tin {announcement_id}.")
        now = self.clock()
        self.ledger.set_approval(ann, Approval.REJECTED, by, now=now)
        text = f"Bị {by} từ chối" + (f": {reason}" if reason else "")
        for bc in ann.broadcasts:
            if not BroadcastState(bc.state).finished:
                self.deferred.pop(bc.id, None)
                self.ledger.cancel(session, bc, text, playing=False, now=now)

    def cancel(self, session: Session, broadcast_id: int, reason: str, *, send_stop: bool = True) -> bool:
        """Stop it where it plays, drop what is queued, unschedule it. False when already finished."""
        bc = session.get(Broadcast, broadcast_id)
        if bc is None or BroadcastState(bc.state).finished:
            return False
        self.deferred.pop(bc.id, None)
        self.renderer.drop(bc.id)
        airing = self.airings.get(bc.id)
        if airing is None and self.streams.is_stream(bc):
            self.streams.release(bc.id)  # still connecting: let go of the source
        if airing is not None:
            airing.cancelled = True
            airing.cancel_reason = reason
            if send_stop and airing.active:
                self.sender.stop(airing, set(airing.active), reason, self.targets.zone_map(session))
            airing.pending.clear()
        self.ledger.cancel(session, bc, reason, playing=airing is not None, now=self.clock())
        if airing is not None and not airing.active:
            self.drop_airing(airing)
        return True

    def stop_all(self, session: Session, text: str, reason: str) -> None:
        self.sender.stop_everything(reason or "stop_all", self.targets.zone_map(session, fresh=True))
        for airing in list(self.airings.values()):
            bc = session.get(Broadcast, airing.id)
            if bc is not None and not BroadcastState(bc.state).finished:
                self.cancel(session, bc.id, text, send_stop=False)
            else:
                airing.cancelled = True
        rendering = select(Broadcast).where(Broadcast.state == BroadcastState.RENDERING.value)
        for bc in session.scalars(rendering):
            self.cancel(session, bc.id, text, send_stop=False)
        self.ledger.log(session, "stop_all", text, now=self.clock())

    # ------------------------------------------------------------------ rendering results

    def rendered(self, session: Session, result: Rendered) -> None:
        air = self.renderer.finished(result.broadcast_id)
        bc = session.get(Broadcast, result.broadcast_id)
        if bc is None:
            return
        now = self.clock()
        if bc.id in self.streams.streamed:  # aired as it was synthesized (perhaps over already)
            self.streams.streamed.discard(bc.id)
            self._streamed_rendered(session, bc, result, now)
            return
        if result.error is not None or result.key is None:
            # A failed render ahead is retried when the broadcast is due (the engine may be back).
            if bc.state == BroadcastState.RENDERING.value or air:
                self.ledger.fail(session, bc, f"Không tạo được âm thanh: {result.error}", now=now)
            else:
                message = f"Bản tin #{bc.id}: chưa tạo được âm thanh: {result.error}"
                self.ledger.log(session, "render_failed", message, bc.id, now=now)
            return
        if BroadcastState(bc.state).finished:
            return  # cancelled while it rendered
        self.ledger.set_rendered(
            bc,
            key=result.key,
            engine=result.engine,
            duration_s=result.duration_s,
            normalized_text=result.normalized_text,
        )
        self.renderer.pin(result.key, bc.id)
        message = f"Bản tin #{bc.id}: âm thanh {result.duration_s:.1f} giây, giọng {result.engine}"
        self.ledger.log(session, "rendered", message, bc.id, now=now)
        if (air or bc.state == BroadcastState.RENDERING.value) and not self.stopping:
            self.start_airing(session, bc)

    def _streamed_rendered(self, session: Session, bc: Broadcast, result: Rendered, now: float) -> None:
        """An emergency that aired as it was synthesized: the whole recording is stored now (its
        stream ended or ends by itself); it becomes the broadcast's audio, for the log."""
        if result.error is not None or result.key is None:
            # Its stream ended with what could be read: stop it where it plays, with why.
            self.cancel(session, bc.id, f"Không tạo được âm thanh: {result.error}")
            return
        self.ledger.set_rendered(
            bc,
            key=result.key,
            engine=result.engine,
            duration_s=result.duration_s,
            normalized_text=result.normalized_text,
        )
        if not BroadcastState(bc.state).finished:  # the ledger lets the pin go when it ends
            self.renderer.pin(result.key, bc.id)
        message = (
            f"Bản tin #{bc.id}: phát ngay khi có câu đầu; đã lưu bản ghi {result.duration_s:.1f} giây, "
            f"giọng {result.engine}"
        )
        self.ledger.log(session, "rendered", message, bc.id, now=now)
        airing = self.airings.get(bc.id)
        if airing is None or airing.kind != "speech":
            return
        try:
            data = self.speech.store.read_bytes(result.key)
        except Exception:
            _LOGGER.warning("recording of streamed emergency %s unreadable", bc.id, exc_info=True)
            return
        airing.recording = (result.key, AudioRef.for_bytes(data, duration_s=result.duration_s), data)
        if airing.end_at is not None:  # the stream is over already
            self.stream_to_file(session, airing)

    def stream_to_file(self, session: Session, airing: Airing) -> None:
        """A streamed emergency whose stream is over and whose recording is stored: what is left of
        it (clusters that were offline during the stream) airs as that file, like any emergency."""
        assert airing.recording is not None
        key, ref, data = airing.recording
        self.streams.release(airing.id)
        airing.stream, airing.kind, airing.end_at = None, "announcement", None
        airing.audio, airing.audio_key, airing.duration = ref, key, ref.duration_s or 0.0
        airing.recording = None
        self.chunks.offer(ref.id, data)
        if airing.pending:
            message = (
                f"Bản tin #{airing.id}: gửi bản ghi tới {', '.join(sorted(airing.pending))} khi kết nối lại"
            )
            self.ledger.log(session, "waiting", message, airing.id, now=self.clock())

    # ------------------------------------------------------------------ stream items

    def open_stream(self, session: Session, broadcast_id: int) -> None:
        """A stream item to air now (not scheduled): connect to its source."""
        bc = session.get(Broadcast, broadcast_id)
        if bc is not None and bc.state == BroadcastState.RENDERING.value and not self.stopping:
            self.streams.open(session, bc)

    def stream_ready(self, session: Session, broadcast_id: int, info: object) -> None:
        bc = session.get(Broadcast, broadcast_id)
        if bc is None or BroadcastState(bc.state).finished or self.stopping:
            self.streams.release(broadcast_id)
            return
        if bc.id in self.airings or bc.state != BroadcastState.RENDERING.value:
            return
        zones = self.targets.zone_map(session)
        valid = self.clock() + self.config.normal_valid_s
        airing = self.streams.airing(bc, info, self.streams.zones_of(bc, zones.members), valid)
        self.airings[bc.id] = airing
        self.titles[bc.id] = airing.title
        self.ledger.set_state(bc, BroadcastState.SENDING)

    def stream_failed(self, session: Session, broadcast_id: int, reason: str) -> None:
        bc = session.get(Broadcast, broadcast_id)
        if bc is None:
            return
        airing = self.airings.get(broadcast_id)
        if airing is not None and airing.active:
            # It was playing: the clusters play out what they have; the gap is in the log.
            self.streams.gap(session, broadcast_id, reason)
            return
        if airing is not None:
            airing.pending.clear()
        self.streams.failed(session, bc, reason)

    def stream_ended(self, session: Session, broadcast_id: int, end_at: float, recording: object) -> None:
        bc = session.get(Broadcast, broadcast_id)
        if bc is None:
            return
        airing = self.airings.get(broadcast_id)
        self.streams.ended(session, airing, bc, end_at, recording)
        if airing is not None and airing.kind == "speech" and airing.recording is not None:
            self.stream_to_file(session, airing)

    # ------------------------------------------------------------------ airing

    def start_airing(self, session: Session, bc: Broadcast) -> Airing | None:
        """The broadcast is due, approved and rendered: queue it for dispatch."""
        if bc.id in self.airings:
            return self.airings[bc.id]
        if self.streams.is_stream(bc):
            return None  # stream items are queued when their source is ready (stream_ready)
        key = bc.audio_key
        try:
            data = self.speech.store.read_bytes(key)  # type: ignore[arg-type]
        except Exception as exc:
            self.ledger.fail(session, bc, f"Không đọc được tệp âm thanh {key}: {exc}", now=self.clock())
            return None
        duration = float(bc.duration_s or 0.0)
        audio = AudioRef.for_bytes(data, duration_s=duration)
        zones = self.targets.zone_map(session)
        targets = set(bc.targets or [])
        valid_until = (
            bc.valid_until.timestamp() if bc.valid_until else self.clock() + self.config.normal_valid_s
        )
        airing = Airing(
            id=bc.id,
            tier=Tier(bc.tier),
            order=bc.id,  # ids grow with arrival: a re-queued item keeps its place
            title=bc.announcement.title or bc.announcement.text[:60],
            audio_key=key,  # type: ignore[arg-type]
            audio=audio,
            duration=duration,
            valid_until=valid_until,
            whole_zones={z for z in zones.members if ALL_TARGETS in targets or z in targets},
            pending={d.speaker_id for d in bc.deliveries if d.state == DeliveryState.PENDING.value},
            slot=slot_key(bc.schedule_id, bc.fire_time) if bc.schedule_id and bc.fire_time else None,
        )
        self.airings[bc.id] = airing
        self.chunks.offer(audio.id, data)
        self.titles[bc.id] = airing.title
        self.ledger.set_state(bc, BroadcastState.SENDING)
        return airing

    def tick(self, session: Session) -> None:
        """Air what is due, then apply arbitration. Runs after every batch and at least twice a second."""
        if self.stopping:
            return
        now = self.clock()
        for bid, at in sorted(self.deferred.items(), key=lambda item: item[1]):
            if at <= now:
                if now - at > self.deferred_grace_s:
                    self._missed_deferred(session, bid, at, now)
                else:
                    self.air(session, bid)
        if self.airings:
            self.decisions.arbitrate(session, self.renderer.holds(session), now)
        for airing in list(self.airings.values()):
            if not airing.pending and not airing.active:
                bc = session.get(Broadcast, airing.id)
                if bc is not None:
                    self.ledger.finish_by_outcome(session, bc, now=self.clock())
                self.drop_airing(airing)

    def _missed_deferred(self, session: Session, bid: int, at: float, now: float) -> None:
        self.deferred.pop(bid, None)
        bc = session.get(Broadcast, bid)
        if bc is None or bc.state != BroadcastState.SCHEDULED.value:
            return
        reason = (
            f"Lỡ giờ phát {self.ledger.local(at, seconds=True)}: bộ điều khiển không chạy vào giờ đó và "
            f"đã quá {int(self.deferred_grace_s)} giây cho phép."
        )
        self.ledger.miss(session, bc, reason, now=now)

    def drop_airing(self, airing: Airing) -> None:
        self.airings.pop(airing.id, None)
        if airing.stream is not None:
            self.streams.release(airing.id)
            return
        assert airing.audio is not None
        if not any(a.audio is not None and a.audio.id == airing.audio.id for a in self.airings.values()):
            self.chunks.forget(airing.audio.id)


__all__ = ["Lifecycle"]

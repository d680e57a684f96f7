"""The public face of the broadcast lifecycle: what the web, the API and the scheduler call.

Flow of one broadcast::

    submit() --(rows written, id returned at once)--> render on a worker pool
       |-- ann.at in the future: "scheduled", audio rendered ahead now, aired by the dispatcher
       |   when due (a scheduled broadcast survives restarts: it is re-read at start)
       |-- approved=False: "pending_approval" until approve()/reject()
       `-- otherwise: "rendering" -> queued for dispatch ("sending") -> "playing" -> finished

The parts, each in its own module: ``validation`` (the one announcement validator), ``ledger`` (the
only writer of the database rows), ``arbitration`` (the policy: a pure function), ``dispatcher``
(the one thread that applies it), ``lifecycle`` (the airings and the changes to them), ``streams``
(relays and live speech: their source on the stream hub of ``broadcaster.live``),
``receipts``, ``rendering``, ``chunks``, ``commands``, ``volume`` and ``views``. The policy is
described in ``arbitration.py``; README.md summarizes it.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from broadcaster import domain
from broadcaster.broadcasts.arbitration import Policy, validity_end
from broadcaster.broadcasts.chunks import ChunkServer
from broadcaster.broadcasts.commands import CommandSender
from broadcaster.broadcasts.config import BroadcastsConfig
from broadcaster.broadcasts.dispatcher import Dispatcher
from broadcaster.broadcasts.errors import BroadcastError
from broadcaster.broadcasts.ledger import Ledger, NewBroadcast, utc
from broadcaster.broadcasts.lifecycle import Lifecycle
from broadcaster.broadcasts.ports import FleetPort, SpeechPort
from broadcaster.broadcasts.receipts import Receipts
from broadcaster.broadcasts.rendering import Renderer
from broadcaster.broadcasts.state import parse_slot
from broadcaster.broadcasts.streams import LIVE_SOURCE, SpeechFeed, StreamItems, remove_file
from broadcaster.broadcasts.validation import AnnouncementValidator, CheckedStream, Draft, Limits
from broadcaster.broadcasts.views import BroadcastTitles, get_broadcast, list_broadcasts
from broadcaster.broadcasts.volume import set_volume
from broadcaster.domain import Tier
from broadcaster.fleet.targets import TargetError, TargetResolver, resolve
from broadcaster.live.channels import Channels
from broadcaster.live.hub import StreamHub, StreamInfo
from broadcaster.models import Broadcast, BroadcastState, Schedule
from broadcaster.transport import Transport
from speakers.protocol import Event

_LOGGER = logging.getLogger(__name__)

# How many recent broadcasts a node catching up may ask the audio of.
_RECENT_AUDIO = 200
# A scheduled item whose time passed while the controller was down still airs within this.
DEFAULT_DEFERRED_GRACE_S = 900.0


class BroadcastManager:
    """See the module docstring. Built by ``build_services``; ``start()`` runs the dispatcher."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        speech: SpeechPort,
        transport: Transport,
        fleet: FleetPort | None,
        config: BroadcastsConfig | None = None,
        *,
        targets: TargetResolver | None = None,
        validator: AnnouncementValidator | None = None,
        titles: BroadcastTitles | None = None,
        timezone: str = "Asia/Ho_Chi_Minh",
        deferred_grace_s: float = DEFAULT_DEFERRED_GRACE_S,
        clock: Callable[[], float] = time.time,
        hub: StreamHub | None = None,
        channels: Channels | None = None,
    ) -> None:
        self.sessions = sessions
        self.speech = speech
        self.transport = transport
        self.fleet = fleet
        self.config = config or BroadcastsConfig()
        self.tz = ZoneInfo(timezone)
        self.clock = clock
        self.targets = targets or TargetResolver(sessions)
        self.titles = titles or BroadcastTitles(sessions)
        self.validator = validator or AnnouncementValidator(
            Limits(max_repeat=self.config.max_repeat),
            targets=self.targets,
            audio_exists=speech.store.has,
            tz=self.tz,
        )
        self.policy = Policy(
            lead_s=self.config.lead_s,
            emergency_lead_s=self.config.emergency_lead_s,
            lead_per_1000_s=self.config.lead_per_1000_s,
            gap_s=self.config.gap_s,
            receipt_grace_s=self.config.receipt_grace_s,
            tz=self.tz,
            emergency_lead_floor_s=self.config.emergency_lead_floor_s,
        )
        self.hub = hub
        self.channels = channels or Channels(sessions)
        if hub is not None:
            hub.listener = self
        self.ledger = Ledger(speech.store, self.tz)
        self.sender = CommandSender(transport, clock, self.config.volume)
        self.chunks = ChunkServer(
            transport, speech.store, self._recent_audio_keys, self.config.audio_dedupe_s
        )
        streamer = None
        if hub is not None and self.config.stream_emergencies:
            streamer = functools.partial(SpeechFeed, hub)  # an emergency plays as it is synthesized
        self.renderer = Renderer(
            sessions,
            speech,
            lambda result: self.dispatcher.post_rendered(result),
            self.config.render_workers,
            streamer=streamer,
        )
        self.lifecycle = Lifecycle(
            ledger=self.ledger,
            speech=speech,
            fleet=fleet,
            targets=self.targets,
            renderer=self.renderer,
            sender=self.sender,
            chunks=self.chunks,
            config=self.config,
            policy=self.policy,
            deferred_grace_s=deferred_grace_s,
            clock=clock,
            streams=StreamItems(self.ledger, hub, clock),
        )
        self.receipts = Receipts(
            self.ledger,
            self.lifecycle.airings,
            self.chunks,
            self.config,
            clock,
            self.lifecycle.decisions.note_ready,
        )
        self.dispatcher = Dispatcher(
            sessions, self.lifecycle, self.receipts, self.chunks, self.ledger, self._resolve_slots
        )
        self.deferred_grace_s = deferred_grace_s
        self._started = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        if self.fleet is not None:
            self.fleet.add_event_listener(self.dispatcher.post_receipt)
            self.fleet.add_online_listener(self._on_online)
        self.dispatcher.start()

    def stop(self) -> None:
        """Stop airing: nothing new goes on air from now on (not even a render finishing during or
        after the stop), renders are abandoned, then the dispatcher ends its batch in progress.
        What was in progress is picked up again at the next start."""
        self.lifecycle.stopping = True
        self.renderer.close()
        self.dispatcher.stop()
        if self.hub is not None:
            self.hub.stop()

    def registry_changed(self, *_: Any) -> None:
        """Registry hook: zones and members are re-read at the next decision."""
        self.targets.invalidate()

    def _on_online(self, speaker: str, online: bool) -> None:  # fleet thread
        if online:
            self.dispatcher.post_online(speaker)

    # ------------------------------------------------------------------ requests

    def submit(
        self,
        ann: domain.Announcement,
        *,
        approved: bool = True,
        schedule_id: int | None = None,
        fire_time: datetime | None = None,
        valid_until: datetime | None = None,
    ) -> int:
        """Persist the announcement, its broadcast and one delivery per target cluster; return the
        broadcast id at once. Rendering and airing happen on workers. Raises BroadcastError."""
        checked = self.validator.check(Draft.of(ann), check_time=False)
        tier = checked.tier
        for name, value in (("fire_time", fire_time), ("valid_until", valid_until)):
            if value is not None and value.tzinfo is None:
                raise BroadcastError(f"Thời điểm '{name}' phải có múi giờ (ví dụ 2024-03-15T07:30:00+07:00).")
        now = self.clock()
        at = checked.at.timestamp() if checked.at is not None else None
        future = at is not None and at > now + self.config.lead_s
        if not approved:
            state = BroadcastState.PENDING_APPROVAL
        elif future:
            state = BroadcastState.SCHEDULED
        else:
            state = BroadcastState.RENDERING
        try:
            with self.sessions.begin() as session:
                if schedule_id is not None and fire_time is not None:
                    existing = self.ledger.existing(session, schedule_id, fire_time)
                    if existing is not None:
                        _LOGGER.info(
                            "schedule %s at %s already aired as #%s", schedule_id, fire_time, existing
                        )
                        return existing
                speakers = self._resolve(session, ann.targets)
                base = at if future and at is not None else now
                if valid_until is not None:
                    until = valid_until.timestamp()
                else:
                    until = self._validity(session, tier, base, speakers)
                new = NewBroadcast(ann, tier, state, approved, at, until, speakers, schedule_id, fire_time)
                broadcast_id = self.ledger.insert(session, new, now=now)
        except IntegrityError:
            # Another thread aired the same (schedule, fire time) between our check and insert.
            if schedule_id is None or fire_time is None:
                raise
            with self.sessions() as session:
                existing = self.ledger.existing(session, schedule_id, fire_time)
            if existing is None:
                raise
            return existing
        self.titles.remember(broadcast_id, ann.title or ann.text[:60])
        _LOGGER.info("broadcast %s submitted: %s, %s targets, %s", broadcast_id, tier, len(speakers), state)
        if state is BroadcastState.SCHEDULED and at is not None:
            self.dispatcher.post_defer(broadcast_id, at)
        # Rendered ahead even when scheduled or awaiting approval (the approver can listen to it).
        self.dispatcher.post_render(broadcast_id, tier, air=state is BroadcastState.RENDERING)
        return broadcast_id

    def submit_stream(
        self,
        checked: CheckedStream,
        *,
        author: str | None,
        source: domain.Source = domain.Source.API,
        approved: bool = True,
        schedule_id: int | None = None,
        fire_time: datetime | None = None,
    ) -> int:
        """A relay (checked by ``validator.check_stream``): rows written like any broadcast, the id
        returned at once; the channel is pulled when it is due (and approved)."""
        ann = domain.Announcement(
            text="", tier=checked.tier, targets=checked.targets, title=checked.title, at=checked.at,
            author=author, source=source,
        )  # fmt: skip
        return self._insert_stream(
            ann, "relay", approved, checked.at, checked.end.timestamp(), checked.channel_id,
            checked.channel_name, schedule_id, fire_time,
        )  # fmt: skip

    def start_live(self, *, tier: Tier, targets: tuple[str, ...], author: str | None, title: str = "") -> int:
        """Live speech from the browser: on air as soon as the clusters have the command; its audio
        comes through :meth:`feed_live` until :meth:`end_live` (or the browser goes silent)."""
        ann = domain.Announcement(
            text="",
            tier=tier,
            targets=targets,
            title=title or LIVE_SOURCE,
            author=author,
            source=domain.Source.WEB,
        )
        return self._insert_stream(ann, "live", True, None, None, None, LIVE_SOURCE, None, None)

    def feed_live(self, broadcast_id: int, pcm: bytes) -> bool:
        """PCM from the browser (16 kHz s16le mono); False once the item is not live any more."""
        return self.hub is not None and self.hub.feed(broadcast_id, pcm)

    def end_live(self, broadcast_id: int) -> bool:
        return self.hub is not None and self.hub.end_live(broadcast_id)

    def _insert_stream(
        self,
        ann: domain.Announcement,
        kind: str,
        approved: bool,
        at_dt: datetime | None,
        end_at: float | None,
        channel_id: int | None,
        source_name: str,
        schedule_id: int | None,
        fire_time: datetime | None,
    ) -> int:
        now = self.clock()
        at = at_dt.timestamp() if at_dt is not None else None
        future = at is not None and at > now + self.config.lead_s
        if not approved:
            state = BroadcastState.PENDING_APPROVAL
        elif future:
            state = BroadcastState.SCHEDULED
        else:
            state = BroadcastState.RENDERING
        try:
            with self.sessions.begin() as session:
                if schedule_id is not None and fire_time is not None:
                    existing = self.ledger.existing(session, schedule_id, fire_time)
                    if existing is not None:
                        return existing
                speakers = self._resolve(session, ann.targets)
                until = end_at if end_at is not None else now + self.config.normal_valid_s
                new = NewBroadcast(
                    ann, Tier(ann.tier), state, approved, at, until, speakers, schedule_id, fire_time,
                    kind=kind, channel_id=channel_id, source_name=source_name, end_at=end_at,
                )  # fmt: skip
                broadcast_id = self.ledger.insert(session, new, now=now)
        except IntegrityError:
            if schedule_id is None or fire_time is None:
                raise
            with self.sessions() as session:
                existing = self.ledger.existing(session, schedule_id, fire_time)
            if existing is None:
                raise
            return existing
        self.titles.remember(broadcast_id, ann.title or source_name)
        _LOGGER.info("%s %s submitted: %s targets, %s", kind, broadcast_id, len(speakers), state)
        if state is BroadcastState.SCHEDULED and at is not None:
            self.dispatcher.post_defer(broadcast_id, at)
        elif state is BroadcastState.RENDERING and kind == "live" and self.hub is not None:
            self.hub.open_live(broadcast_id)  # at once: the browser's first audio is on its way
        elif state is BroadcastState.RENDERING:
            self.dispatcher.post(lambda session: self.lifecycle.open_stream(session, broadcast_id))
        return broadcast_id

    # Stream hub listener (hub threads): never wait on the dispatcher, post to it.

    def stream_ready(self, broadcast_id: int, info: StreamInfo) -> None:
        self.dispatcher.post(lambda session: self.lifecycle.stream_ready(session, broadcast_id, info))

    def stream_failed(self, broadcast_id: int, reason: str) -> None:
        self.dispatcher.post(lambda session: self.lifecycle.stream_failed(session, broadcast_id, reason))

    def stream_gap(self, broadcast_id: int, message: str) -> None:
        self.dispatcher.post(lambda session: self.lifecycle.streams.gap(session, broadcast_id, message))

    def stream_ended(self, broadcast_id: int, end_at: float, recording: Path | None) -> None:
        self.dispatcher.post(
            lambda session: self.lifecycle.stream_ended(session, broadcast_id, end_at, recording)
        )
        if recording is not None:
            self._keep_recording(broadcast_id, recording)

    def _keep_recording(self, broadcast_id: int, recording: Path) -> None:
        """What was said, into the audio store (hub thread: the conversion takes a moment)."""
        try:
            data = recording.read_bytes()
            seconds = max(0.0, (len(data) - 44) / 2 / (self.hub.config.sample_rate if self.hub else 12000))
            if seconds < 0.2:
                return
            importer = getattr(self.speech, "import_recording", None)
            if importer is None:
                return
            result = importer(data, f"truc-tiep-{broadcast_id}.wav", chime=False)
        except Exception:
            _LOGGER.warning("live %s: the recording could not be kept", broadcast_id, exc_info=True)
            return
        finally:
            remove_file(recording)

        def keep(session: Session) -> None:
            bc = session.get(Broadcast, broadcast_id)
            if bc is not None:
                self.lifecycle.streams.keep_recording(session, bc, result.key, seconds)

        self.dispatcher.post(keep)

    def record_missed(
        self,
        ann: domain.Announcement,
        *,
        schedule_id: int,
        fire_time: datetime,
        reason: str,
        relay: tuple[int | None, str] | None = None,
    ) -> int | None:
        """One fire time of a schedule that did not air (the controller was down past the grace):
        a ``missed`` broadcast with a ``missed`` delivery per cluster. None when that airing is
        already recorded (aired or missed). ``relay``: (channel id, channel name) of a relay
        schedule, so the log names the source."""
        now = self.clock()
        tier = Tier(ann.tier)
        try:
            with self.sessions.begin() as session:
                if self.ledger.existing(session, schedule_id, fire_time) is not None:
                    return None
                try:
                    speakers = self._resolve(session, ann.targets)
                except BroadcastError:
                    speakers = ()
                at = fire_time.timestamp()
                new = NewBroadcast(
                    ann, tier, BroadcastState.MISSED, True, at, at, speakers, schedule_id, fire_time
                )
                if relay is not None:
                    new = replace(new, kind="relay", channel_id=relay[0], source_name=relay[1])
                return self.ledger.record_missed(session, new, reason, now=now)
        except IntegrityError:
            return None  # aired or recorded by someone else in the meantime

    def approve(self, announcement_id: int, by: str) -> None:
        """Approve a pending announcement: its broadcasts are scheduled or aired now."""
        self.dispatcher.call(lambda session: self.lifecycle.approve(session, announcement_id, by))

    def reject(self, announcement_id: int, by: str, reason: str = "") -> None:
        self.dispatcher.call(lambda session: self.lifecycle.reject(session, announcement_id, by, reason))

    def air(self, broadcast_id: int) -> None:
        """Air a scheduled broadcast now. Idempotent: one not waiting for its time is left alone."""
        self.dispatcher.post_air(broadcast_id)

    def cancel(self, broadcast_id: int, by: str | None = None) -> bool:
        """Cancel: stop it where it plays, drop what is queued, unschedule it if deferred.
        Returns False when it had already finished (or does not exist)."""
        reason = "Hủy" + (f" bởi {by}" if by else "")
        return bool(
            self.dispatcher.call(lambda session: self.lifecycle.cancel(session, broadcast_id, reason))
        )

    def stop_all(self, by: str | None = None, reason: str = "") -> None:
        """Stop everything now: a stop command to every zone and cluster, every airing cancelled."""
        text = "Dừng tất cả" + (f" bởi {by}" if by else "") + (f": {reason}" if reason else "")
        self.dispatcher.call(lambda session: self.lifecycle.stop_all(session, text, reason))

    def set_volume(self, targets: list[str], volume: int, by: str | None = None) -> list[str]:
        """See ``volume.set_volume``."""
        if isinstance(targets, str) or not targets:
            raise BroadcastError(
                "Hãy chọn nơi đặt âm lượng: tất cả, mã khu vực hoặc mã cụm loa.", field="targets"
            )
        return set_volume(
            self.sessions, self.transport, self.ledger, targets, volume, by=by, clock=self.clock
        )

    # ------------------------------------------------------------------ reads

    def get(self, broadcast_id: int) -> dict[str, Any] | None:
        with self.sessions() as session:
            return get_broadcast(session, broadcast_id)

    def list(self, *, limit: int = 50, offset: int = 0, state: str | None = None) -> list[dict[str, Any]]:
        with self.sessions() as session:
            return list_broadcasts(session, limit=limit, offset=offset, state=state)

    def title_of(self, broadcast_id: str | int) -> str | None:
        """Title of a broadcast, by id or by the id nodes report (``"12"``, ``"12-r1"``)."""
        return self.titles.lookup(broadcast_id)

    def active_ids(self) -> list[int]:
        return sorted(self.lifecycle.airings)

    @property
    def stats(self) -> dict[str, int]:
        d = self.dispatcher.stats
        return {
            "events": self.receipts.events,
            "chunks_published": self.chunks.published,
            "chunk_requests_deduped": self.chunks.deduped,
            "plays_published": self.sender.plays_published,
            "batches_failed": d.batches_failed,
            "ticks_failed": d.ticks_failed,
            "items_retried": d.items_retried,
            "items_dropped": d.items_dropped,
            "reloads": d.reloads,
        }

    # ------------------------------------------------------------------ offline airings

    def _resolve_slots(self, receipts: list[tuple[str, Event]]) -> None:
        """Offline receipts (docs/protocol.md 11.4) of a scheduled airing the controller has no
        record of (it was down at that time, or is just back): create the airing's record — aired
        now to the clusters that did not air it, if still within the grace, else recorded missed —
        then apply the receipts to it. Dispatcher thread, after its commit."""
        for key in sorted({event.slot for _, event in receipts if event.slot}):
            parsed = parse_slot(key)
            if parsed is None:
                continue
            schedule_id, fire_time = parsed
            with self.sessions() as session:
                row = session.get(Schedule, schedule_id)
                if row is None:
                    _LOGGER.warning("offline receipts for slot %s of a deleted schedule ignored", key)
                    continue
                audio_key = row.audio_key if row.audio_key and self.speech.store.has(row.audio_key) else None
                ann = row.announcement(audio_key)
            deadline = fire_time.timestamp() + self.deferred_grace_s
            try:
                if self.clock() <= deadline:
                    self.submit(
                        ann,
                        approved=True,
                        schedule_id=schedule_id,
                        fire_time=fire_time,
                        valid_until=utc(deadline),
                    )
                else:
                    reason = "Bộ điều khiển không chạy vào giờ phát; các cụm loa còn lại không phát."
                    self.record_missed(ann, schedule_id=schedule_id, fire_time=fire_time, reason=reason)
            except BroadcastError as exc:
                _LOGGER.warning("offline receipts for slot %s: %s", key, exc.message)
                continue
        for speaker, event in receipts:
            self.dispatcher.post_receipt(speaker, event)

    # ------------------------------------------------------------------ helpers

    def _resolve(self, session: Session, targets: tuple[str, ...] | list[str]) -> tuple[str, ...]:
        try:
            return resolve(session, targets).speakers
        except TargetError as exc:
            raise BroadcastError(exc.message, field="targets") from exc

    def _validity(self, session: Session, tier: Tier, base: float, speakers: tuple[str, ...]) -> float:
        valid_s = self.config.emergency_valid_s if tier is Tier.EMERGENCY else self.config.normal_valid_s
        zones = self.targets.zone_map(session)
        return validity_end(tier, base, speakers, zones, self.policy, valid_s)

    def _recent_audio_keys(self) -> list[str]:
        """Audio a node may ask for: recent broadcasts' (a node catching up) and the schedules'
        rendered ahead (named in the nodes' lookahead, docs/protocol.md 11.1), newest first."""
        with self.sessions() as session:
            recent = session.scalars(
                select(Broadcast.audio_key)
                .where(Broadcast.audio_key.is_not(None))
                .order_by(Broadcast.id.desc())
                .limit(_RECENT_AUDIO)
            )
            scheduled = session.scalars(
                select(Schedule.audio_key).where(Schedule.audio_key.is_not(None), Schedule.enabled.is_(True))
            )
            return [*recent, *scheduled]


__all__ = ["DEFAULT_DEFERRED_GRACE_S", "BroadcastManager"]

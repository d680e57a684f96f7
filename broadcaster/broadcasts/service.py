"""The public face of the broadcast lifecycle: what the web, the API and the scheduler call.

Flow of one broadcast::

    submit() --(rows written, id returned at once)--> render on a worker pool
       |-- ann.at in the future: "scheduled", audio rendered ahead now, aired by the dispatcher
       |   when due (a scheduled broadcast survives restarts: it is re-read at start)
       |-- approved=False: "pending_approval" until approve()/reject()
       `-- otherwise: "rendering" -> queued for dispatch ("sending") -> "playing" -> finished

:class:`BroadcastManager` builds the parts and delegates to them; it holds no rule of its own.
The parts, each in its own module:

- ``submissions``: new broadcasts (announcements, relays, live speech, missed fire times, airings
  nodes played offline): the rows written on the caller's thread, the rest posted to the dispatcher;
- ``stream_events``: the stream hub's listener (a source ready, failed, ended), posted to the
  dispatcher;
- ``dispatcher``: the one thread that changes airings; ``lifecycle``: the airings and the changes
  to them (approve, cancel, stop all, render results, stream items, what is due);
  ``decisions``: arbitration's decisions applied at each tick (play, preempt, requeue, wait, expire);
- ``arbitration``: the policy, a pure function; ``ledger``: the only writer of the database rows;
- ``validation`` (the one announcement validator), ``streams`` (relays and live speech: their
  source on the stream hub of ``broadcaster.live``), ``receipts``, ``rendering``, ``chunks``,
  ``commands``, ``recovery``, ``volume`` and ``views`` (reads and the one table of labels).

The policy is described in ``arbitration.py``; README.md summarizes it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster import domain
from broadcaster.broadcasts.arbitration import Policy
from broadcaster.broadcasts.chunks import ChunkServer
from broadcaster.broadcasts.commands import CommandSender
from broadcaster.broadcasts.config import BroadcastsConfig
from broadcaster.broadcasts.dispatcher import Dispatcher
from broadcaster.broadcasts.errors import BroadcastError
from broadcaster.broadcasts.ledger import Ledger
from broadcaster.broadcasts.lifecycle import Lifecycle
from broadcaster.broadcasts.ports import FleetPort, SpeechPort
from broadcaster.broadcasts.receipts import Receipts
from broadcaster.broadcasts.rendering import Renderer
from broadcaster.broadcasts.stream_events import StreamEvents
from broadcaster.broadcasts.streams import SpeechFeed, StreamItems
from broadcaster.broadcasts.submissions import Submissions
from broadcaster.broadcasts.validation import AnnouncementValidator, CheckedStream, Limits
from broadcaster.broadcasts.views import BroadcastTitles, get_broadcast, list_broadcasts
from broadcaster.broadcasts.volume import set_volume
from broadcaster.domain import Tier
from broadcaster.fleet.targets import TargetResolver
from broadcaster.live.channels import Channels
from broadcaster.live.hub import StreamHub
from broadcaster.models import Broadcast, Schedule
from broadcaster.transport import Transport

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
            sessions,
            self.lifecycle,
            self.receipts,
            self.chunks,
            self.ledger,
            lambda receipts: self.submissions.resolve_slots(receipts),
        )
        self.submissions = Submissions(
            sessions=sessions,
            ledger=self.ledger,
            validator=self.validator,
            targets=self.targets,
            titles=self.titles,
            dispatcher=self.dispatcher,
            lifecycle=self.lifecycle,
            hub=hub,
            store=speech.store,
            config=self.config,
            policy=self.policy,
            deferred_grace_s=deferred_grace_s,
            clock=clock,
        )
        if hub is not None:  # the hub's threads tell about the airings' streams
            hub.listener = StreamEvents(
                dispatcher=self.dispatcher,
                lifecycle=self.lifecycle,
                speech=speech,
                sample_rate=hub.config.sample_rate,
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
        return self.submissions.submit(
            ann, approved=approved, schedule_id=schedule_id, fire_time=fire_time, valid_until=valid_until
        )

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
        return self.submissions.submit_stream(
            checked, author=author, source=source, approved=approved, schedule_id=schedule_id,
            fire_time=fire_time,
        )  # fmt: skip

    def start_live(self, *, tier: Tier, targets: tuple[str, ...], author: str | None, title: str = "") -> int:
        """Live speech from the browser: on air as soon as the clusters have the command; its audio
        comes through :meth:`feed_live` until :meth:`end_live` (or the browser goes silent)."""
        return self.submissions.start_live(tier=tier, targets=targets, author=author, title=title)

    def feed_live(self, broadcast_id: int, pcm: bytes) -> bool:
        """PCM from the browser (16 kHz s16le mono); False once the item is not live any more."""
        return self.hub is not None and self.hub.feed(broadcast_id, pcm)

    def end_live(self, broadcast_id: int) -> bool:
        return self.hub is not None and self.hub.end_live(broadcast_id)

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
        return self.submissions.record_missed(
            ann, schedule_id=schedule_id, fire_time=fire_time, reason=reason, relay=relay
        )

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

    # ------------------------------------------------------------------ helpers

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

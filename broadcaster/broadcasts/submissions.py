"""New broadcasts: the rows written for an announcement, a relay or live speech, on the caller's thread.

:class:`Submissions` is what ``BroadcastManager.submit``, ``submit_stream``, ``start_live`` and
``record_missed`` do. Each writes, in one transaction of its own, the announcement, its broadcast
and one delivery per target cluster (``Ledger.insert``), returns the broadcast id at once, and
posts the rest to the dispatcher: render it (ahead, or to air now), air it at its time, or open
its stream source. The initial state is chosen here::

    not approved                   -> pending_approval (until approve()/reject())
    due later than the lead time   -> scheduled (aired by the dispatcher when due)
    otherwise                      -> rendering (a stream item: connecting to its source)

A scheduled airing is recorded once per (schedule, fire time): a second submission of the same
slot returns the first one's id, even when another thread inserted it between the check and the
insert. :meth:`Submissions.resolve_slots` creates the record of a scheduled airing that nodes
played offline while the controller was down (docs/protocol.md 11.4).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from broadcaster import domain
from broadcaster.broadcasts.arbitration import Policy, validity_end
from broadcaster.broadcasts.config import BroadcastsConfig
from broadcaster.broadcasts.dispatcher import Dispatcher
from broadcaster.broadcasts.errors import BroadcastError
from broadcaster.broadcasts.ledger import Ledger, NewBroadcast, utc
from broadcaster.broadcasts.lifecycle import Lifecycle
from broadcaster.broadcasts.ports import AudioStorePort
from broadcaster.broadcasts.state import parse_slot
from broadcaster.broadcasts.streams import LIVE_SOURCE, HubPort
from broadcaster.broadcasts.validation import AnnouncementValidator, CheckedStream, Draft
from broadcaster.broadcasts.views import BroadcastTitles
from broadcaster.domain import Tier
from broadcaster.fleet.targets import TargetError, TargetResolver, resolve
from broadcaster.models import BroadcastState, Schedule
from speakers.protocol import Event

_LOGGER = logging.getLogger(__name__)


class Submissions:
    """See the module docstring. Any thread; the airing itself is the dispatcher's."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        ledger: Ledger,
        validator: AnnouncementValidator,
        targets: TargetResolver,
        titles: BroadcastTitles,
        dispatcher: Dispatcher,
        lifecycle: Lifecycle,
        hub: HubPort | None,
        store: AudioStorePort,
        config: BroadcastsConfig,
        policy: Policy,
        deferred_grace_s: float,
        clock: Callable[[], float],
    ) -> None:
        self.sessions = sessions
        self.ledger = ledger
        self.validator = validator
        self.targets = targets
        self.titles = titles
        self.dispatcher = dispatcher
        self.lifecycle = lifecycle
        self.hub = hub
        self.store = store
        self.config = config
        self.policy = policy
        self.deferred_grace_s = deferred_grace_s
        self.clock = clock

    # ------------------------------------------------------------------ announcements

    def submit(
        self,
        ann: domain.Announcement,
        *,
        approved: bool = True,
        schedule_id: int | None = None,
        fire_time: datetime | None = None,
        valid_until: datetime | None = None,
    ) -> int:
        """See ``BroadcastManager.submit``."""
        checked = self.validator.check(Draft.of(ann), check_time=False)
        tier = checked.tier
        for name, value in (("fire_time", fire_time), ("valid_until", valid_until)):
            if value is not None and value.tzinfo is None:
                raise BroadcastError(f"Thời điểm '{name}' phải có múi giờ (ví dụ 2024-03-15T07:30:00+07:00).")
        now = self.clock()
        at = checked.at.timestamp() if checked.at is not None else None
        future = at is not None and at > now + self.config.lead_s
        state = self._initial_state(approved, future)

        def build(session: Session, speakers: tuple[str, ...]) -> NewBroadcast:
            base = at if future and at is not None else now
            if valid_until is not None:
                until = valid_until.timestamp()
            else:
                until = self._validity(session, tier, base, speakers)
            return NewBroadcast(ann, tier, state, approved, at, until, speakers, schedule_id, fire_time)

        broadcast_id, speakers = self._insert_once(ann, schedule_id, fire_time, build, now)
        if speakers is None:
            return broadcast_id
        self.titles.remember(broadcast_id, ann.title or ann.text[:60])
        _LOGGER.info("broadcast %s submitted: %s, %s targets, %s", broadcast_id, tier, len(speakers), state)
        if state is BroadcastState.SCHEDULED and at is not None:
            self.dispatcher.post_defer(broadcast_id, at)
        # Rendered ahead even when scheduled or awaiting approval (the approver can listen to it).
        self.dispatcher.post_render(broadcast_id, tier, air=state is BroadcastState.RENDERING)
        return broadcast_id

    def record_missed(
        self,
        ann: domain.Announcement,
        *,
        schedule_id: int,
        fire_time: datetime,
        reason: str,
        relay: tuple[int | None, str] | None = None,
    ) -> int | None:
        """See ``BroadcastManager.record_missed``."""
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

    # ------------------------------------------------------------------ stream items

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
        """See ``BroadcastManager.submit_stream``."""
        ann = domain.Announcement(
            text="", tier=checked.tier, targets=checked.targets, title=checked.title, at=checked.at,
            author=author, source=source,
        )  # fmt: skip
        return self._insert_stream(
            ann, "relay", approved, checked.at, checked.end.timestamp(), checked.channel_id,
            checked.channel_name, schedule_id, fire_time,
        )  # fmt: skip

    def start_live(self, *, tier: Tier, targets: tuple[str, ...], author: str | None, title: str = "") -> int:
        """See ``BroadcastManager.start_live``."""
        ann = domain.Announcement(
            text="",
            tier=tier,
            targets=targets,
            title=title or LIVE_SOURCE,
            author=author,
            source=domain.Source.WEB,
        )
        return self._insert_stream(ann, "live", True, None, None, None, LIVE_SOURCE, None, None)

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
        state = self._initial_state(approved, future)

        def build(session: Session, speakers: tuple[str, ...]) -> NewBroadcast:
            until = end_at if end_at is not None else now + self.config.normal_valid_s
            return NewBroadcast(
                ann, Tier(ann.tier), state, approved, at, until, speakers, schedule_id, fire_time,
                kind=kind, channel_id=channel_id, source_name=source_name, end_at=end_at,
            )  # fmt: skip

        broadcast_id, speakers = self._insert_once(ann, schedule_id, fire_time, build, now)
        if speakers is None:
            return broadcast_id
        self.titles.remember(broadcast_id, ann.title or source_name)
        _LOGGER.info("%s %s submitted: %s targets, %s", kind, broadcast_id, len(speakers), state)
        if state is BroadcastState.SCHEDULED and at is not None:
            self.dispatcher.post_defer(broadcast_id, at)
        elif state is BroadcastState.RENDERING and kind == "live" and self.hub is not None:
            self.hub.open_live(broadcast_id)  # at once: the browser's first audio is on its way
        elif state is BroadcastState.RENDERING:
            self.dispatcher.post(lambda session: self.lifecycle.open_stream(session, broadcast_id))
        return broadcast_id

    # ------------------------------------------------------------------ offline airings

    def resolve_slots(self, receipts: list[tuple[str, Event]]) -> None:
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
                audio_key = row.audio_key if row.audio_key and self.store.has(row.audio_key) else None
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

    @staticmethod
    def _initial_state(approved: bool, future: bool) -> BroadcastState:
        if not approved:
            return BroadcastState.PENDING_APPROVAL
        if future:
            return BroadcastState.SCHEDULED
        return BroadcastState.RENDERING

    def _insert_once(
        self,
        ann: domain.Announcement,
        schedule_id: int | None,
        fire_time: datetime | None,
        build: Callable[[Session, tuple[str, ...]], NewBroadcast],
        now: float,
    ) -> tuple[int, tuple[str, ...] | None]:
        """Insert what ``build(session, target clusters)`` makes, in one transaction: (its id, its
        clusters). When that (schedule, fire time) is recorded already: (that id, None). Raises
        BroadcastError when the targets do not resolve."""
        try:
            with self.sessions.begin() as session:
                if schedule_id is not None and fire_time is not None:
                    existing = self.ledger.existing(session, schedule_id, fire_time)
                    if existing is not None:
                        _LOGGER.info(
                            "schedule %s at %s already aired as #%s", schedule_id, fire_time, existing
                        )
                        return existing, None
                speakers = self._resolve(session, ann.targets)
                broadcast_id = self.ledger.insert(session, build(session, speakers), now=now)
        except IntegrityError:
            # Another thread aired the same (schedule, fire time) between our check and insert.
            if schedule_id is None or fire_time is None:
                raise
            with self.sessions() as session:
                existing = self.ledger.existing(session, schedule_id, fire_time)
            if existing is None:
                raise
            return existing, None
        return broadcast_id, speakers

    def _resolve(self, session: Session, targets: tuple[str, ...] | list[str]) -> tuple[str, ...]:
        try:
            return resolve(session, targets).speakers
        except TargetError as exc:
            raise BroadcastError(exc.message, field="targets") from exc

    def _validity(self, session: Session, tier: Tier, base: float, speakers: tuple[str, ...]) -> float:
        valid_s = self.config.emergency_valid_s if tier is Tier.EMERGENCY else self.config.normal_valid_s
        zones = self.targets.zone_map(session)
        return validity_end(tier, base, speakers, zones, self.policy, valid_s)


__all__ = ["Submissions"]

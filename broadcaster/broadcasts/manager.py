"""The broadcast lifecycle: targets, tiers, arbitration, delivery receipts and the decision log.

Flow of one broadcast::

    submit() --(rows written, id returned at once)--> render on a worker pool
       |-- ann.at in the future: state "scheduled", audio rendered ahead now, airing deferred to the
       |   scheduler (``defer``), which calls air() when due
       |-- approved=False: "pending_approval" until approve()/reject()
       `-- otherwise: "rendering" -> queued for dispatch ("sending") -> "playing" -> finished

One worker thread (the *dispatcher*) owns every airing in progress: it receives node receipts,
decides who plays what and when, publishes play/stop commands and audio chunks, and writes each
decision with its reason to the log (``log_entries``). Public methods that change an airing post a
request to it and wait for the answer, so no two threads ever arbitrate at once. Rendering runs on
a thread pool (emergencies on a pool of their own, never behind a long normal render); nothing slow
runs on the MQTT network thread or in the caller's (web request's) thread.

Arbitration policy (per cluster):

- **Synchronized start.** An item is dispatched to all its (online, free) target clusters at once
  with one ``start_at`` a little in the future (``lead_s``, plus ``lead_per_1000_s`` per thousand
  clusters for large fleets), so neighbouring clusters do not echo. Whole zones get one publish on
  the zone topic (with ``targets``), other clusters one each; audio chunks requested by many nodes
  within ``audio_dedupe_s`` are published once.
- **No overlap, FIFO by tier.** A cluster plays one item at a time. Waiting items are ordered by
  tier (emergency, priority, normal), then by arrival. An item waits until *all* its target
  clusters are free, then starts on all of them together after ``gap_s`` of silence ("queued
  behind #7 on loa-03" in the log). While it waits, its clusters are reserved: a later item of the
  same or a lower tier cannot slip in before it (an earlier item still rendering keeps its place the
  same way, so submission order holds). Hence priority goes before every queued normal item, and two
  normal items on one cluster never overlap.
- **Emergency preempts.** An emergency is dispatched at once (``emergency_lead_s``); nodes interrupt
  whatever non-emergency item plays and report it ``preempted`` ("preempted by emergency #12" in the
  log). Items already sent but not yet started on those clusters are stopped and put back in the
  queue. A second emergency follows a running one (nodes never cut an emergency).
- **Interrupted items are re-queued** (``requeue_preempted``, default on): an item interrupted by an
  emergency is aired again from the start on the interrupted clusters once they are free, at most
  ``max_requeues`` times and only while it is still valid; otherwise its delivery stays
  ``preempted`` and the broadcast ends ``interrupted`` (or ``partial`` if other clusters played it).
  A re-airing goes out under a new wire id (``"12-r1"``): nodes remember the ids they finished and
  would take a repeat of ``"12"`` for a duplicate. Receipts of an older attempt are ignored.
- **Quiet hours** (per zone, in the controller's time zone): a *normal* item is held on the clusters
  of a zone in quiet hours until they end, then aired ("held: quiet hours" in the log). Its validity
  is extended by the hold, so a notice submitted at 22:00 airs after the quiet hours instead of being
  refused. Priority and emergency items are exempt.
- **Offline clusters** keep a ``pending`` delivery; when one reconnects while the item is still
  valid (``normal_valid_s``, default 1 h; emergencies ``emergency_valid_s``, default 30 min) it gets
  the item on its own (catch-up). Past validity the delivery becomes ``missed``.
- **Receipts.** A delivery is ``done`` only when the node says so; a node that stays silent
  ``receipt_grace_s`` after the planned end gets ``failed`` ("no receipt"), which a late ``done``
  still corrects. A broadcast is ``done`` when every target played to the end, ``partial`` when
  some did, ``interrupted``/``missed``/``failed`` when none did.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from broadcaster import domain
from broadcaster.broadcasts.config import BroadcastsConfig
from broadcaster.broadcasts.quiet import quiet_until
from broadcaster.domain import ALL_TARGETS, Tier
from broadcaster.models import (
    Announcement,
    Approval,
    Broadcast,
    BroadcastState,
    Delivery,
    DeliveryState,
    LexiconEntry,
    LogEntry,
    Speaker,
    Zone,
)
from broadcaster.queues import drain
from broadcaster.transport import Transport, TransportError
from speakers.protocol import AudioRef, Event, PlayCommand, StopCommand, VolumeCommand, split_chunks

_LOGGER = logging.getLogger(__name__)

# How long a public call waits for the dispatcher before giving up (it never does slow work).
_CALL_TIMEOUT_S = 30.0
# The dispatcher wakes at least this often to look at timers (quiet hours, validity, timeouts).
_MAX_SLEEP_S = 0.5
# Requests for audio chunks are gathered this long before publishing, so one publish serves a zone.
_CHUNK_GATHER_S = 0.03
# A dispatch whose common start is at most this much later than the earliest possible one goes now.
_DISPATCH_SLACK_S = 0.25
# A node's reported start is trusted only within [command sent - this, now + lead]: its clock may
# be off (a start far in the future would keep the cluster "busy" for ever, one far in the past
# would time it out at once). Nodes correct their clock against ours, so honest reports sit well
# inside; one second leaves room for the offset estimate's error.
_START_TOLERANCE_S = 1.0
# Zone membership and quiet hours are re-read this often (and at once after a registry change).
_ZONES_TTL_S = 5.0
# A volume command still queued for an offline cluster is dropped by the broker after this long: a
# node coming back a day later should not jump to a volume somebody set (and maybe undid) meanwhile.
_VOLUME_EXPIRY_S = 3600

_TERMINAL = {
    DeliveryState.DONE,
    DeliveryState.FAILED,
    DeliveryState.PREEMPTED,
    DeliveryState.STOPPED,
    DeliveryState.EXPIRED,
    DeliveryState.MISSED,
    DeliveryState.CANCELLED,
}
# Order of the in-progress delivery states: a late "received" never moves a "playing" back.
_PROGRESS = {
    DeliveryState.PENDING: 0,
    DeliveryState.SENT: 1,
    DeliveryState.RECEIVED: 2,
    DeliveryState.SCHEDULED: 3,
    DeliveryState.PLAYING: 4,
}
NO_RECEIPT = "không nhận được xác nhận từ cụm loa"


def wire_id(broadcast_id: int, attempt: int = 0) -> str:
    """The ``broadcast_id`` sent to nodes for one attempt of a broadcast on a cluster."""
    return str(broadcast_id) if attempt == 0 else f"{broadcast_id}-r{attempt}"


def parse_wire_id(value: str | None) -> tuple[int, int] | None:
    """``"12"`` -> (12, 0), ``"12-r1"`` -> (12, 1); None for anything else."""
    if not value:
        return None
    head, sep, tail = value.partition("-r")
    try:
        return int(head), (int(tail) if sep else 0)
    except ValueError:
        return None


class BroadcastError(Exception):
    """A request that cannot be honoured; the message is meant for the officer or the API client."""


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass
class _Airing:
    """A broadcast that is due and approved, with its audio, until every delivery has ended."""

    id: int
    tier: Tier
    order: int
    title: str
    audio_key: str
    audio: AudioRef
    data: bytes
    duration: float
    valid_until: float
    whole_zones: set[str]
    pending: set[str] = field(default_factory=set)
    active: dict[str, tuple[float, float]] = field(default_factory=dict)  # speaker -> (start, end)
    requeues: dict[str, int] = field(default_factory=dict)
    # Attempt number per cluster; bumped when an item is put back in the queue there. The wire id
    # of attempt n is "12" (n = 0) or "12-r<n>": nodes remember broadcast ids they finished and
    # would treat a re-airing under the same id as a duplicate. Receipts of an older attempt are stale.
    attempts: dict[str, int] = field(default_factory=dict)
    preempted_by: dict[str, int] = field(default_factory=dict)
    sent_at: dict[str, float] = field(default_factory=dict)  # speaker -> when its play command went out
    logged: set[tuple[str, str]] = field(default_factory=set)  # (kind, key) decisions already logged
    started: bool = False
    cancelled: bool = False
    cancel_reason: str = ""


@dataclass
class _Zones:
    speaker_zone: dict[str, str | None]
    members: dict[str, set[str]]
    quiet: dict[str, tuple[str | None, str | None]]
    loaded_at: float


class BroadcastManager:
    """See the module docstring. Built by ``build_services``; ``start()`` runs the dispatcher."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        speech: Any,
        transport: Transport,
        fleet: Any,
        config: BroadcastsConfig | None = None,
        *,
        timezone: str = "Asia/Ho_Chi_Minh",
        max_chars: int = 20_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sessions = sessions
        self.speech = speech
        self.transport = transport
        self.fleet = fleet
        self.config = config or BroadcastsConfig()
        self.tz = ZoneInfo(timezone)
        self.max_chars = max_chars
        self.clock = clock
        self.defer: Callable[[int, datetime], None] | None = None
        self.undefer: Callable[[int], None] | None = None
        self._inbox: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self._airings: dict[int, _Airing] = {}
        self._deferred: dict[int, float] = {}  # used when no scheduler is wired (defer is None)
        self._rendering: set[int] = set()
        self._air_when_rendered: set[int] = set()
        # Items due but still rendering keep their place in the queue: (tier rank, id) -> targets.
        self._render_holds: dict[int, tuple[int, set[str]]] = {}
        self._titles: dict[int, str] = {}
        self._chunk_requests: dict[str, set[int]] = {}
        self._chunk_due: float | None = None
        self._chunk_sent: dict[tuple[str, int], float] = {}
        self._audio_cache: dict[str, bytes] = {}
        self._zones: _Zones | None = None
        self._thread: threading.Thread | None = None
        self._inline_lock = threading.RLock()
        self._pool: ThreadPoolExecutor | None = None
        self._urgent_pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._session: Session | None = None
        self._post_commit: list[Callable[[], None]] = []
        self._deliveries: dict[Any, Any] = {}
        self._loaded = False
        self._needs_reload = False
        self.stats = {
            "events": 0,
            "chunks_published": 0,
            "chunk_requests_deduped": 0,
            "plays_published": 0,
            "batches_failed": 0,
            "ticks_failed": 0,
            "items_retried": 0,
            "items_dropped": 0,
            "reloads": 0,
        }

    # ================================================================== lifecycle

    def start(self) -> None:
        if self._thread is not None:
            return
        fleet = self.fleet
        if fleet is not None:
            fleet.add_event_listener(self._on_event)
            fleet.add_online_listener(self._on_online)
            fleet.title_lookup = self.title_of
        self._thread = threading.Thread(target=self._run, name="broadcasts-dispatcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread = self._thread
        if thread is not None:
            self._inbox.put(None)
            thread.join(timeout=30)
            self._thread = None
        with self._pool_lock:
            pools = [p for p in (self._pool, self._urgent_pool) if p is not None]
            self._pool = self._urgent_pool = None
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)

    def registry_changed(self, *_: Any) -> None:
        """Registry hook: zones and members are re-read at the next decision."""
        self._zones = None

    # ================================================================== public API

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
        tier = self._check_announcement(ann)
        for name, value in (("at", ann.at), ("fire_time", fire_time), ("valid_until", valid_until)):
            if value is not None and value.tzinfo is None:
                raise BroadcastError(f"Thời điểm '{name}' phải có múi giờ (ví dụ 2024-03-15T07:30:00+07:00).")
        now = self.clock()
        at = ann.at.timestamp() if ann.at is not None else None
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
                    existing = self._existing(session, schedule_id, fire_time)
                    if existing is not None:
                        _LOGGER.info(
                            "schedule %s at %s already aired as #%s", schedule_id, fire_time, existing
                        )
                        return existing
                speakers, _ = self._resolve(session, ann.targets)
                base = at if future and at is not None else now
                if valid_until is not None:
                    until = valid_until.timestamp()
                else:
                    until = self._default_valid_until(session, tier, base, speakers)
                broadcast_id = self._insert(
                    session, ann, tier, state, approved, at, until, speakers, schedule_id, fire_time, now
                )
        except IntegrityError:
            # Another thread aired the same (schedule, fire time) between our check and insert.
            if schedule_id is None or fire_time is None:
                raise
            with self.sessions() as session:
                existing = self._existing(session, schedule_id, fire_time)
            if existing is None:
                raise
            return existing
        self._titles[broadcast_id] = ann.title or ann.text[:60]
        _LOGGER.info("broadcast %s submitted: %s, %s targets, %s", broadcast_id, tier, len(speakers), state)
        if state is BroadcastState.SCHEDULED:
            self._defer(broadcast_id, _utc(at))  # type: ignore[arg-type]
        # Rendered ahead even when scheduled or awaiting approval (the approver can listen to it).
        self._post("render", (broadcast_id, tier, state is BroadcastState.RENDERING))
        self._kick()
        return broadcast_id

    def _insert(
        self,
        session: Session,
        ann: domain.Announcement,
        tier: Tier,
        state: BroadcastState,
        approved: bool,
        at: float | None,
        until: float,
        speakers: list[str],
        schedule_id: int | None,
        fire_time: datetime | None,
        now: float,
    ) -> int:
        row = Announcement(
            title=ann.title,
            text=ann.text,
            normalized_text="",
            tier=tier.value,
            targets=list(ann.targets),
            repeat=ann.repeat,
            engine=ann.engine,
            voice=ann.voice,
            audio_key=ann.audio_key,
            author=ann.author,
            source=str(ann.source),
            approval=(Approval.APPROVED if approved else Approval.PENDING).value,
            approved_by=ann.author if approved else None,
            approved_at=_utc(now) if approved else None,
        )
        session.add(row)
        session.flush()
        bc = Broadcast(
            announcement_id=row.id,
            tier=tier.value,
            targets=list(ann.targets),
            state=state.value,
            scheduled_at=_utc(at) if at is not None else None,
            valid_until=_utc(until),
            audio_key=ann.audio_key,
            schedule_id=schedule_id,
            fire_time=fire_time,
            created_by=ann.author,
        )
        session.add(bc)
        session.flush()
        for speaker in speakers:
            session.add(Delivery(broadcast_id=bc.id, speaker_id=speaker, state=DeliveryState.PENDING.value))
        who = f"lịch #{schedule_id}" if schedule_id is not None else (ann.author or str(ann.source))
        when = f", phát lúc {self._local(at)}" if state is BroadcastState.SCHEDULED and at is not None else ""
        self._log(
            session,
            "submitted",
            f"Bản tin #{bc.id} ({tier.label_vi}) tới {len(speakers)} cụm loa, từ {who}{when}",
            bc.id,
        )
        return bc.id

    def approve(self, announcement_id: int, by: str) -> None:
        """Approve a pending announcement: its broadcasts are scheduled or aired now."""
        self._call(lambda session: self._do_approve(session, announcement_id, by))

    def reject(self, announcement_id: int, by: str, reason: str = "") -> None:
        self._call(lambda session: self._do_reject(session, announcement_id, by, reason))

    def air(self, broadcast_id: int) -> None:
        """Air a deferred broadcast now (called by the scheduler when it is due). Idempotent: a
        broadcast that is not waiting for its time any more is left alone."""
        self._post("air", broadcast_id)

    def cancel(self, broadcast_id: int, by: str | None = None) -> bool:
        """Cancel: stop it where it plays, drop what is queued, unschedule it if deferred.
        Returns False when it had already finished (or does not exist)."""
        return bool(self._call(lambda session: self._do_cancel(session, broadcast_id, by, "")))

    def stop_all(self, by: str | None = None, reason: str = "") -> None:
        """Stop everything now: a stop command to every zone and cluster, every airing cancelled."""
        self._call(lambda session: self._do_stop_all(session, by, reason))

    def set_volume(self, targets: list[str], volume: int, by: str | None = None) -> list[str]:
        """Set the volume (0..100) of the clusters named by ``targets`` ("all", zone ids, cluster
        ids, resolved like a broadcast's targets; disabled clusters are left out).

        One QoS 1 ``volume`` command per whole zone (on the zone topic) when every registered member
        of that zone is meant and enabled, one per cluster otherwise. The decision is written to the
        log with who asked. Returns the ids of the clusters addressed, sorted. Raises BroadcastError on
        a bad volume or target, or when the command could not be handed to the broker. Runs in the
        caller's thread (it does not wait for the dispatcher): nothing here is slow."""
        if isinstance(volume, bool) or not isinstance(volume, int) or not 0 <= volume <= 100:
            raise BroadcastError(f"Âm lượng phải là số nguyên từ 0 đến 100 (nhận {volume!r}).")
        if isinstance(targets, str) or not targets or any(not isinstance(t, str) or not t for t in targets):
            raise BroadcastError("Hãy chọn nơi đặt âm lượng: 'all', mã khu vực hoặc mã cụm loa.")
        with self.sessions() as session:
            speakers, whole = self._resolve(session, list(targets))
            registered: dict[str, list[tuple[str, bool]]] = {}
            for sid, zone, enabled in session.execute(select(Speaker.id, Speaker.zone_id, Speaker.enabled)):
                if zone is not None:
                    registered.setdefault(zone, []).append((sid, enabled))
        chosen = set(speakers)
        payload = VolumeCommand(volume=volume).encode()
        topics = self.transport.topics
        by_zone: list[str] = []
        remaining = set(chosen)
        for zone in sorted(whole):
            members = registered.get(zone, [])
            if members and all(enabled for _, enabled in members):
                by_zone.append(zone)
                remaining -= {sid for sid, _ in members}
        try:
            for zone in by_zone:
                self.transport.publish(topics.zone_cmd(zone), payload, qos=1, expiry_s=_VOLUME_EXPIRY_S)
            for speaker in sorted(remaining):
                self.transport.publish(topics.cmd(speaker), payload, qos=1, expiry_s=_VOLUME_EXPIRY_S)
        except TransportError as exc:
            raise BroadcastError(f"Không gửi được lệnh âm lượng tới cụm loa: {exc}") from exc
        where = ", ".join(targets)
        text = f"Đặt âm lượng {volume}% cho {len(chosen)} cụm loa ({where})" + (f" bởi {by}" if by else "")
        with self.sessions.begin() as session:
            self._log(session, "volume", text, None, speakers[0] if len(speakers) == 1 else None)
        return speakers

    def get(self, broadcast_id: int) -> dict[str, Any] | None:
        with self.sessions() as session:
            bc = session.get(Broadcast, broadcast_id)
            return None if bc is None else self._view(bc, deliveries=True)

    def list(self, *, limit: int = 50, offset: int = 0, state: str | None = None) -> list[dict[str, Any]]:
        with self.sessions() as session:
            query = select(Broadcast).order_by(Broadcast.id.desc()).limit(max(1, min(limit, 1000)))
            query = query.offset(max(0, offset))
            if state is not None:
                query = query.where(Broadcast.state == state)
            return [self._view(bc, deliveries=False) for bc in session.scalars(query)]

    def title_of(self, broadcast_id: str | int) -> str | None:
        """Title of a broadcast, by id or by the id nodes report (``"12"``, ``"12-r1"``)."""
        parsed = parse_wire_id(str(broadcast_id))
        if parsed is None:
            return None
        bid = parsed[0]
        title = self._titles.get(bid)
        if title is None:
            with self.sessions() as session:
                bc = session.get(Broadcast, bid)
                if bc is not None:
                    title = bc.announcement.title or bc.announcement.text[:60]
                    self._titles[bid] = title
        return title

    def active_ids(self) -> list[int]:
        return sorted(self._airings)

    # ================================================================== validation

    def _check_announcement(self, ann: domain.Announcement) -> Tier:
        try:
            tier = Tier(ann.tier)
        except ValueError:
            raise BroadcastError(
                f"Mức ưu tiên không hợp lệ: {ann.tier!r} (dùng normal, priority hoặc emergency)."
            ) from None
        if not ann.audio_key and not ann.text.strip():
            raise BroadcastError("Nội dung bản tin trống.")
        if len(ann.text) > self.max_chars:
            raise BroadcastError(f"Bản tin dài {len(ann.text)} ký tự, vượt giới hạn {self.max_chars} ký tự.")
        if ann.audio_key and not self.speech.store.has(ann.audio_key):
            raise BroadcastError(f"Không có tệp âm thanh {ann.audio_key}.")
        if not isinstance(ann.repeat, int) or not 1 <= ann.repeat <= self.config.max_repeat:
            raise BroadcastError(f"Số lần đọc phải từ 1 đến {self.config.max_repeat}.")
        if not ann.targets or any(not isinstance(t, str) or not t for t in ann.targets):
            raise BroadcastError("Hãy chọn nơi phát: 'all', mã khu vực hoặc mã cụm loa.")
        return tier

    def _resolve(self, session: Session, targets: tuple[str, ...] | list[str]) -> tuple[list[str], set[str]]:
        speakers = {
            r.id: (r.zone_id, r.enabled)
            for r in session.execute(select(Speaker.id, Speaker.zone_id, Speaker.enabled))
        }
        zones = set(session.scalars(select(Zone.id)))
        unknown = [t for t in targets if t != ALL_TARGETS and t not in zones and t not in speakers]
        if unknown:
            raise BroadcastError(f"Không có khu vực hay cụm loa: {', '.join(unknown)}.")
        chosen: set[str] = set()
        whole: set[str] = set()
        everything = ALL_TARGETS in targets
        for sid, (zone, enabled) in speakers.items():
            if not enabled:
                continue
            if everything or sid in targets or (zone is not None and zone in targets):
                chosen.add(sid)
        for zone in zones:
            if everything or zone in targets:
                whole.add(zone)
        if not chosen:
            raise BroadcastError("Không có cụm loa nào đang hoạt động ở nơi đã chọn.")
        return sorted(chosen), whole

    def _default_valid_until(self, session: Session, tier: Tier, base: float, speakers: list[str]) -> float:
        if tier is Tier.EMERGENCY:
            return base + self.config.emergency_valid_s
        latest = base
        if tier is Tier.NORMAL:
            zones = self._zone_info(session)
            when = _utc(base)
            for zone in {zones.speaker_zone.get(s) for s in speakers} - {None}:
                qs, qe = zones.quiet.get(zone, (None, None))  # type: ignore[arg-type]
                end = quiet_until(qs, qe, when, self.tz)
                if end is not None:
                    latest = max(latest, end.timestamp())
        return latest + self.config.normal_valid_s

    @staticmethod
    def _existing(session: Session, schedule_id: int, fire_time: datetime) -> int | None:
        return session.scalar(
            select(Broadcast.id).where(Broadcast.schedule_id == schedule_id, Broadcast.fire_time == fire_time)
        )

    # ================================================================== threads plumbing

    def _post(self, kind: str, payload: Any = None) -> None:
        self._inbox.put((kind, payload))

    def _call(self, fn: Callable[[Session], Any]) -> Any:
        """Run ``fn(session)`` on the dispatcher, in its batch transaction, and return its result
        (or run the batch inline under a lock when the dispatcher is not running)."""
        future: Future[Any] = Future()
        self._inbox.put(("call", (fn, future)))
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._drain_inline()
        return future.result(timeout=_CALL_TIMEOUT_S)

    def _on_event(self, speaker: str, event: Event) -> None:  # network thread: enqueue only
        self._inbox.put(("event", (speaker, event)))

    def _on_online(self, speaker: str, online: bool) -> None:  # fleet thread
        if online:
            self._inbox.put(("online", speaker))

    def _pools(self) -> tuple[ThreadPoolExecutor, ThreadPoolExecutor]:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.config.render_workers, thread_name_prefix="render")
            if self._urgent_pool is None:
                self._urgent_pool = ThreadPoolExecutor(1, thread_name_prefix="render-urgent")
            return self._pool, self._urgent_pool

    def _run(self) -> None:
        try:
            with self._inline_lock:
                self._load()
        except Exception:
            _LOGGER.exception("dispatcher: recovery of airings in progress failed")
        while True:
            batch, stop = drain(self._inbox, self._sleep_time(), 2000)
            with self._inline_lock:
                try:
                    self._handle_batch(batch)
                except Exception:
                    _LOGGER.exception("dispatcher: batch failed")
            if stop:
                return

    def _sleep_time(self) -> float:
        sleep = _MAX_SLEEP_S
        if self._chunk_due is not None:
            sleep = min(sleep, max(0.0, self._chunk_due - time.monotonic()))
        return sleep

    def _handle_batch(self, batch: list[tuple[str, Any]]) -> None:
        """One transaction for the whole batch, then the post-commit actions and the answers.

        When the transaction fails (SQLite locked, a flush error), nothing of it is kept: every
        waiting caller gets the exception at once, the in-memory airings are rebuilt from the
        database (they may have moved ahead of what was rolled back), and the batch's other items
        (receipts, renders, "air") are applied once more in a fresh transaction."""
        if self._needs_reload:
            self._reload()
        air_before = set(self._air_when_rendered)
        try:
            answers = self._apply(batch)
        except Exception as exc:
            self.stats["batches_failed"] += 1
            _LOGGER.exception("dispatcher: batch of %s items failed and was rolled back", len(batch))
            self._post_commit = []
            for kind, payload in batch:
                if kind == "call" and not payload[1].done():
                    payload[1].set_exception(exc)
            self._retry(batch, air_before)
            return
        self._finish_batch(answers)

    def _apply(self, batch: list[tuple[str, Any]]) -> list[tuple[Future[Any], Any, BaseException | None]]:
        """Apply ``batch`` and tick in one transaction; returns the answers of the calls (to give
        once committed). A failing tick is logged and its partial work kept (what was published
        stays recorded), and the in-memory state is re-read after the commit."""
        answers: list[tuple[Future[Any], Any, BaseException | None]] = []
        with self.sessions.begin() as session:
            self._session = session
            try:
                for kind, payload in batch:
                    if kind == "call":
                        fn, future = payload
                        try:
                            answers.append((future, fn(session), None))
                        except Exception as exc:  # BroadcastError is raised before any change
                            answers.append((future, None, exc))
                        continue
                    try:
                        if kind == "event":
                            self.stats["events"] += 1
                            self._handle_event(session, *payload)
                        elif kind == "online":
                            pass  # the dispatch pass below serves the reconnected cluster
                        elif kind == "air":
                            self._do_air(session, payload)
                        elif kind == "rendered":
                            self._handle_rendered(session, *payload)
                        elif kind == "render":
                            self._render(*payload)
                    except Exception:
                        _LOGGER.exception("dispatcher: %s failed", kind)
                try:
                    self._tick(session)
                except Exception:
                    # E.g. a TransportError from a publish half-way through a dispatch: the receipts
                    # and decisions of this batch are still committed; memory is re-read below.
                    self.stats["ticks_failed"] += 1
                    self._needs_reload = True
                    _LOGGER.exception("dispatcher: tick failed; state is re-read from the database")
            finally:
                self._session = None
                self._deliveries.clear()
        if self._needs_reload:
            self._reload()
        return answers

    def _finish_batch(self, answers: list[tuple[Future[Any], Any, BaseException | None]]) -> None:
        actions, self._post_commit = self._post_commit, []
        for action in actions:
            try:
                action()
            except Exception:
                _LOGGER.exception("dispatcher: post-commit action failed")
        for future, result, error in answers:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
        self._publish_chunks()

    def _retry(self, batch: list[tuple[str, Any]], air_before: set[int]) -> None:
        """After a rolled-back batch: rebuild memory from the database, then apply the batch's
        items other than calls (their callers already have the error) once more."""
        # A render whose result was rolled back is outstanding again; intentions to air when
        # rendered that the rolled-back batch consumed (or a rolled-back cancel dropped) come back.
        # Renders the batch started run on and stay in _rendering.
        replay = [item for item in batch if item[0] != "call"]
        rendered = {payload[0] for kind, payload in replay if kind == "rendered"}
        self._rendering |= rendered
        self._air_when_rendered |= air_before
        if not self._reload() or not replay:
            if replay:
                self._drop(replay, rendered)
            return
        try:
            answers = self._apply(replay)
        except Exception:
            _LOGGER.exception("dispatcher: retry of %s items failed too", len(replay))
            self._post_commit = []
            self._drop(replay, rendered)
            self._reload()
            return
        self.stats["items_retried"] += len(replay)
        self._finish_batch(answers)

    def _drop(self, items: list[tuple[str, Any]], rendered: set[int]) -> None:
        self.stats["items_dropped"] += len(items)
        # A dropped render result: render again (a cache hit) when the state is next re-read.
        self._rendering -= rendered
        self._needs_reload = True
        _LOGGER.error(
            "dispatcher: dropped %s items after a failed retry: %s",
            len(items),
            ", ".join(sorted({kind for kind, _ in items})),
        )

    def _reload(self) -> bool:
        """Rebuild the in-memory airings from the database (after a rolled-back transaction or a
        failed tick). False (and retried before the next batch) when the database fails again."""
        self._airings.clear()
        self._render_holds.clear()
        self._deliveries.clear()
        self._zones = None
        try:
            self._load(reloaded=True)
        except Exception:
            self._needs_reload = True
            _LOGGER.exception("dispatcher: could not re-read the airings in progress")
            return False
        self._needs_reload = False
        self.stats["reloads"] += 1
        return True

    def _kick(self) -> None:
        """Make the dispatcher look at its inbox now (or process it inline when not running)."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._drain_inline()

    # ================================================================== rendering

    def _render(self, broadcast_id: int, tier: Tier, air: bool) -> None:
        """Dispatcher thread: start a render on the pool (once per broadcast at a time)."""
        if air:
            self._air_when_rendered.add(broadcast_id)
        if broadcast_id in self._rendering:
            return
        self._rendering.add(broadcast_id)
        pool, urgent = self._pools()
        (urgent if tier is Tier.EMERGENCY else pool).submit(self._render_job, broadcast_id)

    def _render_job(self, broadcast_id: int) -> None:
        """On a render worker: synthesize (or look up an uploaded recording), then tell the dispatcher."""
        try:
            with self.sessions() as session:
                bc = session.get(Broadcast, broadcast_id)
                if bc is None:
                    return
                ann = bc.announcement
                lexicon = {e.term: e.reading for e in session.scalars(select(LexiconEntry))}
                text, engine, voice, repeat, key = ann.text, ann.engine, ann.voice, ann.repeat, ann.audio_key
            if key:
                meta = self.speech.store.meta(key) or {}
                result: dict[str, Any] = {
                    "key": key,
                    "engine": meta.get("engine") or "recording",
                    "duration_s": float(meta.get("duration_s") or meta.get("duration") or 0.0),
                    "normalized_text": "",
                }
            else:
                rendered = self.speech.render(
                    text, engine=engine, voice=voice, repeat=repeat, chime=True, lexicon=lexicon or None
                )
                result = {
                    "key": rendered.key,
                    "engine": rendered.engine,
                    "duration_s": float(rendered.duration_s),
                    "normalized_text": rendered.normalized_text,
                }
            self._post("rendered", (broadcast_id, result, None))
        except Exception as exc:  # SpeechError and anything unexpected: the broadcast fails, with why
            _LOGGER.warning("render of broadcast %s failed: %s", broadcast_id, exc)
            self._post("rendered", (broadcast_id, None, str(exc) or type(exc).__name__))
        self._kick()

    def _drain_inline(self) -> None:
        with self._inline_lock:
            batch: list[tuple[str, Any]] = []
            try:
                while True:
                    item = self._inbox.get_nowait()
                    if item is not None:
                        batch.append(item)
            except queue.Empty:
                pass
            if batch:
                self._handle_batch(batch)

    def _handle_rendered(
        self, session: Session, broadcast_id: int, result: dict[str, Any] | None, error: str | None
    ) -> None:
        self._rendering.discard(broadcast_id)
        air = broadcast_id in self._air_when_rendered
        self._air_when_rendered.discard(broadcast_id)
        self._render_holds.pop(broadcast_id, None)
        bc = session.get(Broadcast, broadcast_id)
        if bc is None:
            return
        if error is not None or result is None:
            # A failed render ahead is retried when the broadcast is due (the engine may be back).
            if bc.state == BroadcastState.RENDERING.value or air:
                self._finish_failed(session, bc, f"Không tạo được âm thanh: {error}")
            else:
                self._log(
                    session, "render_failed", f"Bản tin #{bc.id}: chưa tạo được âm thanh: {error}", bc.id
                )
            return
        bc.audio_key = result["key"]
        bc.engine_used = result["engine"]
        bc.duration_s = result["duration_s"]
        ann = bc.announcement
        if result["normalized_text"]:
            ann.normalized_text = result["normalized_text"]
        ann.audio_key = ann.audio_key or result["key"]
        self._pin(result["key"], bc.id)
        self._log(
            session,
            "rendered",
            f"Bản tin #{bc.id}: âm thanh {result['duration_s']:.1f} giây, giọng {result['engine']}",
            bc.id,
        )
        if air or BroadcastState(bc.state) is BroadcastState.RENDERING:
            self._start_airing(session, bc)

    def _pin(self, key: str, broadcast_id: int) -> None:
        """Keep rendered-ahead audio out of the store's LRU eviction until the broadcast ends."""
        pin = getattr(self.speech.store, "pin", None)
        if pin is not None:
            try:
                pin(key, f"broadcast:{broadcast_id}")
            except Exception:
                _LOGGER.debug("pin %s failed", key, exc_info=True)

    def _unpin(self, key: str | None, broadcast_id: int) -> None:
        unpin = getattr(self.speech.store, "unpin", None)
        if key and unpin is not None:
            try:
                unpin(key, f"broadcast:{broadcast_id}")
            except Exception:
                _LOGGER.debug("unpin %s failed", key, exc_info=True)

    # ================================================================== state changes

    def _after_commit(self, action: Callable[[], None]) -> None:
        """Run ``action`` once the dispatcher's transaction is committed (at once outside one).

        The scheduler's job store writes to the same database through another connection; calling
        it while our write transaction is open would wait on our own lock (SQLite)."""
        if self._session is not None:
            self._post_commit.append(action)
        else:
            action()

    def _defer(self, broadcast_id: int, at: datetime) -> None:
        self._after_commit(lambda: self._defer_now(broadcast_id, at))

    def _defer_now(self, broadcast_id: int, at: datetime) -> None:
        if self.defer is not None:
            try:
                self.defer(broadcast_id, at)
                return
            except Exception:
                _LOGGER.exception(
                    "scheduler refused broadcast %s; keeping it in the dispatcher", broadcast_id
                )
        self._deferred[broadcast_id] = at.timestamp()

    def _undefer(self, broadcast_id: int) -> None:
        self._deferred.pop(broadcast_id, None)
        undefer = self.undefer
        if undefer is None:
            return

        def run() -> None:
            try:
                undefer(broadcast_id)
            except Exception:
                _LOGGER.exception("scheduler could not unschedule broadcast %s", broadcast_id)

        self._after_commit(run)

    def _do_air(self, session: Session, broadcast_id: int) -> None:
        bc = session.get(Broadcast, broadcast_id)
        if bc is None:
            _LOGGER.warning("air: no broadcast %s", broadcast_id)
            return
        if bc.state != BroadcastState.SCHEDULED.value:
            _LOGGER.info("air: broadcast %s is %s, not scheduled; ignored", broadcast_id, bc.state)
            return
        self._deferred.pop(broadcast_id, None)
        now = self.clock()
        if bc.valid_until is not None and bc.valid_until.timestamp() < now:
            self._finish(
                session, bc, BroadcastState.MISSED, "Quá hạn phát (bộ điều khiển không chạy đúng giờ)"
            )
            for d in bc.deliveries:
                d.state = DeliveryState.MISSED.value
            return
        self._log(session, "due", f"Bản tin #{bc.id} đến giờ phát", bc.id)
        if bc.audio_key and self.speech.store.has(bc.audio_key):
            bc.state = BroadcastState.RENDERING.value
            self._start_airing(session, bc)
        else:
            bc.state = BroadcastState.RENDERING.value
            self._render(bc.id, Tier(bc.tier), air=True)

    def _do_approve(self, session: Session, announcement_id: int, by: str) -> None:
        ann = session.get(Announcement, announcement_id)
        if ann is None:
            raise BroadcastError(f"Không có bản tin {announcement_id}.")
        if ann.approval == Approval.REJECTED.value:
            raise BroadcastError("Bản tin này đã bị từ chối.")
        ann.approval = Approval.APPROVED.value
        ann.approved_by = by
        ann.approved_at = _utc(self.clock())
        now = self.clock()
        for bc in ann.broadcasts:
            if bc.state != BroadcastState.PENDING_APPROVAL.value:
                continue
            self._log(session, "approved", f"Bản tin #{bc.id} được {by} phê duyệt", bc.id)
            at = bc.scheduled_at.timestamp() if bc.scheduled_at is not None else None
            validity = (
                self.config.emergency_valid_s if bc.tier == Tier.EMERGENCY else self.config.normal_valid_s
            )
            if at is not None and at > now + self.config.lead_s:
                bc.state = BroadcastState.SCHEDULED.value
                self._defer(bc.id, bc.scheduled_at)  # type: ignore[arg-type]
            else:
                if bc.valid_until is None or bc.valid_until.timestamp() < now + validity:
                    bc.valid_until = _utc(now + validity)
                bc.state = BroadcastState.SCHEDULED.value
                self._do_air(session, bc.id)

    def _do_reject(self, session: Session, announcement_id: int, by: str, reason: str) -> None:
        ann = session.get(Announcement, announcement_id)
        if ann is None:
            raise BroadcastError(f"Không có bản tin {announcement_id}.")
        ann.approval = Approval.REJECTED.value
        ann.approved_by = by
        ann.approved_at = _utc(self.clock())
        for bc in ann.broadcasts:
            if BroadcastState(bc.state).finished:
                continue
            if bc.state == BroadcastState.SCHEDULED.value:
                self._undefer(bc.id)
            for d in bc.deliveries:
                if DeliveryState(d.state) not in _TERMINAL:
                    d.state = DeliveryState.CANCELLED.value
            self._finish(
                session, bc, BroadcastState.CANCELLED, f"Bị {by} từ chối" + (f": {reason}" if reason else "")
            )

    def _do_cancel(self, session: Session, broadcast_id: int, by: str | None, reason: str) -> bool:
        bc = session.get(Broadcast, broadcast_id)
        if bc is None or BroadcastState(bc.state).finished:
            return False
        text = "Huỷ" + (f" bởi {by}" if by else "") + (f": {reason}" if reason else "")
        self._cancel_one(session, bc, text)
        return True

    def _cancel_one(self, session: Session, bc: Broadcast, reason: str, send_stop: bool = True) -> None:
        if bc.state == BroadcastState.SCHEDULED.value:
            self._undefer(bc.id)
        airing = self._airings.get(bc.id)
        if airing is not None:
            airing.cancelled = True
            airing.cancel_reason = reason
            if send_stop and airing.active:
                self._send_stop(session, airing, set(airing.active), reason)
            airing.pending.clear()
        for d in bc.deliveries:
            if DeliveryState(d.state) in (DeliveryState.PENDING, DeliveryState.SENT) or (
                airing is None and DeliveryState(d.state) not in _TERMINAL
            ):
                d.state = DeliveryState.CANCELLED.value
                d.reason = reason
        self._finish(session, bc, BroadcastState.CANCELLED, reason)
        if airing is not None and not airing.active:
            self._drop_airing(airing)

    def _do_stop_all(self, session: Session, by: str | None, reason: str) -> None:
        text = "Dừng tất cả" + (f" bởi {by}" if by else "") + (f": {reason}" if reason else "")
        zones = self._zone_info(session, force=True)
        stop = StopCommand(broadcast_id=None, reason=reason or "stop_all").encode()
        for zone in sorted(zones.members):
            self.transport.publish(self.transport.topics.zone_cmd(zone), stop, qos=1, expiry_s=60)
        for speaker, zone in sorted(zones.speaker_zone.items()):
            if zone is None:
                self.transport.publish(self.transport.topics.cmd(speaker), stop, qos=1, expiry_s=60)
        for airing in list(self._airings.values()):
            bc = session.get(Broadcast, airing.id)
            if bc is None:
                continue
            if not BroadcastState(bc.state).finished:
                self._cancel_one(session, bc, text, send_stop=False)
            else:
                airing.cancelled = True
        for bc in session.scalars(select(Broadcast).where(Broadcast.state == BroadcastState.RENDERING.value)):
            self._air_when_rendered.discard(bc.id)
            self._render_holds.pop(bc.id, None)
            self._cancel_one(session, bc, text, send_stop=False)
        self._log(session, "stop_all", text, None)

    # ================================================================== airing

    def _start_airing(self, session: Session, bc: Broadcast) -> None:
        """The broadcast is due, approved and rendered: queue it for dispatch."""
        if bc.id in self._airings:
            return
        key = bc.audio_key
        try:
            data = self.speech.store.read_bytes(key)
        except Exception as exc:
            self._finish_failed(session, bc, f"Không đọc được tệp âm thanh {key}: {exc}")
            return
        duration = float(bc.duration_s or 0.0)
        audio = AudioRef.for_bytes(data, duration_s=duration)
        zones = self._zone_info(session)
        targets = set(bc.targets or [])
        whole = {z for z in zones.members if ALL_TARGETS in targets or z in targets}
        airing = _Airing(
            id=bc.id,
            tier=Tier(bc.tier),
            order=bc.id,  # ids grow with arrival: a re-queued item keeps its place
            title=bc.announcement.title or bc.announcement.text[:60],
            audio_key=key,  # type: ignore[arg-type]
            audio=audio,
            data=data,
            duration=duration,
            valid_until=bc.valid_until.timestamp()
            if bc.valid_until
            else self.clock() + self.config.normal_valid_s,
            whole_zones=whole,
        )
        for d in bc.deliveries:
            if d.state == DeliveryState.PENDING.value:
                airing.pending.add(d.speaker_id)
        self._airings[bc.id] = airing
        self._audio_cache[audio.id] = data
        self._titles[bc.id] = airing.title
        bc.state = BroadcastState.SENDING.value

    def _tick(self, session: Session) -> None:
        """Expire, time out and dispatch. Runs after every batch and at least every half second."""
        now = self.clock()
        for bid, at in list(self._deferred.items()):
            if at <= now:
                self._do_air(session, bid)
        for airing in list(self._airings.values()):
            self._check_timeouts(session, airing, now)
        self._dispatch(session, now)
        for airing in list(self._airings.values()):
            self._maybe_finish(session, airing)

    def _check_timeouts(self, session: Session, airing: _Airing, now: float) -> None:
        if airing.pending and now > airing.valid_until:
            for speaker in sorted(airing.pending):
                held = ("held", speaker) in airing.logged
                self._set_delivery(
                    session,
                    airing.id,
                    speaker,
                    DeliveryState.MISSED,
                    reason="hết hạn trong giờ yên lặng"
                    if held
                    else "cụm loa không kết nối trong thời hạn phát",
                )
            self._log(
                session,
                "missed",
                f"Bản tin #{airing.id}: quá hạn với {', '.join(sorted(airing.pending))}",
                airing.id,
            )
            airing.pending.clear()
        for speaker, (_, end) in list(airing.active.items()):
            if now > end + self.config.receipt_grace_s:
                del airing.active[speaker]
                self._set_delivery(
                    session, airing.id, speaker, DeliveryState.FAILED, reason=NO_RECEIPT, only_open=True
                )
                self._log(
                    session,
                    "no_receipt",
                    f"Bản tin #{airing.id}: {speaker} không báo đã phát xong",
                    airing.id,
                    speaker,
                )

    def _busy(
        self, speaker: str, exclude: int | None = None, tiers: set[Tier] | None = None
    ) -> tuple[float, int | None]:
        """(time the cluster is free, id of the item it waits for), counting items of ``tiers``."""
        until, blocker = 0.0, None
        for airing in self._airings.values():
            if airing.id == exclude or (tiers is not None and airing.tier not in tiers):
                continue
            slot = airing.active.get(speaker)
            if slot is not None and slot[1] > until:
                until, blocker = slot[1], airing.id
        return until, blocker

    def _holds(self, session: Session) -> list[tuple[int, int, set[str]]]:
        """Items due but still rendering, as (tier rank, id, targets): they keep their place."""
        for bid in self._air_when_rendered - set(self._render_holds):
            bc = session.get(Broadcast, bid)
            if bc is not None:
                self._render_holds[bid] = (Tier(bc.tier).rank, {d.speaker_id for d in bc.deliveries})
        return [(rank, bid, targets) for bid, (rank, targets) in self._render_holds.items()]

    def _dispatch(self, session: Session, now: float) -> None:
        if not self._airings:
            return
        online = self._online()
        zones = self._zone_info(session)
        reserved: set[str] = set()
        # Submission order holds even when a later item renders faster: an earlier item of the same
        # or a higher tier that is still rendering reserves its clusters (emergencies ignore this).
        queue: list[tuple[int, int, _Airing | set[str]]] = [
            (-a.tier.rank, a.order, a) for a in self._airings.values()
        ]
        queue += [(-rank, bid, targets) for rank, bid, targets in self._holds(session)]
        for _, _, entry in sorted(queue, key=lambda q: (q[0], q[1])):
            if not isinstance(entry, _Airing):
                reserved.update(entry)
                continue
            airing = entry
            if not airing.pending or airing.cancelled:
                continue
            group: list[str] = []
            for speaker in sorted(airing.pending):
                if speaker not in online:
                    if ("offline", speaker) not in airing.logged:
                        airing.logged.add(("offline", speaker))
                        self._log(
                            session,
                            "waiting",
                            f"Bản tin #{airing.id}: chờ {speaker} kết nối lại",
                            airing.id,
                            speaker,
                        )
                        self._set_delivery(
                            session,
                            airing.id,
                            speaker,
                            DeliveryState.PENDING,
                            reason="cụm loa đang mất kết nối",
                        )
                    continue
                if airing.tier is Tier.NORMAL:
                    zone = zones.speaker_zone.get(speaker)
                    qs, qe = zones.quiet.get(zone, (None, None)) if zone else (None, None)
                    end = quiet_until(qs, qe, _utc(now), self.tz)
                    if end is not None:
                        if ("held", speaker) not in airing.logged:
                            airing.logged.add(("held", speaker))
                            reason = f"tạm giữ: giờ yên lặng {zone} đến {end.strftime('%H:%M')}"
                            self._log(session, "held", f"Bản tin #{airing.id}: {reason}", airing.id, speaker)
                            self._set_delivery(
                                session, airing.id, speaker, DeliveryState.PENDING, reason=reason
                            )
                        continue
                group.append(speaker)
            if not group:
                continue
            if airing.tier is not Tier.EMERGENCY and reserved.intersection(group):
                # An earlier item waits for (or renders for) some of these clusters: wait for it, all
                # together, so the item still starts at one instant everywhere.
                reserved.update(group)
                continue
            if airing.tier is Tier.EMERGENCY:
                # Interrupts everything but another emergency, which it follows (nodes do the same).
                start = now + self.config.emergency_lead_s + self._lead_extra(len(group))
                for speaker in group:
                    until, blocker = self._busy(speaker, exclude=airing.id, tiers={Tier.EMERGENCY})
                    if until + self.config.gap_s > start:
                        start = until + self.config.gap_s
                        self._log_once(session, airing, "queued", speaker, blocker)
                self._preempt_for(session, airing, group, now)
                self._send_play(session, airing, group, start, zones)
                continue
            free, blockers = 0.0, {}
            for speaker in group:
                until, blocker = self._busy(speaker, exclude=airing.id)
                if until > now - self.config.gap_s:
                    blockers[speaker] = blocker
                free = max(free, until)
            earliest = now + self.config.lead_s + self._lead_extra(len(group))
            start = max(earliest, free + self.config.gap_s) if free else earliest
            if start - earliest <= _DISPATCH_SLACK_S:
                self._send_play(session, airing, group, start, zones)  # now busy: later items see it
            else:
                # Wait for all of them together; meanwhile nobody later may slip in before it.
                reserved.update(group)
                for speaker, blocker in sorted(blockers.items()):
                    self._log_once(session, airing, "queued", speaker, blocker)

    def _lead_extra(self, clusters: int) -> float:
        """More clusters need longer to receive the command and fetch the audio before the common
        start: ``lead_per_1000_s`` per thousand (0.03 s for a commune of 9, 6 s for 2,000)."""
        return self.config.lead_per_1000_s * clusters / 1000

    def _log_once(
        self, session: Session, airing: _Airing, kind: str, speaker: str, blocker: int | None
    ) -> None:
        if blocker is None or (kind, f"{speaker}:{blocker}") in airing.logged:
            return
        airing.logged.add((kind, f"{speaker}:{blocker}"))
        self._log(
            session, kind, f"Bản tin #{airing.id}: xếp hàng sau #{blocker} trên {speaker}", airing.id, speaker
        )

    def _preempt_for(self, session: Session, emergency: _Airing, group: list[str], now: float) -> None:
        """Record what the emergency interrupts; stop (and re-queue) what was sent but not started."""
        for other in list(self._airings.values()):
            if other.id == emergency.id or other.tier is Tier.EMERGENCY:
                continue
            hit = [s for s in group if s in other.active]
            if not hit:
                continue
            not_started = [s for s in hit if other.active[s][0] > now]
            playing = [s for s in hit if other.active[s][0] <= now]
            for speaker in playing:
                other.preempted_by[speaker] = emergency.id
                self._log(
                    session,
                    "preempted",
                    f"Bản tin #{other.id} bị ngắt bởi bản tin khẩn cấp #{emergency.id} trên {speaker}",
                    other.id,
                    speaker,
                )
                # The node interrupts it when the emergency starts; the cluster is busy with the
                # emergency from then on.
                start, _ = other.active[speaker]
                other.active[speaker] = (start, now + self.config.emergency_lead_s)
            if not_started:
                self._send_stop(session, other, set(not_started), f"khẩn cấp #{emergency.id}")
                for speaker in not_started:
                    del other.active[speaker]
                    other.attempts[speaker] = other.attempts.get(speaker, 0) + 1
                    other.pending.add(speaker)
                    self._set_delivery(
                        session,
                        other.id,
                        speaker,
                        DeliveryState.PENDING,
                        reason=f"hoãn vì bản tin khẩn cấp #{emergency.id}",
                        force=True,
                    )
                self._log(
                    session,
                    "requeued",
                    f"Bản tin #{other.id} hoãn trên {', '.join(not_started)} vì bản tin khẩn cấp #{emergency.id}",
                    other.id,
                )

    def _send_play(
        self, session: Session, airing: _Airing, group: list[str], start: float, zones: _Zones
    ) -> None:
        by_zone: dict[tuple[str, int], list[str]] = {}
        for speaker in group:
            key = (zones.speaker_zone.get(speaker) or "", airing.attempts.setdefault(speaker, 0))
            by_zone.setdefault(key, []).append(speaker)
        expiry = max(1.0, airing.valid_until - self.clock())
        tier = airing.tier.value
        for (zone, attempt), members in sorted(by_zone.items()):
            base = PlayCommand(
                broadcast_id=wire_id(airing.id, attempt),
                audio=airing.audio,
                start_at=start,
                tier=tier,  # type: ignore[arg-type]
                volume=self.config.volume,
                valid_until=airing.valid_until,
                title=airing.title,
            )
            if zone and zone in airing.whole_zones and len(members) >= 2:
                command = dataclasses.replace(base, targets=tuple(sorted(members)))
                self.transport.publish(
                    self.transport.topics.zone_cmd(zone), command.encode(), qos=1, expiry_s=expiry
                )
                self.stats["plays_published"] += 1
            else:
                payload = base.encode()
                for speaker in members:
                    self.transport.publish(
                        self.transport.topics.cmd(speaker), payload, qos=1, expiry_s=expiry
                    )
                    self.stats["plays_published"] += 1
        end = start + airing.duration
        sent_at = self.clock()
        for speaker in group:
            airing.sent_at[speaker] = sent_at
            airing.pending.discard(speaker)
            airing.active[speaker] = (start, end)
            self._set_delivery(session, airing.id, speaker, DeliveryState.SENT, reason=None, force=True)
        bc = session.get(Broadcast, airing.id)
        if bc is not None:
            if bc.start_at is None:
                bc.start_at = _utc(start)
            if bc.state in (BroadcastState.RENDERING.value, BroadcastState.SCHEDULED.value):
                bc.state = BroadcastState.SENDING.value
        airing.started = True
        self._log(
            session,
            "sent",
            f"Bản tin #{airing.id} gửi tới {len(group)} cụm loa, bắt đầu lúc {self._local(start, seconds=True)}",
            airing.id,
        )

    def _send_stop(self, session: Session, airing: _Airing, speakers: set[str], reason: str) -> None:
        """Stop the current attempt on ``speakers`` (one zone publish where a whole zone stops)."""
        zones = self._zone_info(session)
        remaining = set(speakers)
        for zone, members in sorted(zones.members.items()):
            attempts = {airing.attempts.get(s, 0) for s in members}
            if (
                len(members) >= 2
                and members <= remaining
                and zone in airing.whole_zones
                and len(attempts) == 1
            ):
                stop = StopCommand(broadcast_id=wire_id(airing.id, attempts.pop()), reason=reason)
                self.transport.publish(
                    self.transport.topics.zone_cmd(zone), stop.encode(), qos=1, expiry_s=60
                )
                remaining -= members
        for speaker in sorted(remaining):
            stop = StopCommand(
                broadcast_id=wire_id(airing.id, airing.attempts.get(speaker, 0)), reason=reason
            )
            self.transport.publish(self.transport.topics.cmd(speaker), stop.encode(), qos=1, expiry_s=60)

    # ================================================================== receipts

    def _handle_event(self, session: Session, speaker: str, event: Event) -> None:
        parsed = parse_wire_id(event.broadcast_id)
        bid, attempt = parsed if parsed is not None else (None, 0)
        if event.state == "need_audio":
            self._want_chunks(event)
            return
        if event.state == "error":
            self._log(session, "node_error", f"{speaker} báo lỗi: {event.reason or ''}".strip(), bid, speaker)
            return
        if bid is None:
            return
        airing = self._airings.get(bid)
        if airing is not None and attempt != airing.attempts.setdefault(speaker, attempt):
            _LOGGER.debug("stale receipt %s of %s from %s ignored", event.state, event.broadcast_id, speaker)
            return
        state = event.state
        if state == "received":
            self._set_delivery(session, bid, speaker, DeliveryState.RECEIVED, only_open=True)
        elif state == "scheduled":
            self._set_delivery(session, bid, speaker, DeliveryState.SCHEDULED, only_open=True)
        elif state == "playing":
            started = self._trusted_start(airing, speaker, event.started_at or event.ts)
            self._set_delivery(
                session, bid, speaker, DeliveryState.PLAYING, only_open=True, started_at=started
            )
            if airing is not None and speaker in airing.active:
                airing.active[speaker] = (started, started + airing.duration)
            bc = session.get(Broadcast, bid)
            if bc is not None and bc.state == BroadcastState.SENDING.value:
                bc.state = BroadcastState.PLAYING.value
        elif state == "done":
            self._set_delivery(
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
            self._release(airing, speaker)
            if airing is None:
                self._refinish(session, bid)
        elif state == "preempted":
            self._handle_preempted(session, airing, bid, speaker, event)
        elif state in ("stopped", "failed", "expired"):
            mapped = {
                "stopped": DeliveryState.STOPPED,
                "failed": DeliveryState.FAILED,
                "expired": DeliveryState.EXPIRED,
            }[state]
            reason = event.reason or (
                airing.cancel_reason if airing is not None and airing.cancelled else None
            )
            self._set_delivery(
                session,
                bid,
                speaker,
                mapped,
                reason=reason,
                finished_at=event.ts,
                seconds_played=event.seconds_played,
                only_open=True,
            )
            self._release(airing, speaker)
            self._log(
                session,
                "delivery",
                f"Bản tin #{bid} trên {speaker}: {state}" + (f" ({reason})" if reason else ""),
                bid,
                speaker,
            )

    def _trusted_start(self, airing: _Airing | None, speaker: str, reported: float) -> float:
        """The node's reported start, clamped to [command sent - tolerance, now + lead]."""
        now = self.clock()
        if airing is not None and speaker in airing.sent_at:
            earliest = airing.sent_at[speaker] - _START_TOLERANCE_S
        elif airing is not None and speaker in airing.active:
            # Re-read after a restart: the planned start minus the longest lead it could have had.
            earliest = airing.active[speaker][0] - self.config.lead_s - _START_TOLERANCE_S
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
                self._local(clamped, seconds=True),
            )
        return clamped

    def _handle_preempted(
        self, session: Session, airing: _Airing | None, bid: int, speaker: str, event: Event
    ) -> None:
        by = airing.preempted_by.pop(speaker, None) if airing is not None else None
        cause = f"bản tin khẩn cấp #{by}" if by is not None else (event.reason or "bản tin ưu tiên cao hơn")
        if airing is not None:
            airing.active.pop(speaker, None)
            count = airing.requeues.get(speaker, 0)
            if (
                self.config.requeue_preempted
                and not airing.cancelled
                and count < self.config.max_requeues
                and self.clock() < airing.valid_until
            ):
                airing.requeues[speaker] = count + 1
                airing.attempts[speaker] = airing.attempts.get(speaker, 0) + 1
                airing.pending.add(speaker)
                self._set_delivery(
                    session,
                    bid,
                    speaker,
                    DeliveryState.PENDING,
                    reason=f"bị ngắt bởi {cause}; sẽ phát lại từ đầu",
                    seconds_played=event.seconds_played,
                    force=True,
                )
                self._log(
                    session,
                    "requeued",
                    f"Bản tin #{bid} bị ngắt bởi {cause} trên {speaker}; xếp hàng phát lại",
                    bid,
                    speaker,
                )
                return
        self._set_delivery(
            session,
            bid,
            speaker,
            DeliveryState.PREEMPTED,
            reason=f"bị ngắt bởi {cause}",
            finished_at=event.ts,
            seconds_played=event.seconds_played,
            only_open=True,
        )
        self._log(session, "preempted", f"Bản tin #{bid} bị ngắt bởi {cause} trên {speaker}", bid, speaker)

    def _release(self, airing: _Airing | None, speaker: str) -> None:
        if airing is not None:
            airing.active.pop(speaker, None)

    def _delivery(self, session: Session, bid: int, speaker: str) -> Delivery | None:
        """The delivery row, from a per-transaction cache filled one broadcast at a time (a receipt
        storm from 2,000 clusters costs one query per broadcast and batch, not one per receipt)."""
        cache = self._deliveries
        if cache.get("session") is not session:
            cache.clear()
            cache["session"] = session
        rows = cache.get(bid)
        if rows is None:
            rows = cache[bid] = {
                d.speaker_id: d for d in session.scalars(select(Delivery).where(Delivery.broadcast_id == bid))
            }
        return rows.get(speaker)

    def _set_delivery(
        self,
        session: Session,
        bid: int,
        speaker: str,
        state: DeliveryState,
        *,
        reason: str | None | object = ...,
        only_open: bool = False,
        force: bool = False,
        started_at: float | None = None,
        finished_at: float | None = None,
        seconds_played: float | None = None,
        rms_dbfs: float | None = None,
    ) -> None:
        d = self._delivery(session, bid, speaker)
        if d is None:
            return
        current = DeliveryState(d.state)
        if not force:
            if current is DeliveryState.DONE:
                return
            if (
                current in _TERMINAL
                and only_open
                and not (current is DeliveryState.FAILED and d.reason == NO_RECEIPT)
            ):
                return
            if state in _PROGRESS and current in _PROGRESS and _PROGRESS[state] < _PROGRESS[current]:
                return
        elif (
            current is DeliveryState.DONE
            and state is not DeliveryState.DONE
            and state is not DeliveryState.SENT
        ):
            return
        d.state = state.value
        if reason is not ...:
            d.reason = reason  # type: ignore[assignment]
        if started_at is not None:
            d.started_at = _utc(started_at)
        if finished_at is not None:
            d.finished_at = _utc(finished_at)
        # Non-finite figures are refused at ingest; never let one reach the database or the reports.
        if seconds_played is not None and math.isfinite(seconds_played):
            d.seconds_played = seconds_played
        if rms_dbfs is not None and math.isfinite(rms_dbfs):
            d.rms_dbfs = rms_dbfs

    # ================================================================== finishing

    def _maybe_finish(self, session: Session, airing: _Airing) -> None:
        if airing.pending or airing.active:
            return
        bc = session.get(Broadcast, airing.id)
        if bc is not None and not BroadcastState(bc.state).finished:
            state, reason = self._outcome(bc)
            self._finish(session, bc, state, reason)
        self._drop_airing(airing)

    def _refinish(self, session: Session, bid: int) -> None:
        """A late receipt for a finished broadcast: recompute its outcome."""
        bc = session.get(Broadcast, bid)
        if (
            bc is None
            or bc.state in (BroadcastState.CANCELLED.value,)
            or not BroadcastState(bc.state).finished
        ):
            return
        if any(DeliveryState(d.state) not in _TERMINAL for d in bc.deliveries):
            return
        state, reason = self._outcome(bc)
        if state.value != bc.state:
            bc.state = state.value
            bc.reason = reason
            self._log(session, "finished", f"Bản tin #{bc.id}: {reason}", bc.id)

    @staticmethod
    def _outcome(bc: Broadcast) -> tuple[BroadcastState, str]:
        states = [DeliveryState(d.state) for d in bc.deliveries]
        total = len(states)
        done = sum(1 for s in states if s is DeliveryState.DONE)
        others = sorted(
            f"{d.speaker_id}: {d.state}" for d in bc.deliveries if d.state != DeliveryState.DONE.value
        )
        detail = f"{done}/{total} cụm loa phát trọn" + (f"; {', '.join(others[:20])}" if others else "")
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

    def _finish(self, session: Session, bc: Broadcast, state: BroadcastState, reason: str) -> None:
        bc.state = state.value
        bc.reason = reason
        bc.finished_at = _utc(self.clock())
        self._unpin(bc.audio_key, bc.id)
        self._log(session, "finished", f"Bản tin #{bc.id}: {state.value} — {reason}", bc.id)

    def _finish_failed(self, session: Session, bc: Broadcast, reason: str) -> None:
        for d in bc.deliveries:
            if DeliveryState(d.state) not in _TERMINAL:
                d.state = DeliveryState.FAILED.value
                d.reason = reason
        self._finish(session, bc, BroadcastState.FAILED, reason)

    def _drop_airing(self, airing: _Airing) -> None:
        self._airings.pop(airing.id, None)
        if not any(a.audio.id == airing.audio.id for a in self._airings.values()):
            self._audio_cache.pop(airing.audio.id, None)

    # ================================================================== audio chunks

    def _want_chunks(self, event: Event) -> None:
        audio_id = event.audio_id
        if not audio_id:
            return
        data = self._audio_for(audio_id)
        if data is None:
            _LOGGER.warning("a node asked for unknown audio %s", audio_id)
            return
        count = len(split_chunks(data))
        wanted = {i for i in event.missing if 0 <= i < count} if event.missing else set(range(count))
        self._chunk_requests.setdefault(audio_id, set()).update(wanted)
        if self._chunk_due is None:
            self._chunk_due = time.monotonic() + _CHUNK_GATHER_S

    def _audio_for(self, audio_id: str) -> bytes | None:
        data = self._audio_cache.get(audio_id)
        if data is not None:
            return data
        with self.sessions() as session:
            keys = session.scalars(
                select(Broadcast.audio_key)
                .where(Broadcast.audio_key.is_not(None))
                .order_by(Broadcast.id.desc())
                .limit(200)
            ).all()
        for key in dict.fromkeys(keys):
            meta = self.speech.store.meta(key) or {}
            if meta.get("sha256") == audio_id:
                try:
                    data = self.speech.store.read_bytes(key)
                except Exception:
                    return None
                self._audio_cache[audio_id] = data
                return data
        return None

    def _publish_chunks(self) -> None:
        if self._chunk_due is None or time.monotonic() < self._chunk_due:
            return
        requests, self._chunk_requests, self._chunk_due = self._chunk_requests, {}, None
        now = time.monotonic()
        window = self.config.audio_dedupe_s
        for audio_id, indexes in requests.items():
            data = self._audio_for(audio_id)
            if data is None:
                continue
            chunks = split_chunks(data)
            for index in sorted(indexes):
                last = self._chunk_sent.get((audio_id, index))
                if last is not None and now - last < window:
                    self.stats["chunk_requests_deduped"] += 1
                    continue
                self._chunk_sent[(audio_id, index)] = now
                self.transport.publish(
                    self.transport.topics.audio_chunk(audio_id, index), chunks[index], qos=1, expiry_s=600
                )
                self.stats["chunks_published"] += 1
        if len(self._chunk_sent) > 10_000:
            self._chunk_sent = {k: t for k, t in self._chunk_sent.items() if now - t < window}

    # ================================================================== helpers

    def _online(self) -> set[str]:
        fleet = self.fleet
        if fleet is None:
            return set()
        return fleet.online_ids()

    def _zone_info(self, session: Session, force: bool = False) -> _Zones:
        zones = self._zones
        if zones is not None and not force and time.monotonic() - zones.loaded_at < _ZONES_TTL_S:
            return zones
        speaker_zone: dict[str, str | None] = {}
        members: dict[str, set[str]] = {}
        for sid, zone, enabled in session.execute(select(Speaker.id, Speaker.zone_id, Speaker.enabled)):
            speaker_zone[sid] = zone
            if zone is not None and enabled:
                members.setdefault(zone, set()).add(sid)
        quiet = {z.id: (z.quiet_start, z.quiet_end) for z in session.scalars(select(Zone))}
        for zone in quiet:
            members.setdefault(zone, set())
        self._zones = _Zones(speaker_zone, members, quiet, time.monotonic())
        return self._zones

    def _local(self, epoch: float, seconds: bool = False) -> str:
        return _utc(epoch).astimezone(self.tz).strftime("%H:%M:%S %d/%m/%Y" if seconds else "%H:%M %d/%m/%Y")

    def _log(
        self, session: Session, kind: str, message: str, broadcast_id: int | None, speaker: str | None = None
    ) -> None:
        session.add(
            LogEntry(
                ts=_utc(self.clock()),
                kind=kind,
                message=message,
                broadcast_id=broadcast_id,
                speaker_id=speaker,
            )
        )
        _LOGGER.info("%s", message)

    def _view(self, bc: Broadcast, deliveries: bool) -> dict[str, Any]:
        ann = bc.announcement
        out: dict[str, Any] = {
            "id": bc.id,
            "announcement_id": bc.announcement_id,
            "state": bc.state,
            "tier": bc.tier,
            "targets": list(bc.targets or []),
            "title": ann.title,
            "text": ann.text,
            "normalized_text": ann.normalized_text,
            "approval": ann.approval,
            "author": ann.author,
            "source": ann.source,
            "scheduled_at": _iso(bc.scheduled_at),
            "start_at": _iso(bc.start_at),
            "finished_at": _iso(bc.finished_at),
            "valid_until": _iso(bc.valid_until),
            "created": _iso(bc.created),
            "engine": bc.engine_used,
            "audio_key": bc.audio_key,
            "duration_s": bc.duration_s,
            "schedule_id": bc.schedule_id,
            "fire_time": _iso(bc.fire_time),
            "reason": bc.reason,
        }
        if deliveries:
            out["deliveries"] = [
                {
                    "speaker": d.speaker_id,
                    "state": d.state,
                    "started_at": _iso(d.started_at),
                    "finished_at": _iso(d.finished_at),
                    "seconds_played": d.seconds_played,
                    "rms_dbfs": d.rms_dbfs,
                    "reason": d.reason,
                }
                for d in bc.deliveries
            ]
        else:
            counts: dict[str, int] = {}
            for d in bc.deliveries:
                counts[d.state] = counts.get(d.state, 0) + 1
            out["delivery_counts"] = counts
        return out

    # ================================================================== recovery

    def _load(self, reloaded: bool = False) -> None:
        """At start: pick up what a previous run left in progress (``reloaded``: the same, after a
        failed transaction, without writing "recovered" to the log)."""
        now = self.clock()
        with self.sessions.begin() as session:
            self._session = session
            try:
                rows = session.scalars(
                    select(Broadcast)
                    .where(
                        Broadcast.state.in_(
                            [
                                BroadcastState.RENDERING.value,
                                BroadcastState.SENDING.value,
                                BroadcastState.PLAYING.value,
                                BroadcastState.SCHEDULED.value,
                            ]
                        )
                    )
                    .order_by(Broadcast.id)
                ).all()
                for bc in rows:
                    if bc.id in self._airings or bc.id in self._rendering:
                        continue
                    state = BroadcastState(bc.state)
                    if state is BroadcastState.SCHEDULED:
                        if not bc.audio_key:
                            self._render(bc.id, Tier(bc.tier), air=False)
                        if self.defer is None and bc.scheduled_at is not None:
                            self._deferred[bc.id] = bc.scheduled_at.timestamp()
                        continue
                    if state is BroadcastState.RENDERING or not bc.audio_key:
                        bc.state = BroadcastState.RENDERING.value
                        self._render(bc.id, Tier(bc.tier), air=True)
                        continue
                    pending = [d for d in bc.deliveries if d.state == DeliveryState.PENDING.value]
                    open_ = [
                        d
                        for d in bc.deliveries
                        if DeliveryState(d.state) in _PROGRESS and d.state != DeliveryState.PENDING.value
                    ]
                    self._start_airing(session, bc)
                    airing = self._airings.get(bc.id)
                    if airing is None:
                        continue
                    bc.state = state.value
                    airing.pending = {d.speaker_id for d in pending}
                    start = bc.start_at.timestamp() if bc.start_at else now
                    for d in open_:
                        s = d.started_at.timestamp() if d.started_at else start
                        airing.active[d.speaker_id] = (s, max(s + airing.duration, now))
                    airing.started = bool(open_)
                    if not reloaded:
                        self._log(
                            session, "recovered", f"Bản tin #{bc.id} tiếp tục sau khi khởi động lại", bc.id
                        )
            finally:
                self._session = None
        self._loaded = True

"""What a level does with a bulletin from above (or a CAP alert): the one sink of every upstream.

- **emergency** (khẩn cấp): submitted at once on every cluster; the officer is alerted;
- **priority** (ưu tiên): submitted with priority; when the commune's own priority item is queued
  or playing on an overlapping cluster, the bulletin is held and the officer asked which goes
  first, with ``federation.clash_default`` applied after ``federation.clash_timeout_s``. "Upstream
  first" puts the commune's item back behind it (cancelled and submitted again, from the start);
  "ours first" submits the bulletin behind it (arbitration serves a tier by arrival);
- **normal** (thông thường): lands in the "Tin cấp trên" inbox, where the officer listens, then
  airs, schedules or declines it (declining is reported up with the reason): the officer's
  decisions are in ``desk.py``.

A bulletin that arrives after its ``valid_until`` (the link was down) is recorded as missed, never
aired late; so is one left in the inbox past it. Everything goes through
``BroadcastManager.submit`` (the real lifecycle) with ``Source.UPSTREAM``; ``fed_inbox`` maps the
local broadcast to the upstream reference. Every change of state goes through ``inbox.py`` and is
reported up (``reportqueue``).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.broadcasts.errors import BroadcastError
from broadcaster.domain import Announcement, AudioKey, Source, Tier
from broadcaster.federation.clash import PUT_BACK, copy_of, own_priority_clashes
from broadcaster.federation.config import FederationConfig
from broadcaster.federation.inbox import UPSTREAM, InboxRows, IntakeError
from broadcaster.federation.models import FedBulletin, FedInbox
from broadcaster.federation.reportqueue import ReportQueue
from broadcaster.federation.wire import AudioRef, Bulletin
from broadcaster.fleet.targets import TargetError, resolve
from broadcaster.models import Announcement as AnnouncementRow
from broadcaster.models import Broadcast, BroadcastState

_LOGGER = logging.getLogger(__name__)

OPEN_STATES = ("inbox", "held")
CLASH_UPSTREAM, CLASH_LOCAL = "upstream", "local"
MISSED_LATE = "Tin đến khi đã hết hạn phát (mất liên lạc với cấp trên), không phát muộn."
MISSED_INBOX = "Hết hạn phát khi tin còn chờ trong hộp tin cấp trên."


@dataclass(frozen=True)
class Incoming:
    """What an upstream adapter hands in. ``inbox``: a normal item waits for the officer (the
    Loa xã link); False submits it directly (CAP rules, with ``approval`` when an approver must
    agree). ``replaces``: references (same origin) whose items are cancelled first (CAP Update)."""

    origin: str
    bulletin: Bulletin
    targets: tuple[str, ...] = ("all",)
    inbox: bool = True
    approval: bool = False
    replaces: tuple[str, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)


AudioFetcher = Callable[[AudioRef], bytes]


class Intake:
    """Receives every bulletin from above, routes it by class, airs it, and keeps its timers."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        broadcasts: Any,
        store: Any,
        queue: ReportQueue,
        config: FederationConfig,
        lock: threading.RLock,
        *,
        clock: Callable[[], float] = time.time,
        forward: Callable[[int, Bulletin], None] | None = None,
        forward_cancel: Callable[[int], None] | None = None,
    ) -> None:
        """``forward``/``forward_cancel``: pass a bulletin from above on to our own units (a
        district), and withdraw it there; None where there are no units below."""
        self.sessions = sessions
        self.broadcasts = broadcasts
        self.store = store
        self.queue = queue
        self.config = config
        self.lock = lock
        self.clock = clock
        self.rows = InboxRows(sessions, queue, lock)
        self.forward = forward
        self.forward_cancel = forward_cancel
        self.fetchers: dict[str, AudioFetcher] = {}
        self.on_emergency: list[Callable[[dict[str, Any]], None]] = []

    # ------------------------------------------------------------------ receiving

    def receive(self, item: Incoming) -> int:
        """Record and route one bulletin; idempotent by (origin, reference). Returns the inbox id."""
        b = item.bulletin
        now = self.clock()
        with self.lock, self.sessions.begin() as session:
            existing = session.scalar(
                select(FedInbox.id).where(FedInbox.origin == item.origin, FedInbox.ref == b.id)
            )
            if existing is not None:
                return existing
            row = FedInbox(
                origin=item.origin,
                ref=b.id,
                tier=b.tier.value,
                title=b.title,
                text=b.text,
                format=b.format,
                audio_key=b.audio.key if b.audio else None,
                audio_sha256=b.audio.sha256 if b.audio else None,
                duration_s=b.audio.duration_s if b.audio else None,
                repeat=b.repeat,
                targets=list(item.targets),
                route=list(b.route),
                at=b.at,
                valid_until=b.valid_until,
                sender=b.sender,
                state="received",
                data={**item.data, "approval": item.approval, "inbox": item.inbox},
            )
            session.add(row)
            session.flush()
            local = b.tier is Tier.EMERGENCY or "*" in b.route
            if b.valid_until is not None and b.valid_until.timestamp() < now:
                self.rows.set(session, row, "missed", MISSED_LATE, final=True)
            elif not local:
                self.rows.set(session, row, "forwarded", None, final=True)
            else:
                self.rows.report(session, row, "received")
            rid, state = row.id, row.state
        _LOGGER.info("federation: %s bulletin %s from %s (%s): %s", b.tier, b.id, item.origin, b.title, state)
        for ref in item.replaces:
            self.cancel(item.origin, ref, "được thay bằng bản tin cập nhật", unaired_only=True)
        if state == "missed":
            return rid
        if b.audio is not None and not self._ensure_audio(rid, item.origin, b.audio):
            if not b.text.strip():
                self.rows.finish(rid, "failed", "Không tải được âm thanh của tin từ cấp trên.")
                return rid
            with self.lock, self.sessions.begin() as session:
                row2 = session.get(FedInbox, rid)
                assert row2 is not None
                row2.format, row2.audio_key = "text", None
        if self.forward is not None:
            try:
                self.forward(rid, b)
            except Exception:
                _LOGGER.exception("federation: forwarding bulletin %s to our units failed", b.id)
        if state == "forwarded":
            return rid
        self._route(rid, item)
        return rid

    def _ensure_audio(self, rid: int, origin: str, audio: AudioRef) -> bool:
        if self.store.has(audio.key):
            return True
        fetch = self.fetchers.get(origin)
        if fetch is None:
            return False
        try:
            data = fetch(audio)
        except Exception as exc:
            _LOGGER.warning("federation: audio %s of inbox item %s not fetched: %s", audio.sha256, rid, exc)
            return False
        if hashlib.sha256(data).hexdigest() != audio.sha256 or len(data) != audio.size:
            _LOGGER.warning(
                "federation: audio %s of inbox item %s does not match its sha256", audio.sha256, rid
            )
            return False
        meta = {
            "engine": "recording",
            "voice": "",
            "text": "cấp trên",
            "normalized_text": "",
            "duration_s": audio.duration_s,
        }
        self.store.get_or_create(audio.key, lambda: (data, meta))
        return True

    def _route(self, rid: int, item: Incoming) -> None:
        with self.sessions() as session:
            row = session.get(FedInbox, rid)
            assert row is not None
            tier = Tier(row.tier)
        if tier is Tier.EMERGENCY:
            self.submit(rid, by=None)
            self._alert(rid)
        elif tier is Tier.PRIORITY:
            clash = self.clashes(rid)
            if not clash:
                self.submit(rid, by=None)
            elif self.config.clash_timeout_s <= 0:
                self.resolve_clash(rid, clash, self.config.clash_default, "tự động")
            else:
                until = datetime.fromtimestamp(self.clock() + self.config.clash_timeout_s, UTC)
                with self.lock, self.sessions.begin() as session:
                    row = session.get(FedInbox, rid)
                    assert row is not None
                    row.clash, row.hold_until = clash, until
                    self.rows.set(session, row, "held", None)
        elif item.inbox:
            with self.lock, self.sessions.begin() as session:
                row = session.get(FedInbox, rid)
                assert row is not None
                self.rows.set(session, row, "inbox", None)
        else:
            self.submit(rid, by=None)

    # ------------------------------------------------------------------ submitting

    def submit(
        self, rid: int, *, by: str | None, at: datetime | None = None, approved: bool = True
    ) -> int | None:
        """Submit the inbox item through the real lifecycle; the local broadcast id, or None when
        the lifecycle refused it (state ``failed`` with the reason, reported up)."""
        now = self.clock()
        with self.sessions() as session:
            row = session.get(FedInbox, rid)
            assert row is not None
            if at is None and row.at is not None and row.at.timestamp() > now + 1:
                at = row.at
            author = (by or (f"cấp trên: {row.sender}" if row.sender else "cấp trên"))[:100]
            ann = Announcement(
                text=row.text if row.format == "text" else (row.text or row.title),
                tier=Tier(row.tier),
                targets=tuple(row.targets or ["all"]),
                title=row.title,
                repeat=row.repeat,
                at=at,
                author=author,
                source=Source.UPSTREAM,
                audio_key=AudioKey(row.audio_key) if row.format == "audio" and row.audio_key else None,
            )
            if by is None and (row.data or {}).get("approval"):
                approved = False  # a CAP rule asks an approver to agree first
            valid = row.valid_until if at is None and row.tier != Tier.NORMAL.value else None
            if valid is not None and valid.timestamp() <= now:
                valid = None
        try:
            bid = self.broadcasts.submit(ann, approved=approved, valid_until=valid)
        except BroadcastError as exc:
            if self._no_clusters() and self._was_forwarded(rid):  # a district without clusters of its own
                self.rows.finish(rid, "forwarded", "Không có cụm loa tại chỗ; đã chuyển xuống cấp dưới.")
            else:
                self.rows.finish(rid, "failed", exc.message)
            return None
        with self.lock, self.sessions.begin() as session:
            row = session.get(FedInbox, rid)
            assert row is not None
            row.broadcast_id, row.state, row.decided_by = bid, "submitted", by
            if row.forwarded_id is not None:
                forwarded = session.get(FedBulletin, row.forwarded_id)
                if forwarded is not None and forwarded.broadcast_id is None:
                    forwarded.broadcast_id = bid
        _LOGGER.info("federation: inbox item %s aired as broadcast %s", rid, bid)
        return bid

    def _no_clusters(self) -> bool:
        with self.sessions() as session:
            try:
                resolve(session, ["all"])
            except TargetError:
                return True
        return False

    def _was_forwarded(self, rid: int) -> bool:
        with self.sessions() as session:
            row = session.get(FedInbox, rid)
            return row is not None and row.forwarded_id is not None

    def clashes(self, rid: int) -> list[int]:
        """The commune's own priority items queued or playing on a cluster this item reaches."""
        with self.sessions() as session:
            row = session.get(FedInbox, rid)
            assert row is not None
            return own_priority_clashes(session, row.targets or ["all"])

    def resolve_clash(self, rid: int, clash: list[int], choice: str, by: str) -> None:
        """ "ours first": submit behind them. "upstream first": take them off the air, submit the
        bulletin, put them back behind it (they air again from the start)."""
        if choice != CLASH_UPSTREAM:
            self.submit(rid, by=by)
            return
        again = []
        for bid in clash:
            with self.sessions() as session:
                copy = copy_of(session, bid)
            if copy is not None and self.broadcasts.cancel(bid, by=PUT_BACK):
                again.append(copy)
        self.submit(rid, by=by)
        for copy in again:
            try:
                self.broadcasts.submit(copy, approved=True)
            except BroadcastError as exc:
                _LOGGER.warning("federation: the commune's own item could not be put back: %s", exc.message)

    # ------------------------------------------------------------------ withdrawn from above

    def cancel(self, origin: str, ref: str, reason: str, *, unaired_only: bool = False) -> bool:
        """The upstream withdrew a bulletin: cancel it here (and below, for a district).
        ``unaired_only`` (a CAP Update): leave it alone once it started airing."""
        with self.sessions() as session:
            row = session.scalar(select(FedInbox).where(FedInbox.origin == origin, FedInbox.ref == ref))
            if row is None:
                return False
            rid, bid, forwarded = row.id, row.broadcast_id, row.forwarded_id
            if bid is not None and unaired_only:
                bc = session.get(Broadcast, bid)
                if bc is None or bc.start_at is not None or BroadcastState(bc.state).finished:
                    return False
        if forwarded is not None and self.forward_cancel is not None:
            self.forward_cancel(forwarded)
        if bid is not None:
            return bool(self.broadcasts.cancel(bid, by=f"cấp trên ({reason})"))
        with self.lock, self.sessions.begin() as session:
            row = session.get(FedInbox, rid)
            if row is None or row.state not in (*OPEN_STATES, "received"):
                return False
            self.rows.set(session, row, "cancelled", reason, final=True)
        return True

    # ------------------------------------------------------------------ timers

    def tick(self) -> None:
        """Expire what waited past its validity; apply the default to unanswered clashes."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        with self.lock, self.sessions.begin() as session:
            for row in session.scalars(
                select(FedInbox).where(FedInbox.state.in_(OPEN_STATES), FedInbox.valid_until < now)
            ):
                self.rows.set(session, row, "missed", MISSED_INBOX, final=True)
            due = [
                (r.id, list(r.clash or []))
                for r in session.scalars(
                    select(FedInbox).where(FedInbox.state == "held", FedInbox.hold_until <= now)
                )
            ]
            for rid, _ in due:
                row = session.get(FedInbox, rid)
                assert row is not None
                row.state = "deciding"
        for rid, clash in due:
            _LOGGER.info(
                "federation: no answer on the clash of item %s: %s first", rid, self.config.clash_default
            )
            self.resolve_clash(rid, clash, self.config.clash_default, "tự động")

    def recover(self) -> None:
        """At start: an item caught between two steps by a stop. A normal one goes back to the
        inbox; an emergency or priority one still valid is submitted unless a broadcast made
        from it exists (same source and title, made after it arrived), so nothing airs twice."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        resubmit: list[int] = []
        with self.lock, self.sessions.begin() as session:
            rows = session.scalars(
                select(FedInbox).where(
                    FedInbox.state.in_(("received", "deciding")), FedInbox.broadcast_id.is_(None)
                )
            ).all()
            for row in rows:
                if Tier(row.tier) is Tier.NORMAL:
                    self.rows.set(session, row, "inbox", None)
                    continue
                made = session.scalar(
                    select(Broadcast.id)
                    .join(AnnouncementRow, AnnouncementRow.id == Broadcast.announcement_id)
                    .where(
                        AnnouncementRow.source == Source.UPSTREAM.value,
                        AnnouncementRow.title == row.title,
                        Broadcast.created >= row.received,
                    )
                )
                if made is not None:
                    row.broadcast_id, row.state = made, "submitted"
                elif row.valid_until is not None and row.valid_until <= now:
                    self.rows.set(session, row, "missed", MISSED_LATE, final=True)
                else:
                    resubmit.append(row.id)
        for rid in resubmit:
            _LOGGER.warning("federation: inbox item %s was interrupted by a stop: submitted now", rid)
            self.submit(rid, by=None)

    # ------------------------------------------------------------------ helpers

    def _alert(self, rid: int) -> None:
        with self.sessions() as session:
            row = session.get(FedInbox, rid)
            if row is None:
                return
            info = {
                "id": row.id,
                "title": row.title or row.text[:80],
                "sender": row.sender,
                "origin": row.origin,
            }
        for callback in list(self.on_emergency):
            try:
                callback(info)
            except Exception:
                _LOGGER.exception("federation: emergency notice failed")


__all__ = ["CLASH_LOCAL", "CLASH_UPSTREAM", "UPSTREAM", "Incoming", "Intake", "IntakeError", "InboxRows"]

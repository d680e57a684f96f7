"""Each node's schedule ahead, so clusters keep airing when the centre does not (docs/protocol.md §11).

For every enabled cluster, a retained ``lookahead`` lists the scheduled airings (normal and
priority, never emergencies) whose start is within ``horizon_s`` (48 h) and whose audio is
rendered ahead, each with its slot key (``s<schedule id>@<fire time UTC>``, the same key the play
command of that airing carries), start, validity and audio reference. Nodes fetch the audio while
online and air a slot on their own only when the broker has been unreachable for a while.

The publisher recomputes and republishes on a worker thread when something changed (a schedule
created, edited, paused, deleted or re-rendered; a cluster added, moved or disabled: ``mark()``)
and every ``refresh_s`` as the horizon moves. Publishing the same list again is harmless.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.broadcasts.ports import AudioStorePort
from broadcaster.broadcasts.quiet import quiet_until
from broadcaster.broadcasts.state import slot_key
from broadcaster.fleet.targets import TargetError, resolve, zone_map
from broadcaster.models import Approval, Schedule, Speaker
from broadcaster.scheduling.apsched import fire_times
from broadcaster.scheduling.book import trigger_of
from broadcaster.scheduling.spec import ScheduleError
from broadcaster.transport import Transport, TransportError
from speakers.protocol import MAX_LOOKAHEAD_SLOTS, AudioRef, Lookahead, Slot

_LOGGER = logging.getLogger(__name__)

HORIZON_S = 48 * 3600.0
# The horizon moves: recompute at least this often even when nothing changed.
REFRESH_S = 3600.0
# Changes arriving together (an import of schedules, a re-render of all) are published once.
DEBOUNCE_S = 0.5
# Fire times of one schedule within the horizon (a per-minute cron must not flood a node).
MAX_SLOTS_PER_SCHEDULE = 200


class LookaheadPublisher:
    """See the module docstring. ``start()`` runs the worker; ``mark()`` asks for a republish."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        store: AudioStorePort,
        transport: Transport,
        zone: tzinfo,
        *,
        grace_s: float,
        horizon_s: float = HORIZON_S,
        refresh_s: float = REFRESH_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sessions = sessions
        self.store = store
        self.transport = transport
        self.zone = zone
        self.grace_s = grace_s
        self.horizon_s = horizon_s
        self.refresh_s = refresh_s
        self.clock = clock
        self.published = 0  # lookahead messages published (a counter for tests and metrics)
        self._audio: dict[str, AudioRef] = {}
        self._known: set[str] = set()  # clusters with a retained lookahead
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ worker

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._dirty.set()  # publish once at start
        self._thread = threading.Thread(target=self._run, name="lookahead", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def mark(self, *_: Any) -> None:
        """Something the lookahead depends on changed (a registry or schedule hook)."""
        self._dirty.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._dirty.wait(self.refresh_s)
            if self._stop.is_set():
                return
            self._stop.wait(DEBOUNCE_S)
            self._dirty.clear()
            try:
                self.publish()
            except Exception:
                _LOGGER.exception("lookahead: publishing failed; retried at the next change or refresh")

    # ------------------------------------------------------------------ computing and publishing

    def compute(self, now: float | None = None) -> dict[str, list[Slot]]:
        """``{cluster id: its slots, by start}`` for every enabled cluster (empty lists included)."""
        now = self.clock() if now is None else now
        start = datetime.fromtimestamp(now, UTC)
        end = datetime.fromtimestamp(now + self.horizon_s, UTC)
        with self.sessions() as session:
            out: dict[str, list[Slot]] = {
                sid: [] for sid in session.scalars(select(Speaker.id).where(Speaker.enabled.is_(True)))
            }
            zones = zone_map(session)
            query = select(Schedule).where(
                Schedule.enabled.is_(True),
                Schedule.approval == Approval.APPROVED.value,
                Schedule.audio_key.is_not(None),
                Schedule.channel_id.is_(None),  # a relay needs the link (and has no audio to hold)
                Schedule.tier.in_(("normal", "priority")),  # emergencies always need the link
            )
            for row in session.scalars(query):
                ref = self._audio_ref(row.audio_key)
                if ref is None:
                    continue
                try:
                    trigger = trigger_of(row, self.zone)
                    speakers = resolve(session, row.targets or ["all"]).speakers
                except (ScheduleError, TargetError):
                    continue
                for fire in fire_times(trigger, start, end, MAX_SLOTS_PER_SCHEDULE):
                    at = fire.timestamp()
                    slot = Slot(
                        slot=slot_key(row.id, fire),
                        start_at=at,
                        audio=ref,
                        tier=row.tier,  # type: ignore[arg-type]
                        title=row.title or row.name,
                        valid_until=at + self.grace_s,
                    )
                    for sid in speakers:
                        if sid in out and not self._quiet(row.tier, zones.zone_of(sid), zones.quiet, fire):
                            out[sid].append(slot)
        for slots in out.values():
            slots.sort(key=lambda s: s.start_at)
            del slots[MAX_LOOKAHEAD_SLOTS:]
        return out

    def publish(self) -> int:
        """Publish every enabled cluster's lookahead (retained); clear those of clusters gone.
        Returns how many were published."""
        now = self.clock()
        plan = self.compute(now)
        topics = self.transport.topics
        count = 0
        try:
            for sid, slots in sorted(plan.items()):
                message = Lookahead(generated_at=now, slots=tuple(slots), horizon_s=self.horizon_s)
                self.transport.publish(topics.lookahead(sid), message.encode(), qos=1, retain=True)
                count += 1
            for sid in sorted(self._known - set(plan)):
                self.transport.publish(topics.lookahead(sid), b"", qos=1, retain=True)  # clears it
        except TransportError as exc:
            _LOGGER.warning("lookahead: not published (%s); retried at the next change or refresh", exc)
            self._dirty.set()
            return count
        self._known = set(plan)
        self.published += count
        _LOGGER.info("lookahead published to %s clusters", count)
        return count

    def _audio_ref(self, key: str | None) -> AudioRef | None:
        if not key:
            return None
        ref = self._audio.get(key)
        if ref is not None:
            return ref
        meta = self.store.meta(key) if self.store.has(key) else None
        if meta is None:
            return None
        try:
            data = self.store.read_bytes(key)
        except Exception:
            return None
        ref = AudioRef.for_bytes(data, duration_s=float(meta.get("duration_s") or 0.0))
        if len(self._audio) > 1000:
            self._audio.clear()
        self._audio[key] = ref
        return ref

    def _quiet(
        self, tier: str, zone: str | None, quiet: dict[str, tuple[str | None, str | None]], fire: datetime
    ) -> bool:
        """A normal airing inside its zone's quiet hours is held by the controller until they
        end; a node on its own cannot do that, so it is left out of the node's lookahead."""
        if tier != "normal" or zone is None:
            return False
        qs, qe = quiet.get(zone, (None, None))
        return quiet_until(qs, qe, fire, self.zone) is not None  # type: ignore[arg-type]


__all__ = ["HORIZON_S", "LookaheadPublisher"]

"""Firing: what happens when a schedule's time comes, and the record of airings that did not happen.

:class:`ScheduleFiring` airs one fire time of a schedule through the broadcast lifecycle (a bulletin
with its pre-rendered audio, or a relay of a channel for the schedule's duration), and records every
fire time that cannot air as a ``missed`` airing with the reason in Vietnamese: past the grace,
superseded while the controller was down, or a relay channel that cannot be used. A bulletin is
never aired twice: every airing carries ``(schedule_id, fire_time)``, unique in ``broadcasts``.
It also writes the scheduler's own decisions to the officer's log.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session, sessionmaker

from broadcaster.broadcasts.ports import SpeechPort
from broadcaster.models import Approval, Channel, LogEntry, Schedule
from broadcaster.scheduling.apsched import JobInfo, Trigger, due_runs, fire_times
from broadcaster.scheduling.book import trigger_of

if TYPE_CHECKING:
    from broadcaster.broadcasts import BroadcastManager

_LOGGER = logging.getLogger(__name__)

# The latest fire time of a running job is searched first in this window, then in windows eight
# times larger, up to the grace plus a minute: a per-second cron never walks the whole grace.
_FIRST_WINDOW = timedelta(seconds=2)
_SEARCH_BEYOND_GRACE = timedelta(seconds=60)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ScheduleFiring:
    """Airs fire times of schedules and records the missed ones."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        broadcasts: BroadcastManager,
        speech: SpeechPort | None,
        zone: ZoneInfo,
        grace: timedelta,
        lease_lost: threading.Event,
    ) -> None:
        """``lease_lost``: set when another scheduler took over; nothing fires any more."""
        self.sessions = sessions
        self.broadcasts = broadcasts
        self.speech = speech
        self.zone = zone
        self.grace = grace
        self.lease_lost = lease_lost

    def fire_schedule(self, schedule_id: int) -> int | None:
        """Air one fire time of a schedule; returns the broadcast id (None when nothing aired)."""
        if self.lease_lost.is_set():
            _LOGGER.warning("schedule %s fired after the scheduler lease was lost; skipped", schedule_id)
            return None
        now = _utcnow()
        with self.sessions() as session:
            row = session.get(Schedule, schedule_id)
            if row is None:
                _LOGGER.warning("schedule %s fired but no longer exists", schedule_id)
                return None
            if not row.enabled or row.approval != Approval.APPROVED.value:
                _LOGGER.info("schedule %s fired while disabled or not approved; skipped", schedule_id)
                return None
            fire_time = self.latest_fire_time(trigger_of(row, self.zone), now)
            if fire_time is None:
                _LOGGER.warning(
                    "schedule %s fired with no fire time within the grace; using now", schedule_id
                )
                fire_time = now.replace(microsecond=0)
            if now - fire_time > self.grace:
                self.record_missed(schedule_id, fire_time, self._late_reason(fire_time))
                return None
            if row.channel_id is not None:
                relay = (row.channel_id, row.duration_s or 0.0, row.title, row.tier, tuple(row.targets or ()))
                author = row.author or "lịch phát"
            else:
                relay = None
            audio_key = row.audio_key
            if audio_key and self.speech is not None and not self.speech.store.has(audio_key):
                audio_key = None  # the store was emptied: render at air time
            ann = row.announcement(audio_key)
        if relay is not None:
            return self._fire_relay(schedule_id, fire_time, now, relay, author, ann.title)
        try:
            broadcast_id = self.broadcasts.submit(
                ann, approved=True, schedule_id=schedule_id, fire_time=fire_time
            )
        except Exception as exc:
            _LOGGER.exception(
                "schedule %s: submitting the %s airing failed", schedule_id, fire_time.isoformat()
            )
            reason = getattr(exc, "message", None) or str(exc)
            self.log(
                "schedule_failed", f"Lịch «{ann.title}» ({self._local(fire_time)}) không phát được: {reason}"
            )
            return None
        _LOGGER.info(
            "schedule %s fired for %s: broadcast %s", schedule_id, fire_time.isoformat(), broadcast_id
        )
        return broadcast_id

    def _fire_relay(
        self,
        schedule_id: int,
        fire_time: datetime,
        now: datetime,
        relay: tuple[int, float, str, str, tuple[str, ...]],
        author: str,
        title: str,
    ) -> int | None:
        """One airing of a relay schedule: the channel from the fire time for ``duration_s`` (so a
        run that fires late still ends on time), submitted like a relay from the API."""
        from broadcaster.broadcasts.validation import MIN_STREAM_S, CheckedStream
        from broadcaster.domain import Source, Tier

        channel_id, duration_s, own_title, tier, targets = relay
        end = fire_time + timedelta(seconds=duration_s)
        try:
            _, name, _ = self.broadcasts.channels.usable(channel_id)
        except Exception as exc:
            reason = getattr(exc, "message", None) or str(exc)
            self.record_missed(schedule_id, fire_time, f"Không tiếp sóng được: {reason}")
            self.log(
                "schedule_failed", f"Lịch «{title}» ({self._local(fire_time)}) không phát được: {reason}"
            )
            return None
        if (end - now).total_seconds() < MIN_STREAM_S:
            self.record_missed(schedule_id, fire_time, self._late_reason(fire_time))
            return None
        checked = CheckedStream(
            channel_id, name, own_title or name, Tier(tier), targets or ("all",), at=None, end=end
        )
        try:
            broadcast_id = self.broadcasts.submit_stream(
                checked,
                author=author,
                source=Source.SCHEDULE,
                approved=True,
                schedule_id=schedule_id,
                fire_time=fire_time,
            )
        except Exception as exc:
            _LOGGER.exception("schedule %s: submitting the relay of %s failed", schedule_id, fire_time)
            reason = getattr(exc, "message", None) or str(exc)
            self.log(
                "schedule_failed", f"Lịch «{title}» ({self._local(fire_time)}) không phát được: {reason}"
            )
            return None
        _LOGGER.info("schedule %s fired for %s: relay %s", schedule_id, fire_time.isoformat(), broadcast_id)
        return broadcast_id

    def latest_fire_time(self, trigger: Trigger, now: datetime) -> datetime | None:
        """The latest fire time at or before ``now`` within the grace: the airing a running job
        is for. Searched in growing windows so a per-second cron does not walk the whole grace."""
        window = _FIRST_WINDOW
        limit = self.grace + _SEARCH_BEYOND_GRACE
        while True:
            start = now - min(window, limit)
            times = list(fire_times(trigger, start, now, 100_000))
            if times:
                return times[-1]
            if window >= limit:
                return None
            window *= 8

    # ------------------------------------------------------------------ missed airings

    def on_missed(self, job_id: str, scheduled: datetime) -> None:
        """A run past the grace (APScheduler did not run it): record it."""
        kind, _, ident = job_id.partition("-")
        if kind == "schedule":
            self.record_missed(int(ident), scheduled, self._late_reason(scheduled))

    def record_superseded(self, jobs: Iterable[JobInfo], now: datetime) -> None:
        """Before resuming: every due fire time of a job except its latest is recorded missed."""
        for job in jobs:
            kind, _, ident = job.id.partition("-")
            if kind != "schedule" or job.next_run is None or job.next_run > now:
                continue
            due = due_runs(job, now)
            latest = due[-1]
            for fire_time in due[:-1]:
                self.record_missed(
                    int(ident),
                    fire_time,
                    f"Lỡ giờ phát {self._local(fire_time)} khi bộ điều khiển không chạy; chỉ phát lần gần nhất "
                    f"({self._local(latest)}) nếu còn trong thời gian cho phép.",
                )

    def record_missed(self, schedule_id: int, fire_time: datetime, reason: str) -> int | None:
        """A ``missed`` airing of one fire time, written by the broadcast lifecycle; a no-op when
        that airing is already recorded."""
        with self.sessions() as session:
            row = session.get(Schedule, schedule_id)
            if row is None:
                return None
            ann = row.announcement()
            relay = None
            if row.channel_id is not None:
                channel = session.get(Channel, row.channel_id)
                relay = (row.channel_id, channel.name if channel is not None else row.name)
        broadcast_id = self.broadcasts.record_missed(
            ann, schedule_id=schedule_id, fire_time=fire_time.astimezone(UTC), reason=reason, relay=relay
        )
        if broadcast_id is not None:
            _LOGGER.warning("schedule %s: %s", schedule_id, reason)
        return broadcast_id

    def _late_reason(self, fire_time: datetime) -> str:
        seconds = int(self.grace.total_seconds())
        return (
            f"Lỡ giờ phát {self._local(fire_time)}: bộ điều khiển không chạy vào giờ đó và đã quá "
            f"{seconds} giây cho phép."
        )

    def _local(self, value: datetime) -> str:
        return value.astimezone(self.zone).strftime("%H:%M:%S %d/%m/%Y")

    def log(self, kind: str, message: str) -> None:
        """A scheduler decision for the officer's log (not about one broadcast)."""
        try:
            with self.sessions.begin() as session:
                session.add(LogEntry(kind=kind, message=message))
        except Exception:
            _LOGGER.exception("could not write a log entry")

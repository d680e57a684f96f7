"""Rendering scheduled bulletins ahead of their air time, on one worker thread.

A schedule's audio is rendered (and pinned in the store under ``schedule:<id>``) when it is
created, changed or loaded, and again at start; at air time the broadcast then needs no synthesis.
A render that fails is logged; the bulletin renders at air time instead. A relay schedule has no
audio to render (its channel is pulled at air time), so it is never rendered and never in a node's
lookahead (``lookahead.py`` takes schedules with rendered audio only).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.broadcasts.ports import SpeechPort
from broadcaster.lexicon import overrides_in
from broadcaster.models import Schedule

_LOGGER = logging.getLogger(__name__)


def pin_owner(schedule_id: int) -> str:
    """Each schedule pins its rendered-ahead audio under its own name in the store."""
    return f"schedule:{schedule_id}"


class RenderAhead:
    """``start()``/``stop()`` own the worker; ``render(id)`` queues one schedule."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        speech: SpeechPort | None,
        *,
        enabled: bool,
        next_run: Callable[[Schedule], datetime | None],
        log: Callable[[str, str], None],
        rendered: Callable[[], None] | None = None,
    ) -> None:
        """``rendered()``: called after a schedule got new audio (its lookahead changes)."""
        self.sessions = sessions
        self.speech = speech
        self.enabled = enabled
        self.next_run = next_run
        self.log = log
        self.rendered = rendered
        self._pool: ThreadPoolExecutor | None = None
        self._renders: dict[int, Future[str | None]] = {}

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render-ahead")

    def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        self._renders.clear()

    def needs_render(self, schedule_id: int) -> bool:
        if self.speech is None:
            return False
        with self.sessions() as session:
            row = session.get(Schedule, schedule_id)
            if row is None or row.channel_id is not None:
                return False
            return not row.audio_key or not self.speech.store.has(row.audio_key)

    def render(self, schedule_id: int) -> Future[str | None] | None:
        """Render a schedule's audio on the worker; the future gives the audio key (None on failure).
        Without a running worker (or render ahead off, or no speech service) nothing happens."""
        pool = self._pool
        if pool is None or self.speech is None or not self.enabled:
            return None
        queued = self._renders.get(schedule_id)
        if queued is not None and not queued.running() and not queued.done():
            return queued  # not started yet: it reads the schedule when it runs, so it is current
        try:
            future = pool.submit(self._render, schedule_id)
        except RuntimeError:  # shutting down
            return None
        self._renders[schedule_id] = future
        return future

    def render_all(self) -> None:
        """Re-render every enabled schedule with a future airing (cache hits cost nothing)."""
        with self.sessions() as session:
            rows = list(
                session.scalars(
                    select(Schedule).where(Schedule.enabled.is_(True), Schedule.channel_id.is_(None))
                )
            )
            ids = [r.id for r in rows if self.next_run(r) is not None]
        for schedule_id in ids:
            self.render(schedule_id)

    def pending(self, schedule_id: int) -> Future[str | None] | None:
        """The last render-ahead future of a schedule (tests and the UI wait on it)."""
        return self._renders.get(schedule_id)

    def unpin(self, key: str, schedule_id: int) -> None:
        if self.speech is None:
            return
        try:
            self.speech.store.unpin(key, pin_owner(schedule_id))
        except Exception:
            _LOGGER.exception("could not unpin %s", key)

    def _forget(self, schedule_id: int, key: str) -> None:
        """A schedule that became a relay: its rendered audio is unpinned and forgotten."""
        with self.sessions.begin() as session:
            row = session.get(Schedule, schedule_id)
            if row is not None and row.audio_key == key:
                row.audio_key = None
        self.unpin(key, schedule_id)
        if self.rendered is not None:
            self.rendered()

    def _render(self, schedule_id: int) -> str | None:
        assert self.speech is not None
        with self.sessions() as session:
            row = session.get(Schedule, schedule_id)
            if row is None or not row.enabled:
                return None
            relay, stale = row.channel_id is not None, row.audio_key
            inputs = (row.text, row.engine, row.voice, row.repeat)
            lexicon = overrides_in(session)
        if relay:  # nothing to render; audio of the bulletin it was before is let go
            if stale:
                self._forget(schedule_id, stale)
            return None
        try:
            result = self.speech.render(
                inputs[0], engine=inputs[1], voice=inputs[2], repeat=inputs[3], chime=True, lexicon=lexicon
            )
        except Exception as exc:
            _LOGGER.warning(
                "render ahead of schedule %s failed (it renders at air time): %s", schedule_id, exc
            )
            reason = getattr(exc, "message_vi", None) or str(exc)
            self.log(
                "render_failed",
                f"Chưa tạo trước được âm thanh cho lịch {schedule_id}; sẽ tạo lúc phát. Lỗi: {reason}",
            )
            return None
        key = str(result.key)
        self.speech.store.pin(key, pin_owner(schedule_id))
        with self.sessions.begin() as session:
            row = session.get(Schedule, schedule_id)
            if row is None or (row.text, row.engine, row.voice, row.repeat) != inputs:
                # deleted or edited while rendering: the newer render (already queued) wins
                self.unpin(key, schedule_id)
                return None
            old, row.audio_key = row.audio_key, key
        if old and old != key:
            self.unpin(old, schedule_id)
        if old != key and self.rendered is not None:
            self.rendered()
        _LOGGER.info("schedule %s rendered ahead: %s (%.1f s)", schedule_id, key[:12], result.duration_s)
        return key


__all__ = ["RenderAhead", "pin_owner"]

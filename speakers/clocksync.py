"""The node's estimate of the controller's clock (docs/protocol.md section 6).

A burst of time requests, each answered by the controller with its clock; the sample with the
shortest round trip wins (its error is at most half of that round trip). The offset is kept
against the node's monotonic clock, so a step of the node's wall clock does not move playback.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from speakers.config import TimeSyncConfig
from speakers.protocol import TimeRequest, TimeSync

_LOGGER = logging.getLogger(__name__)


class Clock(Protocol):
    def time(self) -> float: ...

    def monotonic(self) -> float: ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class SkewedClock:
    """A clock that is ``offset_s`` off the host's (the simulator's per-node clock error)."""

    def __init__(self, offset_s: float) -> None:
        self.offset_s = offset_s

    def time(self) -> float:
        return time.time() + self.offset_s

    def monotonic(self) -> float:
        return time.monotonic() + self.offset_s


# send(request, on_send): publish a time request; on_send() is called when the bytes really go out.
SendRequest = Callable[[TimeRequest, Callable[[], None]], None]


class ClockSync:
    """Controller time for one node. ``run()`` keeps it measured while the link is up."""

    def __init__(self, name: str, clock: Clock, config: TimeSyncConfig, send: SendRequest) -> None:
        self.name = name
        self.clock = clock
        self.config = config
        self._send = send
        # Controller time = monotonic + _mono_offset.
        self._mono_offset: float | None = None
        self.wall_offset_s: float | None = None  # controller clock - this node's wall clock
        self.rtt_s: float | None = None
        self.syncs = 0
        self.resync = asyncio.Event()
        self._seq = itertools.count()
        self._pending: dict[int, list[Any]] = {}

    @property
    def synced(self) -> bool:
        return self._mono_offset is not None

    def controller_now(self) -> float:
        """Controller time now (the node's own wall clock until the first sync)."""
        if self._mono_offset is None:
            return self.clock.time()
        return self.clock.monotonic() + self._mono_offset

    def to_mono(self, controller_time: float) -> float:
        """The node's monotonic time at which the controller's clock shows ``controller_time``."""
        if self._mono_offset is None:
            return self.clock.monotonic() + (controller_time - self.clock.time())
        return controller_time - self._mono_offset

    async def run(self, connected: asyncio.Event) -> None:
        """Bursts at connect, every ``interval_s``, and whenever :attr:`resync` is set."""
        await connected.wait()
        cfg = self.config
        failures = 0
        while True:
            self.resync.clear()
            ok = await self.burst()
            failures = 0 if ok else failures + 1
            wait = cfg.interval_s if ok else min(cfg.interval_s, cfg.retry_s * 2 ** min(failures - 1, 6))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.resync.wait(), wait)
            await connected.wait()

    async def burst(self) -> bool:
        """One burst of ``samples`` requests; True when at least one was answered."""
        cfg = self.config
        best: tuple[float, float, float] | None = None  # rtt, mono offset, wall offset
        loop = asyncio.get_running_loop()
        for _ in range(cfg.samples):
            seq = next(self._seq)
            fut: asyncio.Future[tuple[float, float]] = loop.create_future()
            w_asked = self.clock.time()
            # [future, t_node as sent (echoed back), monotonic and wall time when really sent]
            pending: list[Any] = [fut, w_asked, self.clock.monotonic(), w_asked]
            self._pending[seq] = pending

            def sent(p: list[Any] = pending) -> None:
                p[2], p[3] = self.clock.monotonic(), self.clock.time()

            self._send(TimeRequest(seq=seq, t_node=w_asked), sent)
            try:
                t_controller, m3 = await asyncio.wait_for(fut, cfg.timeout_s)
            except TimeoutError:
                continue
            finally:
                self._pending.pop(seq, None)
            m0, w0 = pending[2], pending[3]
            rtt = m3 - m0
            mono_offset = t_controller - (m0 + m3) / 2
            wall_offset = t_controller - (w0 + rtt / 2)
            if best is None or rtt < best[0]:
                best = (rtt, mono_offset, wall_offset)
        if best is None:
            level = logging.INFO if self.syncs == 0 else logging.WARNING
            _LOGGER.log(
                level, "%s: no answer to time requests; keeping the previous clock estimate", self.name
            )
            return False
        self.rtt_s, self._mono_offset, self.wall_offset_s = best
        self.syncs += 1
        _LOGGER.debug("%s: clock offset %.1f ms (rtt %.1f ms)", self.name, best[2] * 1000, best[0] * 1000)
        return True

    def on_answer(self, msg: TimeSync) -> None:
        """A ``time`` message from the controller (an answer, or ``seq = -1``: resync now)."""
        if msg.seq == -1:
            self.resync.set()
            return
        pending = self._pending.get(msg.seq)
        if pending is None:
            return  # late answer to a request we gave up on
        fut, w_asked = pending[0], pending[1]
        if abs(msg.t_node - w_asked) > 1e-6:
            return  # not our request (t_node must be echoed)
        if not fut.done():
            fut.set_result((msg.t_controller, self.clock.monotonic()))

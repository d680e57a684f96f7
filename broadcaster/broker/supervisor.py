"""One thread that owns a child process: runs every operation on it, restarts it when it dies.

The thread exists because of the parent-death signal (``orphans.py``): the kernel signals the
child when the *thread* that started it ends, so every start happens here, on a thread that
lives as long as the process is managed. Doing stops, restarts and reloads here too means they
never race each other or a recovery.

Recovery is bounded: an unexpected exit is retried after a backoff doubling from 0.5 s to 30 s.
A start that fails, or a process that dies within ``STABLE_AFTER_S`` of starting, counts as a
failure; after ``MAX_CONSECUTIVE_FAILURES`` of them in a row the supervisor gives up, logs why
and keeps the reason in :attr:`Supervisor.failure` (the controller's own problem to report),
instead of restarting a broken broker twice a second for ever.
"""

from __future__ import annotations

import logging
import queue
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

_LOGGER = logging.getLogger(__name__)

BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0
# A process that dies this soon after starting counts as a failed start, not a recovered crash.
STABLE_AFTER_S = 30.0
# 0.5+1+2+4+8+16+30+30 s: about a minute and a half of retries before giving up.
MAX_CONSECUTIVE_FAILURES = 8


class Supervisor:
    """``spawn()`` starts the process (on this thread) and returns it, or raises; ``describe()``
    says what went wrong (the process's last output) when it dies; ``tick()`` runs every
    ``tick_interval_s`` while the process runs (e.g. a certificate check)."""

    def __init__(
        self,
        name: str,
        spawn: Callable[[], subprocess.Popen[bytes]],
        describe: Callable[[], str],
        *,
        restart: bool = True,
        tick: Callable[[], None] | None = None,
        tick_interval_s: float = 3600.0,
    ) -> None:
        self.name = name
        self._spawn = spawn
        self._describe = describe
        self.restart = restart
        self._tick = tick
        self.tick_interval_s = tick_interval_s
        self.current: subprocess.Popen[bytes] | None = None
        self.failure: str | None = None
        self.restarts = 0  # unexpected exits recovered
        self._started_at = 0.0
        self._failures = 0
        self._restart_at: float | None = None
        self._next_tick: float | None = None
        self._stopping = False
        self._requests: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ requests

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the supervisor thread and return its result (or raise)."""
        thread = self._thread
        if thread is threading.current_thread():
            return fn(*args)
        if thread is None or not thread.is_alive():
            self._stopping = False
            self._thread = thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            thread.start()
        future: Future[Any] = Future()
        self._requests.put(("call", fn, args, future))
        return future.result()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def close(self, timeout: float = 10.0) -> None:
        """End the thread (after the caller stopped the process through :meth:`call`)."""
        self._stopping = True
        thread = self._thread
        if thread is None:
            return
        self._requests.put(("quit",))
        if thread is not threading.current_thread():
            thread.join(timeout)
        self._thread = None

    # ------------------------------------------------------------------ on the thread

    def started(self, proc: subprocess.Popen[bytes]) -> None:
        """Called by ``spawn`` (on this thread) with the new process: watch it."""
        self.current = proc
        self._started_at = time.monotonic()
        self._next_tick = self._started_at + self.tick_interval_s if self._tick else None
        threading.Thread(target=self._watch, args=(proc,), name=f"{self.name}-exit", daemon=True).start()

    def release(self) -> subprocess.Popen[bytes] | None:
        """Forget the current process (about to be stopped on purpose: its exit is no crash)."""
        proc, self.current = self.current, None
        self._restart_at = None
        return proc

    def reset(self) -> None:
        """A deliberate (re)start: a fresh series of attempts."""
        self.failure = None
        self._failures = 0
        self._restart_at = None

    def _watch(self, proc: subprocess.Popen[bytes]) -> None:
        self._requests.put(("exited", proc, proc.wait()))

    def _run(self) -> None:
        while True:
            deadlines = [t for t in (self._restart_at, self._next_tick) if t is not None]
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            try:
                item = self._requests.get(timeout=timeout)
            except queue.Empty:
                try:
                    self._on_timer()
                except Exception:  # the supervisor thread must survive anything
                    _LOGGER.exception("%s: timer failed", self.name)
                continue
            if item[0] == "quit":
                return
            if item[0] == "exited":
                try:
                    self._on_exit(item[1], item[2])
                except Exception:  # the supervisor thread must survive anything
                    _LOGGER.exception("%s: handling an exit failed", self.name)
                continue
            _, fn, args, future = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:
                    future.set_exception(exc)

    def _on_timer(self) -> None:
        now = time.monotonic()
        if self._restart_at is not None and now >= self._restart_at:
            self._restart_at = None
            self._recover()
        if self._next_tick is not None and now >= self._next_tick:
            self._next_tick = now + self.tick_interval_s
            proc = self.current
            if self._tick is not None and proc is not None and proc.poll() is None:
                try:
                    self._tick()
                except Exception:
                    _LOGGER.exception("%s: periodic check failed", self.name)

    def _on_exit(self, proc: subprocess.Popen[bytes], rc: int) -> None:
        if self._stopping or proc is not self.current or not self.restart:
            return
        if time.monotonic() - self._started_at >= STABLE_AFTER_S:
            self._failures = 0  # it ran well for a while: a fresh series
        output = self._describe()[-800:]
        _LOGGER.error("%s: the process exited unexpectedly (code %s): %s", self.name, rc, output)
        self.current = None
        self.schedule_recovery(f"exited with code {rc}: {output}")

    def schedule_recovery(self, reason: str) -> None:
        """Count a failure and retry after the backoff, or give up after too many."""
        self._failures += 1
        if self._failures > MAX_CONSECUTIVE_FAILURES:
            self.failure = f"failed {self._failures - 1} times in a row and is no longer restarted: {reason}"
            _LOGGER.error("%s %s. Fix the cause and restart the controller.", self.name, self.failure)
            return
        backoff = min(BACKOFF_MIN_S * 2 ** (self._failures - 1), BACKOFF_MAX_S)
        _LOGGER.warning("%s: restarting in %.1f s (attempt %s)", self.name, backoff, self._failures)
        self._restart_at = time.monotonic() + backoff

    def _recover(self) -> None:
        if self._stopping or (self.current is not None and self.current.poll() is None):
            return
        try:
            self._spawn()
            self.restarts += 1
        except Exception as exc:
            _LOGGER.error("%s: restart failed: %s", self.name, exc)
            self.schedule_recovery(str(exc))

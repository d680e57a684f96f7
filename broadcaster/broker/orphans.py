"""The managed broker never outlives its controller.

Two guards, because no single one covers every way a controller dies:

* **Parent-death signal.** mosquitto is started with ``PR_SET_PDEATHSIG = SIGTERM`` (Linux
  ``prctl``, set in the child between fork and exec): when the thread that started it ends, for
  whatever reason (``kill -9``, the out-of-memory killer, a crash), the kernel sends mosquitto
  SIGTERM and it saves its sessions and exits. The signal is bound to the *thread*, so the broker
  is only ever started from its supervisor thread, which lives as long as the broker is managed.
  The kernel clears the setting when a process changes its user id, so mosquitto must not drop
  privileges itself: as root, the child switches to the ``mosquitto`` user before ``prctl``.
* **Take-over at start.** The pid of the running broker is kept in ``mosquitto.pid``. Before a
  start, any mosquitto whose command line names this instance's config file (the pid file's, or
  found in ``/proc``) is stopped (SIGTERM, then SIGKILL), so a broker left by an earlier run
  never holds the port.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import select
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path

_LOGGER = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
# How long a left-over broker gets to save its sessions after SIGTERM before SIGKILL.
ORPHAN_STOP_TIMEOUT_S = 10.0


def _load_prctl() -> Callable[..., int] | None:
    # Looked up once in the parent: the child between fork and exec must not load libraries.
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return libc.prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


def parent_death_signal_supported() -> bool:
    return _PRCTL is not None


def die_with_parent(parent_pid: int) -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child receive SIGTERM when its parent thread ends."""
    prctl = _PRCTL

    def preexec() -> None:
        if prctl is None:
            return
        prctl(
            ctypes.c_int(_PR_SET_PDEATHSIG),
            ctypes.c_ulong(signal.SIGTERM),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
        )
        if os.getppid() != parent_pid:  # the parent died before prctl: nobody will signal us
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def is_broker_of(pid: int, conf_path: Path) -> bool:
    """Whether process ``pid`` is a mosquitto started with ``-c conf_path``."""
    args = _cmdline(pid)
    return bool(args) and Path(args[0]).name.startswith("mosquitto") and str(conf_path) in args[1:]


def brokers_of(conf_path: Path, pid_file: Path | None = None) -> list[int]:
    """Pids of every running mosquitto that uses ``conf_path`` (the pid file's first)."""
    found: list[int] = []
    if pid_file is not None:
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text().strip())
            if pid > 0 and is_broker_of(pid, conf_path):
                found.append(pid)
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                pid = int(entry.name)
                if pid not in found and is_broker_of(pid, conf_path):
                    found.append(pid)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) holds no port any more.
    with contextlib.suppress(OSError):
        status = Path(f"/proc/{pid}/stat").read_text()
        return status.rsplit(")", 1)[1].split()[0] != "Z"
    return False


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    fd = None
    with contextlib.suppress(OSError, AttributeError):
        fd = os.pidfd_open(pid)  # readable once the process has exited: no polling needed
    try:
        while _alive(pid):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if fd is not None and not select.select([fd], [], [], min(left, 1.0))[0]:
                continue
            time.sleep(min(left, 0.02))  # no pidfd, or exited and /proc not updated yet
        return True
    finally:
        if fd is not None:
            os.close(fd)


def stop_orphans(
    conf_path: Path,
    pid_file: Path | None,
    exclude: Iterable[int] = (),
    timeout: float = ORPHAN_STOP_TIMEOUT_S,
) -> list[int]:
    """Stop every mosquitto of ``conf_path`` except ``exclude``; returns the pids stopped."""
    skip = set(exclude) | {os.getpid()}
    stopped: list[int] = []
    for pid in brokers_of(conf_path, pid_file):
        if pid in skip:
            continue
        _LOGGER.warning("a broker left by an earlier run (pid %s) still uses %s: stopping it", pid, conf_path)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)  # it saves its sessions first
        if not _wait_gone(pid, timeout):
            _LOGGER.warning("broker pid %s did not stop in %.0f s: killing it", pid, timeout)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, timeout)
        stopped.append(pid)
    return stopped

"""Exactly one scheduler per job store.

Two schedulers sharing an APScheduler job store both see a due one-shot job and both run it
(measured: a bulletin aired twice). So before starting, the scheduler takes an exclusive lock:

* SQLite: an ``fcntl`` lock on a file next to the database file (the job store lives in that
  file, so that is what must be guarded, whichever instance folder a process uses). The kernel
  drops the lock when the process dies, so a crash never leaves a stale lock.
* Any other database: a lease row in the ``settings`` table, renewed by a thread; another
  process may take it over only once it has expired.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Protocol

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.models import Setting

_LOGGER = logging.getLogger(__name__)

LEASE_KEY = "scheduler.lease"


class SchedulerLockedError(RuntimeError):
    """Another scheduler process holds the lock; the message says which and what to do."""


class SchedulerLock(Protocol):
    def acquire(self) -> None: ...
    def release(self) -> None: ...


class FileLock:
    """An exclusive, non-blocking ``flock`` on ``path`` (held until release or process exit)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        if self._file is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # held open while locked
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise SchedulerLockedError(
                f"another scheduler ({holder}) already runs on this database (lock file {self.path}); "
                "stop it first: two schedulers would air every bulletin twice"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is None:
            return
        try:
            self._file.truncate(0)
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        finally:
            self._file.close()
            self._file = None


class LeaseLock:
    """A lease row ``settings[scheduler.lease] = {owner, expires}`` renewed every third of its life.

    When the lease is lost (another process took it over after it expired, or it could not be
    renewed for a whole lease), ``on_lost(holder)`` is called once and renewal stops: the owner
    must stop firing jobs at once, since another scheduler now fires them."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        lease_s: int = 30,
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.lease_s = lease_s
        self.on_lost = on_lost
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _try(self) -> str | None:
        """Take or renew the lease; return the other holder's name when it is held."""
        now = datetime.now(UTC)
        value = {"owner": self.owner, "expires": (now + timedelta(seconds=self.lease_s)).isoformat()}
        try:
            with self.sessions.begin() as session:
                row = session.scalars(
                    select(Setting).where(Setting.key == LEASE_KEY).with_for_update()
                ).first()
                if row is None:
                    session.add(Setting(key=LEASE_KEY, value=value))
                    return None
                current = row.value if isinstance(row.value, dict) else {}
                expires = current.get("expires")
                held = (
                    current.get("owner") not in (None, self.owner)
                    and isinstance(expires, str)
                    and datetime.fromisoformat(expires) > now
                )
                if held:
                    return str(current.get("owner"))
                row.value = value
                return None
        except IntegrityError:  # another process inserted the row first
            return "another process"

    def acquire(self) -> None:
        holder = self._try()
        if holder is not None:
            raise SchedulerLockedError(
                f"another scheduler ({holder}) already runs on this database (it holds the lease); "
                f"stop it first or wait {self.lease_s} s after it died: two schedulers would air every "
                "bulletin twice"
            )
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew, name="scheduler-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        last_ok = time.monotonic()
        while not self._stop.wait(self.lease_s / 3):
            try:
                holder = self._try()
            except Exception:
                _LOGGER.exception("could not renew the scheduler lease")
                if time.monotonic() - last_ok < self.lease_s:
                    continue
                holder = "unknown (the lease could not be renewed before it expired)"
            if holder is None:
                last_ok = time.monotonic()
                continue
            _LOGGER.error("scheduler lease taken over by %s; this scheduler stops firing jobs", holder)
            self.lost.set()
            if self.on_lost is not None:
                try:
                    self.on_lost(holder)
                except Exception:
                    _LOGGER.exception("scheduler lease: on_lost failed")
            return

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self.sessions.begin() as session:
            row = session.get(Setting, LEASE_KEY)
            if row is not None and isinstance(row.value, dict) and row.value.get("owner") == self.owner:
                session.delete(row)


def lock_for(
    db_url: str,
    instance: Path,
    sessions: sessionmaker[Session],
    lease_s: int = 30,
    on_lost: Callable[[str], None] | None = None,
) -> SchedulerLock:
    """The right lock for a database URL (see the module docstring). ``on_lost``: see LeaseLock
    (a file lock is never lost while the process lives)."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        database = url.database
        if database and database != ":memory:" and not database.startswith("file:"):
            return FileLock(Path(database).resolve().with_name(Path(database).name + ".scheduler-lock"))
        return FileLock(instance.resolve() / "scheduler.lock")
    return LeaseLock(sessions, lease_s, on_lost)

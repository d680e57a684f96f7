"""The one-scheduler lock: a flock for SQLite, a lease row for other databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from broadcaster.db import create_schema, make_engine, make_session_factory
from broadcaster.models import Setting
from broadcaster.scheduling.lock import LEASE_KEY, FileLock, LeaseLock, SchedulerLockedError, lock_for


@pytest.fixture
def sessions(tmp_path: Path):
    engine = make_engine(f"sqlite:///{tmp_path / 'lock.db'}")
    create_schema(engine)
    yield make_session_factory(engine)
    engine.dispose()


def test_file_lock_is_exclusive_and_names_the_holder(tmp_path: Path) -> None:
    first, second = FileLock(tmp_path / "x.lock"), FileLock(tmp_path / "x.lock")
    first.acquire()
    with pytest.raises(SchedulerLockedError, match=r"pid \d+"):
        second.acquire()
    first.release()
    second.acquire()
    second.release()


def test_sqlite_lock_sits_next_to_the_database_file(tmp_path: Path, sessions) -> None:
    lock = lock_for(f"sqlite:///{tmp_path / 'db' / 'b.db'}", tmp_path / "instance", sessions)
    assert isinstance(lock, FileLock) and lock.path == (tmp_path / "db" / "b.db.scheduler-lock").resolve()
    memory = lock_for("sqlite://", tmp_path / "instance", sessions)
    assert (
        isinstance(memory, FileLock) and memory.path == (tmp_path / "instance" / "scheduler.lock").resolve()
    )
    assert isinstance(lock_for("postgresql://u:p@db/loa", tmp_path, sessions), LeaseLock)


def test_lease_lock_refuses_a_second_holder_until_released_or_expired(sessions) -> None:
    first, second = LeaseLock(sessions, lease_s=30), LeaseLock(sessions, lease_s=30)
    first.acquire()
    try:
        with pytest.raises(SchedulerLockedError, match=first.owner):
            second.acquire()
        # the holder died without releasing: once its lease expired, another may take over
        with sessions.begin() as s:
            row = s.get(Setting, LEASE_KEY)
            row.value = {**row.value, "expires": (datetime.now(UTC) - timedelta(seconds=1)).isoformat()}
        second.acquire()
        with sessions() as s:
            assert s.get(Setting, LEASE_KEY).value["owner"] == second.owner
        second.release()
        with sessions() as s:
            assert s.get(Setting, LEASE_KEY) is None
    finally:
        first.release()  # not the owner any more: leaves the row alone

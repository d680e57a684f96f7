"""The one-scheduler lock: a flock for SQLite, a lease row for other databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from broadcaster.db import create_schema, make_engine, make_session_factory
from broadcaster.models import Setting
from broadcaster.scheduling.lock import LEASE_KEY, FileLock, LeaseLock, SchedulerLockedError, lock_for
from tests.fixtures_postgres import db_url_for

# On SQLite and on PostgreSQL (tests/fixtures_postgres.py).
pytestmark = pytest.mark.usefixtures("database")


@pytest.fixture
def sessions(tmp_path: Path):
    engine = make_engine(db_url_for(tmp_path / "lock.db"))
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


def test_a_lease_taken_over_tells_its_old_holder_once(sessions) -> None:
    """When another process took the lease over (after ours expired, e.g. a long pause), the old
    holder is told at its next renewal and stops renewing: it must stop firing jobs."""
    import threading

    lost: list[str] = []
    told = threading.Event()

    def on_lost(holder: str) -> None:
        lost.append(holder)
        told.set()

    first = LeaseLock(sessions, lease_s=1, on_lost=on_lost)
    first.acquire()
    try:
        with sessions.begin() as s:  # what another process does once our lease has expired
            row = s.get(Setting, LEASE_KEY)
            row.value = {"owner": "other:42", "expires": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}
        assert told.wait(10)
        assert lost == ["other:42"] and first.lost.is_set()
        with sessions() as s:
            assert s.get(Setting, LEASE_KEY).value["owner"] == "other:42"  # not taken back
    finally:
        first.release()


def test_a_scheduler_that_lost_its_lease_fires_nothing(tmp_path: Path) -> None:
    from tests.test_scheduling import Env, once, wait_clock_past

    env = Env(tmp_path)
    try:
        service = env.new()
        service.start()
        at = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
        sid = service.create_schedule(once(at))
        service._lease_lost("other:42")  # what the lease lock calls (previous test)
        assert service.fire_schedule(sid) is None
        wait_clock_past(at + timedelta(seconds=1))  # its air time passes: the paused clock fires nothing
        assert env.manager.list() == []
        with env.sessions() as s:
            from sqlalchemy import select

            from broadcaster.models import LogEntry

            kinds = s.scalars(select(LogEntry.kind)).all()
        assert "scheduler_lease_lost" in kinds
    finally:
        env.close()

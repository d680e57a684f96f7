"""Fault injection over real parts: a transport whose publishes fail, sessions whose commits fail."""

from __future__ import annotations

import json
import threading
from typing import Any

from broadcaster.transport import TransportError
from broadcaster.transport.memory import MemoryTransport


class FlakyTransport(MemoryTransport):
    """A MemoryTransport client whose next ``fail_publishes`` publishes to topics containing
    ``fail_topic`` raise TransportError, as the paho transport does on a publish error. ``failed``
    counts the raised ones."""

    def __init__(self, broker: Any) -> None:
        super().__init__(broker)
        self.fail_publishes = 0
        self.fail_topic = "/cmd"
        self.failed = 0

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, expiry_s: float | None = None
    ) -> None:
        if self.fail_publishes > 0 and self.fail_topic in topic:
            self.fail_publishes -= 1
            self.failed += 1
            raise TransportError(f"publish to {topic} failed: injected")
        super().publish(topic, payload, qos, retain, expiry_s)


class FlakyCommitSessions:
    """A ``sessionmaker`` stand-in over a real one. ``fail_commits = n`` makes the next n write
    transactions (``begin()`` blocks that flushed or executed a write) opened on ``thread`` roll back at
    commit and raise ``OperationalError('database is locked')``, as SQLite does under contention.
    Plain ``sessions()`` and read-only transactions are passed through."""

    def __init__(self, sessions: Any, thread: str = "broadcasts-dispatcher") -> None:
        self._sessions = sessions
        self.thread = thread
        self.fail_commits = 0
        self.failed = 0
        self._lock = threading.Lock()

    def __call__(self, **kwargs: Any) -> Any:
        return self._sessions(**kwargs)

    def begin(self) -> Any:
        import contextlib
        import sqlite3

        from sqlalchemy import event
        from sqlalchemy.exc import OperationalError

        @contextlib.contextmanager
        def transaction() -> Any:
            session = self._sessions()
            wrote: list[bool] = []
            event.listen(session, "after_flush", lambda *_: wrote.append(True))
            event.listen(
                session,
                "do_orm_execute",
                lambda state: (
                    wrote.append(True) if state.is_insert or state.is_update or state.is_delete else None
                ),
            )
            try:
                session.begin()
                yield session
                session.flush()
                with self._lock:
                    fail = (
                        bool(wrote)
                        and self.fail_commits > 0
                        and threading.current_thread().name == self.thread
                    )
                    if fail:
                        self.fail_commits -= 1
                        self.failed += 1
                if fail:
                    raise OperationalError("COMMIT", {}, sqlite3.OperationalError("database is locked"))
                session.commit()
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()

        return transaction()


def payloads(transport: Any, topic_part: str) -> list[dict[str, Any]]:
    """Decoded JSON payloads a MemoryTransport published on topics containing ``topic_part``."""
    return [
        json.loads(p) for t, p, *_ in transport.sent if topic_part in t and not t.split("/")[1] == "audio"
    ]

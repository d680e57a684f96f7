"""Characters sent to each metered (cloud) engine per local day: what the deployment pays for,
and what the daily caps (``tts.<engine>.daily_char_cap``) are checked against.

A :class:`UsageCounter` is given to the engine chain: :class:`MemoryUsageCounter` for unit tests
and tools, :class:`SqlUsageCounter` (table ``tts_usage``) in production. Days are local dates
(the controller's time zone), so a cap resets at local midnight.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

_LOGGER = logging.getLogger(__name__)


@runtime_checkable
class UsageCounter(Protocol):
    """Per engine and local day: characters sent and requests made. Thread-safe."""

    def add(self, engine: str, day: date, chars: int) -> int:
        """Count ``chars`` characters in one request; return the day's new total."""
        ...

    def used(self, engine: str, day: date) -> int:
        """Characters sent to ``engine`` on ``day``."""
        ...

    def totals(self, start: date, end: date) -> dict[str, int]:
        """Characters per engine from ``start`` to ``end`` (both included)."""
        ...


class MemoryUsageCounter:
    """The counter in a dict (unit tests, one-off tools)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._chars: dict[tuple[str, date], int] = {}
        self.requests: dict[tuple[str, date], int] = {}

    def add(self, engine: str, day: date, chars: int) -> int:
        with self._lock:
            key = (engine, day)
            self._chars[key] = self._chars.get(key, 0) + chars
            self.requests[key] = self.requests.get(key, 0) + 1
            return self._chars[key]

    def used(self, engine: str, day: date) -> int:
        with self._lock:
            return self._chars.get((engine, day), 0)

    def totals(self, start: date, end: date) -> dict[str, int]:
        out: dict[str, int] = {}
        with self._lock:
            for (engine, day), chars in self._chars.items():
                if start <= day <= end:
                    out[engine] = out.get(engine, 0) + chars
        return out


class SqlUsageCounter:
    """The counter in the ``tts_usage`` table (one row per engine and day), through the
    controller's session factory. Safe across threads and processes: the row is incremented in
    the database, never read-modified-written in Python."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def add(self, engine: str, day: date, chars: int) -> int:
        from sqlalchemy import select, update
        from sqlalchemy.exc import IntegrityError

        from broadcaster.models import TtsUsage

        row = TtsUsage.__table__
        for _attempt in range(3):  # an insert race with another thread: update the row it made
            try:
                with self._sessions.begin() as session:
                    changed = session.execute(
                        update(row)
                        .where(row.c.engine == engine, row.c.day == day)
                        .values(chars=row.c.chars + chars, requests=row.c.requests + 1)
                    ).rowcount
                    if not changed:
                        session.add(TtsUsage(engine=engine, day=day, chars=chars, requests=1))
                        session.flush()
                    return int(
                        session.scalar(select(row.c.chars).where(row.c.engine == engine, row.c.day == day))
                        or 0
                    )
            except IntegrityError:
                continue
        raise RuntimeError(f"cannot count usage of {engine} on {day}")

    def used(self, engine: str, day: date) -> int:
        from sqlalchemy import select

        from broadcaster.models import TtsUsage

        with self._sessions() as session:
            return int(
                session.scalar(select(TtsUsage.chars).where(TtsUsage.engine == engine, TtsUsage.day == day))
                or 0
            )

    def totals(self, start: date, end: date) -> dict[str, int]:
        from sqlalchemy import func, select

        from broadcaster.models import TtsUsage

        with self._sessions() as session:
            rows = session.execute(
                select(TtsUsage.engine, func.sum(TtsUsage.chars))
                .where(TtsUsage.day >= start, TtsUsage.day <= end)
                .group_by(TtsUsage.engine)
            ).all()
        return {engine: int(total or 0) for engine, total in rows}


@dataclass(frozen=True)
class UsageRow:
    """One engine's line on the settings page."""

    engine: str
    label_vi: str
    today: int
    month: int
    daily_cap: int | None

    @property
    def remaining_today(self) -> int | None:
        return None if self.daily_cap is None else max(0, self.daily_cap - self.today)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "remaining_today": self.remaining_today}


def usage_report(
    counter: UsageCounter,
    engines: Iterable[tuple[str, str]],
    caps: Mapping[str, int],
    today: date,
) -> list[UsageRow]:
    """Today's and this month's characters per engine (``engines``: name and Vietnamese label,
    in display order), with the daily cap when there is one."""
    engines = list(engines)
    if not engines:
        return []
    month = counter.totals(today.replace(day=1), today)
    day = counter.totals(today, today)
    return [
        UsageRow(name, label, day.get(name, 0), month.get(name, 0), caps.get(name)) for name, label in engines
    ]


class LazySqlUsageCounter:
    """A SqlUsageCounter for ``db_url`` made on first use, on its own engine, with the schema
    brought up to date (for callers without the controller's session factory, e.g. the
    ``broadcaster tts`` command). Nothing touches the database until a cloud engine is used."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self._lock = threading.Lock()
        self._counter: SqlUsageCounter | None = None

    def _real(self) -> SqlUsageCounter:
        with self._lock:
            if self._counter is None:
                from broadcaster.db import create_schema, make_engine, make_session_factory

                engine = make_engine(self.db_url)
                create_schema(engine)
                self._counter = SqlUsageCounter(make_session_factory(engine))
            return self._counter

    def add(self, engine: str, day: date, chars: int) -> int:
        return self._real().add(engine, day, chars)

    def used(self, engine: str, day: date) -> int:
        return self._real().used(engine, day)

    def totals(self, start: date, end: date) -> dict[str, int]:
        return self._real().totals(start, end)


__all__ = [
    "LazySqlUsageCounter",
    "MemoryUsageCounter",
    "SqlUsageCounter",
    "UsageCounter",
    "UsageRow",
    "usage_report",
]

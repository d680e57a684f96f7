"""The one resolver of broadcast targets: ``"all"``, zone ids and cluster ids -> clusters.

Every caller (broadcasts, volume, schedules, the API, the web forms) goes through this module, so
"who hears it" is decided in one place. Zone ids and cluster ids share one namespace (the registry
refuses an id that the other table already uses), so a target never means two things.

- :func:`check_target_list` checks the shape of a target list at the edge (no database);
- :func:`resolve` turns a list into the enabled clusters it reaches and the zones it names whole;
- :func:`zone_map` reads zone membership and quiet hours for arbitration;
- :class:`TargetResolver` does the same with a session of its own, and says in words who will
  hear an item ("3 cụm loa ở Thôn Đông").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.domain import ALL_TARGETS
from broadcaster.models import Speaker, Zone

# A broadcast names at most this many targets: more is a client bug, not a commune.
MAX_TARGETS = 1000
# Zone membership and quiet hours are re-read this often (and at once after a registry change).
ZONE_MAP_TTL_S = 5.0


class TargetError(ValueError):
    """A target list that cannot be used; the message is for the officer (Vietnamese)."""

    def __init__(self, message: str, *, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class Resolution:
    """Who a target list reaches."""

    speakers: tuple[str, ...]  # enabled clusters, sorted
    whole_zones: frozenset[str]  # zones named as a whole (directly or by "all")


@dataclass(frozen=True)
class ZoneMap:
    """Zone membership and quiet hours, as read from the registry."""

    speaker_zone: dict[str, str | None]
    members: dict[str, frozenset[str]]  # enabled members only
    quiet: dict[str, tuple[str | None, str | None]]
    loaded_at: float = 0.0

    def zone_of(self, speaker: str) -> str | None:
        return self.speaker_zone.get(speaker)


def check_target_list(value: Any) -> tuple[str, ...]:
    """The shape of a target list, before any lookup: a non-empty list of ids (a single string is
    taken as a list of one), at most MAX_TARGETS, and ``"all"`` alone or not at all. Duplicates are
    dropped, order kept. Raises TargetError."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not value:
        raise TargetError("Vui lòng chọn nơi phát: tất cả loa, một khu vực hoặc từng cụm loa.")
    if not all(isinstance(t, str) and t.strip() for t in value):
        raise TargetError("Nơi phát phải là danh sách mã khu vực hoặc mã cụm loa.")
    if len(value) > MAX_TARGETS:
        raise TargetError(f"Chọn tối đa {MAX_TARGETS} nơi phát.")
    targets = tuple(dict.fromkeys(t.strip() for t in value))
    if ALL_TARGETS in targets and len(targets) > 1:
        raise TargetError(
            "«Tất cả loa» không đi cùng khu vực hay cụm loa khác: chọn «Tất cả loa», hoặc bỏ chọn nó "
            "và chọn từng khu vực, cụm loa."
        )
    return targets


def resolve(session: Session, targets: Iterable[str], *, enabled_only: bool = True) -> Resolution:
    """The clusters meant by ``targets``. Raises TargetError naming every unknown target, or when
    no enabled cluster is left."""
    wanted = check_target_list(list(targets))
    rows = session.execute(select(Speaker.id, Speaker.zone_id, Speaker.enabled)).all()
    zones = set(session.scalars(select(Zone.id)))
    known = {r.id for r in rows}
    unknown = [t for t in wanted if t != ALL_TARGETS and t not in zones and t not in known]
    if unknown:
        raise TargetError(f"Không có khu vực hay cụm loa: {', '.join(unknown[:20])}.", code="unknown")
    everything = ALL_TARGETS in wanted
    chosen = sorted(
        r.id
        for r in rows
        if (r.enabled or not enabled_only)
        and (everything or r.id in wanted or (r.zone_id is not None and r.zone_id in wanted))
    )
    if not chosen:
        raise TargetError("Không có cụm loa nào đang hoạt động ở nơi đã chọn.", code="empty")
    whole = frozenset(z for z in zones if everything or z in wanted)
    return Resolution(tuple(chosen), whole)


def zone_map(session: Session) -> ZoneMap:
    speaker_zone: dict[str, str | None] = {}
    members: dict[str, set[str]] = {}
    for sid, zone, enabled in session.execute(select(Speaker.id, Speaker.zone_id, Speaker.enabled)):
        speaker_zone[sid] = zone
        if zone is not None and enabled:
            members.setdefault(zone, set()).add(sid)
    quiet = {z.id: (z.quiet_start, z.quiet_end) for z in session.scalars(select(Zone))}
    for zone in quiet:
        members.setdefault(zone, set())
    return ZoneMap(speaker_zone, {z: frozenset(m) for z, m in members.items()}, quiet, time.monotonic())


def describe(
    targets: Sequence[str], speakers: int, zone_names: dict[str, str], speaker_names: dict[str, str]
) -> str:
    """Who will hear it, in words: "tất cả 9 cụm loa", "3 cụm loa ở Thôn Đông",
    "4 cụm loa ở Thôn Đoài và Cụm loa 1"."""
    if not targets or ALL_TARGETS in targets:
        return f"tất cả {speakers} cụm loa"
    names = [zone_names.get(t) or speaker_names.get(t) or t for t in targets]
    where = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " và " + names[-1]
    return f"{speakers} cụm loa ở {where}"


class TargetResolver:
    """The module functions with a session of their own and a cached zone map (thread-safe)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self._lock = threading.Lock()
        self._zones: ZoneMap | None = None

    def resolve(self, targets: Iterable[str], *, enabled_only: bool = True) -> Resolution:
        with self.sessions() as session:
            return resolve(session, targets, enabled_only=enabled_only)

    def known(self) -> set[str]:
        """Every zone and cluster id, plus ``"all"``."""
        with self.sessions() as session:
            return {ALL_TARGETS, *session.scalars(select(Zone.id)), *session.scalars(select(Speaker.id))}

    def zone_map(self, session: Session | None = None, *, fresh: bool = False) -> ZoneMap:
        with self._lock:
            zones = self._zones
            if zones is not None and not fresh and time.monotonic() - zones.loaded_at < ZONE_MAP_TTL_S:
                return zones
        if session is None:
            with self.sessions() as own:
                zones = zone_map(own)
        else:
            zones = zone_map(session)
        with self._lock:
            self._zones = zones
        return zones

    def invalidate(self, *_: Any) -> None:
        """Registry hook: the next zone_map() reads the registry again."""
        with self._lock:
            self._zones = None

    def describe(self, targets: Sequence[str]) -> str:
        """Who will hear ``targets``, in Vietnamese (unknown targets are named as they are)."""
        with self.sessions() as session:
            zone_names = dict(session.execute(select(Zone.id, Zone.name)).all())
            speaker_names = dict(session.execute(select(Speaker.id, Speaker.name)).all())
            try:
                count = len(resolve(session, targets).speakers)
            except TargetError:
                count = 0
        return describe(list(targets), count, zone_names, speaker_names)


__all__ = [
    "MAX_TARGETS",
    "Resolution",
    "TargetError",
    "TargetResolver",
    "ZoneMap",
    "check_target_list",
    "describe",
    "resolve",
    "zone_map",
]

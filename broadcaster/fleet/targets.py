"""The one resolver of broadcast targets: ``"all"``, zone ids and cluster ids -> clusters.

Every caller (broadcasts, volume, schedules, the API, the web forms) goes through this module, so
"who hears it" is decided in one place. Zone ids and cluster ids share one namespace (the registry
refuses an id that the other table already uses), so a target never means two things.

- :func:`check_target_list` checks the shape of a target list at the edge (no database);
- :func:`resolve` turns a list into the enabled clusters it reaches and the zones it names whole;
- :func:`zone_map` reads zone membership and quiet hours for arbitration;
- :class:`TargetResolver` does the same with a session of its own, and says in words who will
  hear an item ("3 cụm loa ở Thôn Đông").

On an upper level (a district, a province) a target may also name downstream units (issue 11):
``unit:*`` (every unit below), ``unit:xa-b`` (one unit and what is below it), ``unit:huyen-a/xa-b``
(a commune below a district, as the district reported it). They reach no local cluster: the
resolution lists them in ``units`` and ``broadcaster.federation`` sends the bulletin down.
"""

from __future__ import annotations

import re
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
UNIT_PREFIX = "unit:"
UNIT_ALL = "unit:*"
_UNIT_TARGET_RE = re.compile(r"^unit:(\*|[a-z0-9][a-z0-9-]{0,62}(/[a-z0-9][a-z0-9-]{0,62}){0,3})$")


def is_unit_target(target: str) -> bool:
    return target.startswith(UNIT_PREFIX)


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
    units: tuple[str, ...] = ()  # downstream unit targets ("unit:*", "unit:xa-b"), as given


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
    taken as a list of one), at most MAX_TARGETS, and ``"all"`` alone or not at all among the local
    targets (it may go with unit targets). Duplicates are dropped, order kept. Raises TargetError."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not value:
        raise TargetError("Vui lòng chọn nơi phát: tất cả loa, một khu vực hoặc từng cụm loa.")
    if not all(isinstance(t, str) and t.strip() for t in value):
        raise TargetError("Nơi phát phải là danh sách mã khu vực hoặc mã cụm loa.")
    if len(value) > MAX_TARGETS:
        raise TargetError(f"Chọn tối đa {MAX_TARGETS} nơi phát.")
    targets = tuple(dict.fromkeys(t.strip() for t in value))
    bad = [t for t in targets if is_unit_target(t) and not _UNIT_TARGET_RE.match(t)]
    if bad:
        raise TargetError(
            f"Đơn vị cấp dưới không hợp lệ: {', '.join(bad[:5])} (ví dụ unit:xa-phuc-hoa, unit:*)."
        )
    local = [t for t in targets if not is_unit_target(t)]
    if ALL_TARGETS in local and len(local) > 1:
        raise TargetError(
            "«Tất cả loa» không đi cùng khu vực hay cụm loa khác: chọn «Tất cả loa», hoặc bỏ chọn nó "
            "và chọn từng khu vực, cụm loa."
        )
    return targets


def resolve(session: Session, targets: Iterable[str], *, enabled_only: bool = True) -> Resolution:
    """The clusters meant by ``targets``. Raises TargetError naming every unknown target, or when
    no enabled cluster is left."""
    checked = check_target_list(list(targets))
    units = tuple(t for t in checked if is_unit_target(t))
    wanted = tuple(t for t in checked if not is_unit_target(t))
    if units:
        missing = [t for t in units if t not in unit_targets_known(session)]
        if missing:
            raise TargetError(f"Không có đơn vị cấp dưới: {', '.join(missing[:20])}.", code="unknown")
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
    if not chosen and (wanted or not units):
        raise TargetError("Không có cụm loa nào đang hoạt động ở nơi đã chọn.", code="empty")
    whole = frozenset(z for z in zones if everything or z in wanted)
    return Resolution(tuple(chosen), whole, units)


def unit_targets_known(session: Session) -> set[str]:
    """The unit targets this level can send to: ``unit:*`` when it has units, each active unit,
    and the units below them that they reported (``unit:huyen-a/xa-b``)."""
    from broadcaster.federation.models import FedCluster, FedUnit, FedUnitBulletin

    units = set(session.scalars(select(FedUnit.name).where(FedUnit.revoked.is_(False))))
    if not units:
        return set()
    paths = set(session.scalars(select(FedCluster.unit).distinct()))
    paths |= set(session.scalars(select(FedUnitBulletin.unit).distinct()))
    below = {p for p in paths if p.partition("/")[0] in units}
    return {UNIT_ALL, *(UNIT_PREFIX + u for u in units | below)}


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
    "4 cụm loa ở Thôn Đoài và Cụm loa 1"; units below: "... và mọi đơn vị cấp dưới"."""
    units = [t for t in targets if is_unit_target(t)]
    if units:
        local = [t for t in targets if not is_unit_target(t)]
        below = (
            "mọi đơn vị cấp dưới"
            if UNIT_ALL in units
            else "đơn vị cấp dưới " + ", ".join(t[len(UNIT_PREFIX) :] for t in units)
        )
        return f"{describe(local, speakers, zone_names, speaker_names)} và {below}" if local else below
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
        """Every zone and cluster id, plus ``"all"``, plus the unit targets (upper levels)."""
        with self.sessions() as session:
            return {
                ALL_TARGETS,
                *session.scalars(select(Zone.id)),
                *session.scalars(select(Speaker.id)),
                *unit_targets_known(session),
            }

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
    "UNIT_ALL",
    "UNIT_PREFIX",
    "Resolution",
    "TargetError",
    "TargetResolver",
    "ZoneMap",
    "check_target_list",
    "describe",
    "is_unit_target",
    "resolve",
    "unit_targets_known",
    "zone_map",
]

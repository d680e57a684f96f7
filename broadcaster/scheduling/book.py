"""The schedules themselves: create, change, delete, read, and load ``schedules/*.yaml``.

A schedule is checked in two steps: its timing by the spec (``spec.py``: kinds, times, days,
cron, validity), and its bulletin (text, title, tier, targets, repeat, engine) by the one
announcement validator (``broadcasts/validation.py``) with the limits from the settings, so a
bulletin the compose page accepts is one the scheduler accepts, and the other way round. A relay
schedule (``channel`` + ``duration_s`` instead of a text) is checked by the same validator's
``check_stream``: the channel must exist and be enabled, the duration within the limits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session, sessionmaker

from broadcaster.broadcasts.validation import AnnouncementInvalid, AnnouncementValidator, Draft
from broadcaster.domain import Tier
from broadcaster.models import Approval, Channel, Schedule
from broadcaster.scheduling.apsched import Timing, TriggerError, build_trigger
from broadcaster.scheduling.spec import ScheduleError, ScheduleFields, parse_cron, validate_spec
from broadcaster.scheduling.yamlfiles import load_dir

_LOGGER = logging.getLogger(__name__)

# A one-off time this close behind "now" is still accepted (clock skew between browser and server).
PAST_TOLERANCE = timedelta(seconds=60)
# Fields whose change needs new audio.
AUDIO_FIELDS = frozenset({"text", "engine", "voice", "repeat"})
TIMING_FIELDS = ("kind", "time", "days", "at", "cron", "valid_from", "valid_to")


def timing_of(row: Schedule | ScheduleFields) -> Timing:
    """The timing fields of a row or a spec, for ``apsched.build_trigger``."""
    if isinstance(row, Schedule):
        at, days = row.run_at, row.days
    else:
        at, days = row.at, (",".join(row.days) if row.days else None)
    return Timing(
        kind=row.kind,
        time=row.time,
        days=days,
        at=at,
        cron=parse_cron(row.cron) if row.cron else None,
        valid_from=row.valid_from,
        valid_to=row.valid_to,
    )


def trigger_of(row: Schedule | ScheduleFields, zone: tzinfo) -> Any:
    """The trigger of a schedule; ScheduleError on a bad definition."""
    try:
        return build_trigger(timing_of(row), zone)
    except TriggerError as exc:
        raise ScheduleError(exc.message, field=exc.field) from exc
    except ValueError as exc:  # a cron line that parse_cron refuses
        raise ScheduleError(f"cron: {exc}", field="cron") from exc


class ScheduleBook:
    """CRUD of schedules and the YAML folder. ``changed(schedule_id, audio_changed)`` and
    ``removed(schedule_id)`` tell the scheduler to re-sync jobs and render ahead."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        zone: tzinfo,
        validator: AnnouncementValidator,
        schedules_dir: Path | None,
        *,
        changed: Callable[[int, bool], None],
        removed: Callable[[int, str | None], None],
        next_run: Callable[[Schedule], datetime | None],
        channels: Any = None,
        relay_max_s: float = 6 * 3600.0,
    ) -> None:
        """``channels``: the relay channels (``live.channels.Channels``: ``usable(id)``,
        ``by_name(name)``); None: relay schedules are refused."""
        self.sessions = sessions
        self.channels = channels
        self.relay_max_s = relay_max_s
        self.zone = zone
        self.validator = validator
        self.schedules_dir = schedules_dir
        self.changed = changed
        self.removed = removed
        self.next_run = next_run
        self.last_reload: dict[str, Any] = {}

    # ------------------------------------------------------------------ validation

    def validate(self, data: dict[str, Any], *, is_new: bool) -> ScheduleFields:
        spec = validate_spec(data, self.zone)
        self.check_bulletin(spec)
        trigger_of(spec, self.zone)  # the definition must make a trigger
        if spec.kind == "once" and spec.at is not None and is_new and spec.at < _utcnow() - PAST_TOLERANCE:
            raise ScheduleError("Thời điểm phát đã qua.", field="at")
        return spec

    def check_bulletin(self, spec: ScheduleFields) -> None:
        """The bulletin fields, by the one announcement validator (a relay: its channel, duration,
        tier, targets and title; the channel given by name becomes its id, and names the
        schedule when it has no name of its own)."""
        if spec.is_relay:
            self._check_relay(spec)
            return
        try:
            self.validator.check(Draft.of(spec), check_time=False)
        except AnnouncementInvalid as exc:
            raise ScheduleError(exc.message, field=exc.field) from exc

    def _check_relay(self, spec: ScheduleFields) -> None:
        channel = spec.channel
        if isinstance(channel, str) and self.channels is not None:
            found = self.channels.by_name(channel)
            if found is None:
                raise ScheduleError(f"Không có kênh tiếp sóng «{channel}».", field="channel")
            channel = found
        try:
            checked = self.validator.check_stream(
                channel=channel,
                duration_s=spec.duration_s,
                tier=Tier(spec.tier).value,
                targets=list(spec.targets),
                title=spec.title,
                max_s=self.relay_max_s,
                channel_lookup=self.channels.usable if self.channels is not None else None,
                check_time=False,
            )
        except AnnouncementInvalid as exc:
            raise ScheduleError(exc.message, field=exc.field) from exc
        spec.channel = checked.channel_id
        if not spec.name:
            spec.name = spec.title or f"Tiếp sóng {checked.channel_name}"

    # ------------------------------------------------------------------ CRUD

    def create(self, data: dict[str, Any], author: str | None = None) -> int:
        """Validate and store a schedule. Returns its id."""
        spec = self.validate(data, is_new=True)
        with self.sessions.begin() as session:
            row = Schedule(author=author)
            apply_spec(row, spec)
            session.add(row)
            session.flush()
            schedule_id = row.id
        _LOGGER.info("schedule %s (%s) created by %s", schedule_id, spec.name, author)
        self.changed(schedule_id, True)
        return schedule_id

    def update(self, schedule_id: int, data: dict[str, Any]) -> dict[str, Any]:
        """Change some fields (a partial update). A change of ``kind`` drops the old timing fields."""
        if not isinstance(data, dict):
            raise ScheduleError("Lịch phát phải là một bảng các trường.")
        with self.sessions.begin() as session:
            row = self._row(session, schedule_id)
            self._not_from_file(row, "edit")
            current = row_data(row)
            if "kind" in data and data["kind"] != row.kind:
                for key in ("time", "days", "at", "cron"):
                    current.pop(key, None)
            if "channel" in data:  # a bulletin becomes a relay or the other way round
                current.pop("text" if data["channel"] is not None else "duration_s", None)
            spec = self.validate({**current, **data}, is_new="at" in data)
            changed = apply_spec(row, spec)
        self.changed(schedule_id, bool(changed & AUDIO_FIELDS))
        return self.get(schedule_id)

    def delete(self, schedule_id: int) -> None:
        with self.sessions.begin() as session:
            row = self._row(session, schedule_id)
            self._not_from_file(row, "remove")
            key = row.audio_key
            session.delete(row)
        self.removed(schedule_id, key)
        _LOGGER.info("schedule %s deleted", schedule_id)

    def get(self, schedule_id: int) -> dict[str, Any]:
        with self.sessions() as session:
            return self.as_dict(self._row(session, schedule_id))

    def list(self) -> list[dict[str, Any]]:
        with self.sessions() as session:
            return [self.as_dict(r) for r in session.scalars(select(Schedule).order_by(Schedule.id))]

    def as_dict(self, row: Schedule) -> dict[str, Any]:
        """JSON-ready view of a schedule; times in settings.timezone with their offset. A relay
        schedule has ``channel`` (id), ``channel_name`` and ``duration_s``; a bulletin has them null."""
        data = {**dict.fromkeys(TIMING_FIELDS), "channel": None, "duration_s": None, **row_data(row)}
        for key in ("at", "valid_from", "valid_to"):
            data[key] = self._iso(data[key])
        session = object_session(row)
        channel = session.get(Channel, row.channel_id) if session is not None and row.channel_id else None
        return {
            "id": row.id,
            **data,
            "channel_name": channel.name if channel is not None else None,
            "author": row.author,
            "source_file": row.source_file,
            "audio_key": row.audio_key,
            "created": self._iso(row.created),
            "next_run": self._iso(self.next_run(row)) if row.enabled else None,
        }

    def _iso(self, value: datetime | None) -> str | None:
        return None if value is None else value.astimezone(self.zone).isoformat()

    @staticmethod
    def _row(session: Session, schedule_id: int) -> Schedule:
        row = None
        if isinstance(schedule_id, int) and 0 < schedule_id < 2**63:
            row = session.get(Schedule, schedule_id)
        if row is None:
            raise ScheduleError(f"Không có lịch phát {schedule_id}.", code="not_found")
        return row

    @staticmethod
    def _not_from_file(row: Schedule, verb: str) -> None:
        if row.source_file:
            what = "sửa tệp đó" if verb == "edit" else "xóa tệp đó"
            raise ScheduleError(
                f"Lịch này lấy từ tệp schedules/{row.source_file}; hãy {what} thay vì sửa ở đây.",
                code="conflict",
            )

    # ------------------------------------------------------------------ schedules/*.yaml

    def reload_yaml(self) -> dict[str, Any]:
        """Load schedules/*.yaml: create, update or remove the file-based schedules (idempotent).

        Returns ``{"created": [...], "updated": [...], "unchanged": [...], "removed": [...],
        "errors": {file: message}}``. A file that turned bad keeps its last good schedule."""
        loaded = load_dir(self.schedules_dir, self.zone)
        report: dict[str, Any] = {"created": [], "updated": [], "unchanged": [], "removed": [], "errors": {}}
        report["errors"].update(loaded.errors)
        touched: list[tuple[int, bool]] = []
        removed: list[tuple[int, str | None]] = []
        good: dict[str, ScheduleFields] = {}
        for name, spec in loaded.specs.items():
            try:
                self.check_bulletin(spec)
                trigger_of(spec, self.zone)
            except ScheduleError as exc:
                report["errors"][name] = f"{name}: {exc.message}"
                _LOGGER.error("schedule file skipped: %s: %s", name, exc.message)
                continue
            good[name] = spec
        with self.sessions.begin() as session:
            query = select(Schedule).where(Schedule.source_file.is_not(None))
            rows = {r.source_file: r for r in session.scalars(query)}
            for name, spec in good.items():
                row = rows.get(name)
                if row is None:
                    row = Schedule(
                        source_file=name, author=f"schedules/{name}", approval=Approval.APPROVED.value
                    )
                    apply_spec(row, spec)
                    session.add(row)
                    session.flush()
                    report["created"].append(name)
                    touched.append((row.id, True))
                    continue
                changed = apply_spec(row, spec)
                if changed:
                    report["updated"].append(name)
                    touched.append((row.id, bool(changed & AUDIO_FIELDS)))
                else:
                    report["unchanged"].append(name)
            for name, row in rows.items():
                if name not in loaded.specs and name not in loaded.errors:
                    removed.append((row.id, row.audio_key))
                    session.delete(row)
                    report["removed"].append(name)
        for schedule_id, key in removed:
            self.removed(schedule_id, key)
        for schedule_id, audio_changed in touched:
            self.changed(schedule_id, audio_changed)
        if report["created"] or report["updated"] or report["removed"] or report["errors"]:
            _LOGGER.info(
                "schedules/*.yaml: %d created, %d updated, %d removed, %d with errors",
                len(report["created"]),
                len(report["updated"]),
                len(report["removed"]),
                len(report["errors"]),
            )
        self.last_reload = report
        return report


def apply_spec(row: Schedule, spec: ScheduleFields) -> set[str]:
    """Copy a spec onto a row; return the names of the columns that changed."""
    values: dict[str, Any] = {
        "name": spec.name,
        "title": spec.title,
        "text": spec.text,
        "tier": Tier(spec.tier).value,
        "targets": list(spec.targets),
        "repeat": spec.repeat,
        "engine": spec.engine,
        "voice": spec.voice,
        "kind": spec.kind,
        "time": spec.time,
        "days": ",".join(spec.days) if spec.days else None,
        "run_at": spec.at,
        "cron": spec.cron,
        "valid_from": spec.valid_from,
        "valid_to": spec.valid_to,
        "enabled": spec.enabled,
        "channel_id": spec.channel if isinstance(spec.channel, int) else None,
        "duration_s": spec.duration_s,
    }
    approval = getattr(spec, "approval", None)
    if approval is not None:
        values["approval"] = Approval(approval).value
    changed = set()
    for key, value in values.items():
        if getattr(row, key) != value:
            setattr(row, key, value)
            changed.add(key)
    return changed


def row_data(row: Schedule) -> dict[str, Any]:
    """A row as spec data (the timing fields it does not use left out)."""
    data: dict[str, Any] = {
        "name": row.name,
        "title": row.title,
        "text": row.text,
        "tier": row.tier,
        "targets": list(row.targets),
        "repeat": row.repeat,
        "engine": row.engine,
        "voice": row.voice,
        "kind": row.kind,
        "enabled": row.enabled,
        "approval": row.approval,
    }
    if row.channel_id is not None:  # a relay: no text, a channel and a duration
        data["channel"] = row.channel_id
        data["duration_s"] = row.duration_s
    for key, value in (
        ("time", row.time),
        ("days", row.days.split(",") if row.days else None),
        ("at", row.run_at),
        ("cron", row.cron),
        ("valid_from", row.valid_from),
        ("valid_to", row.valid_to),
    ):
        if value is not None:
            data[key] = value
    return data


def _utcnow() -> datetime:
    return datetime.now(UTC)


__all__ = [
    "AUDIO_FIELDS",
    "PAST_TOLERANCE",
    "ScheduleBook",
    "apply_spec",
    "row_data",
    "timing_of",
    "trigger_of",
]

"""What a schedule is, validated at the edge (API, web form, schedules/*.yaml) with pydantic.

A schedule is a bulletin (text, tier, targets, ...), or a relay of a channel (``channel``: its id,
or its name in a YAML file; ``duration_s``: how long, e.g. VOV1 news every day 6:00 for 1800 s)
instead of a text, plus *when*:

* ``once``: ``at`` (an ISO 8601 time; a naive one is in ``settings.timezone``);
* ``daily``: ``time`` "HH:MM";
* ``weekdays``: ``time``, Monday to Friday;
* ``weekly``: ``time`` and ``days`` (``mon``..``sun``, or ``t2``..``t7``, ``cn``);
* ``cron``: a crontab line, 5 fields (minute hour day month day-of-week, 0 or 7 = Sunday as
  in crontab) or 6 with a leading seconds field.

``valid_from``/``valid_to`` bound a recurring schedule (a date means the whole day, local time).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from broadcaster.domain import ALL_TARGETS, Tier, nfc
from broadcaster.models import Approval

KINDS = ("once", "daily", "weekdays", "weekly", "cron")
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Vietnamese day names: thứ hai (t2) .. thứ bảy (t7), chủ nhật (cn).
_DAY_ALIASES = {
    **{d: d for d in DAY_NAMES},
    "t2": "mon",
    "t3": "tue",
    "t4": "wed",
    "t5": "thu",
    "t6": "fri",
    "t7": "sat",
    "cn": "sun",
}
_HHMM_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_CRON_FIELD_RE = re.compile(r"^[A-Za-z0-9*/,-]+$")
_CRON_DOW_NAMES = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}

# The fields a client may send; ``at`` is stored in Schedule.run_at.
SPEC_FIELDS = (
    "name",
    "title",
    "text",
    "tier",
    "targets",
    "repeat",
    "engine",
    "voice",
    "kind",
    "time",
    "days",
    "at",
    "cron",
    "valid_from",
    "valid_to",
    "enabled",
    "approval",
    "channel",
    "duration_s",
)


class ScheduleError(ValueError):
    """A schedule that cannot be accepted; ``message`` is for the officer, ``field`` names the field.

    ``code``: ``invalid``, ``not_found`` or ``conflict``.
    """

    def __init__(self, message: str, *, field: str | None = None, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code


def _tz(info: ValidationInfo) -> tzinfo:
    ctx = info.context or {}
    return ctx.get("tz") or UTC


def _as_utc(value: datetime, zone: tzinfo) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)


class ScheduleFields(BaseModel):
    """The bulletin and its timing. Validate with ``context={"tz": ZoneInfo(...)}``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(None, max_length=200, description="Short name in lists; default the title.")
    title: str = Field("", max_length=300, description="Title read in the log and the week view.")
    # Limits of the bulletin fields (length, repeat, targets, engine) come from the settings and
    # are checked by the one announcement validator (broadcasts/validation.py), not here.
    text: str = Field("", description="What is read aloud (a relay has none).")
    tier: Tier = Field(Tier.NORMAL, description="normal, priority or emergency.")
    targets: list[str] = Field(
        default_factory=lambda: [ALL_TARGETS], min_length=1, description='"all", zone ids or speaker ids.'
    )
    repeat: int = Field(1, ge=1, strict=True, description="Times the text is read in one airing.")
    engine: str | None = Field(None, max_length=50, description="TTS engine; default the configured order.")
    voice: str | None = Field(None, max_length=100, description="Voice of the engine.")
    kind: Literal["once", "daily", "weekdays", "weekly", "cron"] = Field(..., description="How it repeats.")
    time: str | None = Field(None, description='"HH:MM" for daily, weekdays and weekly.')
    days: list[str] | None = Field(None, description="weekly: mon..sun (or t2..t7, cn).")
    at: datetime | None = Field(None, description="once: when; naive = settings.timezone.")
    cron: str | None = Field(
        None, max_length=100, description="cron: 5 (or 6, seconds first) crontab fields."
    )
    valid_from: datetime | None = Field(None, description="First day/time it may fire (a date = that day).")
    valid_to: datetime | None = Field(
        None, description="Last day/time it may fire (a date = through that day)."
    )
    enabled: bool = Field(True, description="A disabled schedule keeps its definition but never fires.")
    # A relay instead of a text (checked against the channels by the one announcement validator).
    channel: int | str | None = Field(
        None, description="Relay this channel (its id, or its name) instead of reading a text."
    )
    duration_s: float | None = Field(
        None, gt=0, description="A relay: how long each airing relays the channel, in seconds."
    )

    @field_validator("name", "title", "text", mode="after")
    @classmethod
    def _nfc(cls, value: str | None) -> str | None:
        return None if value is None else nfc(value)

    @field_validator("channel", mode="before")
    @classmethod
    def _channel(cls, value: Any) -> Any:
        if isinstance(value, bool) or (value is not None and not isinstance(value, int | str)):
            raise ValueError("channel is a channel id (a number) or a channel name")
        if isinstance(value, str):
            value = nfc(value).strip()
            if value.isdigit():
                return int(value)
            if not value:
                raise ValueError("channel is empty")
        return value

    @property
    def is_relay(self) -> bool:
        return self.channel is not None

    @field_validator("time", mode="before")
    @classmethod
    def _time(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str) or not _HHMM_RE.match(value.strip()):
            raise ValueError(f'time must be "HH:MM" (24 h), got {value!r}')
        return value.strip()

    @field_validator("days", mode="before")
    @classmethod
    def _days(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            value = [v for v in re.split(r"[\s,]+", value) if v]
        if not isinstance(value, list) or not value:
            raise ValueError("days must be a non-empty list such as [mon, wed, fri]")
        out = []
        for day in value:
            key = str(day).strip().lower()
            if key not in _DAY_ALIASES:
                raise ValueError(f"unknown day {day!r}; use mon..sun or t2..t7, cn")
            out.append(_DAY_ALIASES[key])
        return sorted(set(out), key=DAY_NAMES.index)

    @field_validator("at", mode="after")
    @classmethod
    def _at(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        return None if value is None else _as_utc(value, _tz(info))

    @field_validator("valid_from", "valid_to", mode="before")
    @classmethod
    def _validity(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
            value = date.fromisoformat(value.strip())
        if isinstance(value, date) and not isinstance(value, datetime):
            zone = _tz(info)
            if info.field_name == "valid_to":  # through the whole day
                return datetime.combine(value + timedelta(days=1), time(), zone) - timedelta(microseconds=1)
            return datetime.combine(value, time(), zone)
        return value

    @field_validator("valid_from", "valid_to", mode="after")
    @classmethod
    def _validity_utc(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        return None if value is None else _as_utc(value, _tz(info))

    @field_validator("cron", mode="after")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parse_cron(value)  # raises ValueError with the field at fault
        return " ".join(value.split())

    @model_validator(mode="after")
    def _by_kind(self) -> ScheduleFields:
        needs = {
            "once": {"at"},
            "daily": {"time"},
            "weekdays": {"time"},
            "weekly": {"time", "days"},
            "cron": {"cron"},
        }[self.kind]
        for name in ("time", "days", "at", "cron"):
            value = getattr(self, name)
            if name in needs and value is None:
                raise ValueError(f"{name}: kind {self.kind!r} needs {name!r}")
            if name not in needs and value is not None:
                raise ValueError(f"{name}: {name!r} does not apply to kind {self.kind!r}")
        if self.channel is None:
            if not self.text.strip():
                raise ValueError("text: text is empty")
            if self.duration_s is not None:
                raise ValueError("duration_s: 'duration_s' applies to a relay (channel) only")
        else:
            if self.text.strip():
                raise ValueError("text: a relay (channel) has no text")
            if self.duration_s is None:
                raise ValueError("duration_s: a relay (channel) needs 'duration_s'")
        if self.valid_from and self.valid_to and self.valid_from > self.valid_to:
            raise ValueError("valid_to: valid_from is after valid_to")
        if self.kind == "once" and self.at is not None:
            if (self.valid_from and self.at < self.valid_from) or (self.valid_to and self.at > self.valid_to):
                raise ValueError("at: 'at' lies outside valid_from..valid_to")
        if not self.name:
            self.name = self.title or (_first_words(self.text) if self.channel is None else "")
        return self


class ScheduleSpec(ScheduleFields):
    """A schedule from the API or the web form: it may carry its approval state."""

    approval: Approval = Field(Approval.APPROVED, description="pending: never fires until approved.")


class ScheduleFile(ScheduleFields):
    """One schedules/*.yaml file. Files are written by the administrator, so they are approved."""


def _first_words(text: str, limit: int = 60) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rsplit(" ", 1)[0] + "…"


def validation_message(exc: ValidationError, where: str | None = None) -> tuple[str, str | None]:
    """A readable one-line message and the first field at fault, from a pydantic error."""
    parts = []
    first_field = None
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if not loc:  # model-level checks name their field as "field: message"
            head, sep, rest = msg.partition(": ")
            if sep and head in SPEC_FIELDS:
                loc, msg = head, rest
        first_field = first_field or (loc.split(".")[0] if loc else None)
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        parts.append(f"{loc}: {msg}" if loc else msg)
    prefix = f"{where}: " if where else ""
    return prefix + "; ".join(parts), first_field


def validate_spec(
    data: Any, zone: tzinfo, *, model: type[ScheduleFields] = ScheduleSpec, where: str | None = None
) -> ScheduleFields:
    """Validate ``data`` into a spec or raise ScheduleError naming the field at fault."""
    if not isinstance(data, dict):
        raise ScheduleError(f"{where + ': ' if where else ''}a schedule must be a mapping of fields")
    try:
        return model.model_validate(data, context={"tz": zone})
    except ValidationError as exc:
        message, field = validation_message(exc, where)
        raise ScheduleError(message, field=field) from exc


# ------------------------------------------------------------------ cron


def _expand_dow(field: str) -> str:
    """Crontab day-of-week (0 or 7 = Sunday, names allowed) -> APScheduler names ``mon,tue,...``.

    APScheduler 3 counts 0 = Monday even in ``CronTrigger.from_crontab``, so ``1-5`` there means
    Tuesday to Saturday; we expand the field ourselves.
    """
    if field == "*":
        return "*"
    days: set[int] = set()
    for part in field.lower().split(","):
        step = 1
        if "/" in part:
            part, step_s = part.split("/", 1)
            if not step_s.isdigit() or int(step_s) == 0:
                raise ValueError(f"day-of-week step {step_s!r}")
            step = int(step_s)
        if part == "*":
            lo, hi = 0, 6
        elif "-" in part:
            a, b = part.split("-", 1)
            lo, hi = _dow_number(a), _dow_number(b)
            if hi < lo:
                raise ValueError(f"day-of-week range {part!r} runs backwards")
        else:
            lo = hi = _dow_number(part)
            if step != 1:
                hi = 6
        days.update(d % 7 for d in range(lo, hi + 1, step))
    # crontab numbers 0=sun..6=sat -> names, listed Monday first
    names = {0: "sun", 1: "mon", 2: "tue", 3: "wed", 4: "thu", 5: "fri", 6: "sat"}
    return ",".join(names[d] for d in sorted(days, key=lambda d: (d + 6) % 7))


def _dow_number(token: str) -> int:
    if token in _CRON_DOW_NAMES:
        return _CRON_DOW_NAMES[token]
    if token.isdigit() and 0 <= int(token) <= 7:
        return int(token)
    raise ValueError(f"day-of-week {token!r} (use 0-7 or sun..sat)")


def parse_cron(expr: str) -> dict[str, str]:
    """Split a crontab line into APScheduler CronTrigger fields; ValueError on a bad line."""
    fields = expr.split()
    if len(fields) not in (5, 6):
        raise ValueError(f"cron needs 5 fields (minute hour day month day-of-week), got {len(fields)}")
    for f in fields:
        if not _CRON_FIELD_RE.match(f):
            raise ValueError(f"cron field {f!r} has characters other than digits, names, * / , -")
    names = ["minute", "hour", "day", "month", "day_of_week"]
    if len(fields) == 6:
        names.insert(0, "second")
    out = dict(zip(names, fields, strict=True))
    if out["day"] != "*" and out["day_of_week"] != "*":
        # crontab ORs the two, APScheduler ANDs them: refuse rather than guess.
        raise ValueError("restrict day of month or day of week, not both")
    out["day_of_week"] = _expand_dow(out["day_of_week"])
    out.setdefault("second", "0")
    return out

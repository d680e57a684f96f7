"""The officer's forms: what was typed, kept as typed (an error never loses it), and the checks
whose messages go next to each field. No routes here; the areas call these."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from broadcaster.broadcasts.validation import AnnouncementInvalid, Draft
from broadcaster.domain import ALL_TARGETS, Tier, nfc
from broadcaster.pronunciation import hint_error
from broadcaster.web.ui import (
    WEEKDAY_KEYS,
    now,
    parse_time,
    services,
    tz,
    zones_with_speakers,
)

# The "Hẹn giờ" kinds that make a recurring bulletin (a schedule), not a one-off item.
RECURRING = ("daily", "weekly")
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
TIME_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def form_values(form: Any) -> dict[str, Any]:
    """What the officer typed, kept as typed (so an error never loses it)."""
    return {
        "title": nfc(form.get("title", "")),
        "text": nfc(form.get("text", "")),
        "tier": form.get("tier", Tier.NORMAL.value),
        "targets": form.getlist("targets"),
        "repeat": form.get("repeat", "1"),
        "engine": form.get("engine", ""),
        "voice": form.get("voice", ""),
        "audio_key": form.get("audio_key", ""),
        "audio_name": form.get("audio_name", ""),
        "when": form.get("when", "once"),
        "date": form.get("date", ""),
        "time": form.get("time", ""),
        "days": form.getlist("days"),
        "weekly_time": form.get("weekly_time", ""),
        "valid_from": form.get("valid_from", ""),
        "valid_to": form.get("valid_to", ""),
        "enabled": form.get("enabled", ""),
    }


def schedule_values(item: dict[str, Any]) -> dict[str, Any]:
    """A saved schedule as the edit form's values."""
    zone = tz()
    days = item.get("days") or []
    kind = item.get("kind") or "weekly"
    if isinstance(days, str):
        days = [d for d in days.split(",") if d]
    day_list = list(WEEKDAY_KEYS) if kind == "daily" else list(days)
    if kind == "weekdays":
        day_list = list(WEEKDAY_KEYS[:5])
    valid_from = parse_time(item.get("valid_from"))
    valid_to = parse_time(item.get("valid_to"))
    return {
        "title": item.get("title") or "",
        "text": item.get("text") or "",
        "tier": item.get("tier") or Tier.NORMAL.value,
        "targets": list(item.get("targets") or [ALL_TARGETS]),
        "repeat": str(item.get("repeat") or 1),
        "engine": item.get("engine") or "",
        "voice": item.get("voice") or "",
        "audio_key": item.get("audio_key") or "",
        "audio_name": "",
        "when": "daily" if kind == "daily" else "weekly",
        "date": "",
        "time": "",
        "days": day_list,
        "weekly_time": item.get("time") or "",
        "valid_from": valid_from.astimezone(zone).date().isoformat() if valid_from else "",
        "valid_to": valid_to.astimezone(zone).date().isoformat() if valid_to else "",
        "enabled": "on" if item.get("enabled", True) else "",
        "kind": kind,
        "cron": item.get("cron"),
        "source_file": item.get("source_file"),
        "approval": item.get("approval"),
    }


def valid_targets() -> tuple[set[str], dict[str, set[str]]]:
    ids: set[str] = set()
    members: dict[str, set[str]] = {}
    for group in zones_with_speakers():
        if group["id"]:
            ids.add(group["id"])
            members[group["id"]] = {s["id"] for s in group["speakers"]}
        ids.update(s["id"] for s in group["speakers"])
    return ids, members


def announcement_draft(values: dict[str, Any]) -> Draft:
    """The announcement fields of the compose or schedule form, as typed."""
    return Draft(
        text=values["text"],
        title=values["title"],
        tier=values["tier"],
        targets=[t for t in values["targets"] if t] or None,
        repeat=values["repeat"],
        engine=values["engine"] or None,
        voice=values["voice"] or None,
        audio_key=values.get("audio_key") or None,
    )


def validate_announcement(values: dict[str, Any], errors: dict[str, str], *, need_text: bool = True) -> None:
    """The fields every announcement has, checked by the one announcement validator (the same
    check as the API, the schedules and the preview); messages go next to their field."""
    try:
        services().validator.check(announcement_draft(values), need_text=need_text, check_time=False)
    except AnnouncementInvalid as exc:
        for field, message in exc.errors.items():
            errors.setdefault(field, message)


def collapsed_targets(values: dict[str, Any]) -> tuple[str, ...]:
    targets = [t for t in values["targets"] if t]
    units = [t for t in targets if t.startswith("unit:")]  # downstream units (issue 11) stay as given
    targets = [t for t in targets if not t.startswith("unit:")]
    if ALL_TARGETS in targets:
        return (ALL_TARGETS, *units)
    _, members = valid_targets()
    zones = [t for t in targets if t in members]
    covered = set().union(*(members[z] for z in zones)) if zones else set()
    return tuple(
        dict.fromkeys([*zones, *(t for t in targets if t not in members and t not in covered), *units])
    )


def local_datetime(day: str, hhmm: str) -> datetime | None:
    try:
        d = date.fromisoformat(day)
    except ValueError:
        return None
    if not TIME_RE.match(hhmm or ""):
        return None
    hour, minute = (int(x) for x in hhmm.split(":"))
    return datetime(d.year, d.month, d.day, hour, minute, tzinfo=tz()).astimezone(UTC)


def validate_schedule(values: dict[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    """The 'Hẹn giờ' fields: one-off date and time, or days of week, time and validity dates."""
    out: dict[str, Any] = {}
    if values["when"] == "once":
        at = local_datetime(values["date"], values["time"])
        if not values["date"]:
            errors["date"] = "Vui lòng chọn ngày phát."
        elif not TIME_RE.match(values["time"] or ""):
            errors["time"] = "Vui lòng nhập giờ phát (giờ:phút)."
        elif at is None:
            errors["date"] = "Ngày không hợp lệ."
        elif at <= now() + timedelta(seconds=30):
            errors["date"] = "Thời điểm phát phải ở tương lai."
        else:
            out["at"] = at
    elif values["when"] in RECURRING:
        if values["when"] == "daily":
            days = list(WEEKDAY_KEYS)
        else:
            days = [d for d in values["days"] if d in WEEKDAY_KEYS]
        if not days:
            errors["days"] = "Vui lòng chọn ít nhất một ngày trong tuần (hoặc chọn «Hằng ngày»)."
        if not TIME_RE.match(values["weekly_time"] or ""):
            errors["weekly_time"] = "Vui lòng nhập giờ phát (giờ:phút)."
        valid_from = valid_to = None
        if values["valid_from"]:
            try:
                valid_from = date.fromisoformat(values["valid_from"])
            except ValueError:
                errors["valid_from"] = "Ngày bắt đầu không hợp lệ."
        if values["valid_to"]:
            try:
                valid_to = date.fromisoformat(values["valid_to"])
            except ValueError:
                errors["valid_to"] = "Ngày kết thúc không hợp lệ."
        if valid_from and valid_to and valid_to < valid_from:
            errors["valid_to"] = "Ngày kết thúc phải sau ngày bắt đầu."
        out.update(
            days=[k for k in WEEKDAY_KEYS if k in days],
            time=values["weekly_time"],
            valid_from=valid_from,
            valid_to=valid_to,
        )
    else:
        errors["when"] = "Vui lòng chọn kiểu hẹn giờ."
    return out


def schedule_data(values: dict[str, Any], sched: dict[str, Any], *, approval: str | None) -> dict[str, Any]:
    """The dict given to ``scheduler.create_schedule`` / ``update_schedule`` (its spec fields;
    validity dates are whole local days)."""
    days = sched["days"]
    data: dict[str, Any] = {
        "name": (values["title"].strip() or values["text"].strip())[:200],
        "title": values["title"].strip(),
        "text": values["text"].strip(),
        "tier": values["tier"],
        "targets": list(collapsed_targets(values)),
        "repeat": int(values["repeat"]),
        "engine": values["engine"] or None,
        "voice": values["voice"] or None,
        "kind": "daily" if len(days) == 7 else "weekly",
        "time": sched["time"],
        "days": None if len(days) == 7 else list(days),
        "valid_from": sched["valid_from"].isoformat() if sched["valid_from"] else None,
        "valid_to": sched["valid_to"].isoformat() if sched["valid_to"] else None,
    }
    if approval is not None:
        data["approval"] = approval
    return data


def lexicon_errors(
    term: str,
    reading: str,
    *,
    engine: str = "",
    voice: str = "",
    hint: str = "",
    engines: Sequence[Mapping[str, Any]] = (),
) -> dict[str, str]:
    """The lexicon form's errors. ``engines``: the configured engines (``engine_choices()``); the
    scope ``engine``/``voice`` must name one of them and one of its voices ("" = all)."""
    errors = {}
    if not term:
        errors["term"] = "Vui lòng nhập từ hoặc chữ viết tắt."
    elif len(term) > 100 or "\n" in term:
        errors["term"] = "Từ viết tắt dài tối đa 100 ký tự, trên một dòng."
    if not reading:
        errors["reading"] = "Vui lòng nhập cách đọc."
    elif len(reading) > 500 or "\n" in reading:
        errors["reading"] = "Cách đọc dài tối đa 500 ký tự, trên một dòng."
    known = {str(e["name"]): e for e in engines}
    if engine and engine not in known:
        errors["engine"] = "Không có giọng đọc này trên máy chủ. Vui lòng chọn trong danh sách."
    elif voice and not engine:
        errors["voice"] = "Vui lòng chọn giọng đọc trước khi chọn kiểu giọng."
    elif voice and voice not in {str(v["id"]) for v in known[engine].get("voices") or ()}:
        errors["voice"] = "Giọng đọc đã chọn không có kiểu giọng này. Vui lòng chọn lại."
    problem = hint_error(hint, engine)
    if problem:
        errors["hint"] = problem
    return errors


def zone_errors(values: dict[str, str], new: bool) -> dict[str, str]:
    errors = {}
    if new and not ID_RE.match(values.get("zone_id", "")):
        errors["zone_id"] = "Mã khu vực: chữ không dấu, số, dấu chấm hoặc gạch; không có khoảng trắng."
    if not values.get("zone_name"):
        errors["zone_name"] = "Vui lòng nhập tên khu vực."
    for key in ("quiet_start", "quiet_end"):
        if values.get(key) and not TIME_RE.match(values[key]):
            errors[key] = "Giờ theo dạng giờ:phút, ví dụ 21:00."
    if bool(values.get("quiet_start")) != bool(values.get("quiet_end")):
        errors["quiet_end"] = "Cần cả giờ bắt đầu và giờ kết thúc giờ yên lặng."
    return errors


def speaker_errors(values: dict[str, str]) -> dict[str, str]:
    errors = {}
    if not ID_RE.match(values["speaker_id"]):
        errors["speaker_id"] = "Mã cụm loa: chữ không dấu, số, dấu chấm hoặc gạch; không có khoảng trắng."
    if not values["speaker_name"]:
        errors["speaker_name"] = "Vui lòng nhập tên cụm loa."
    return errors

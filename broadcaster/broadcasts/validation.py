"""The one announcement validator: the web forms, the REST API, schedules, YAML files and the
broadcast lifecycle all check an announcement here, with the limits from the settings.

``AnnouncementValidator.check(draft)`` takes the fields as they arrived (any types) and returns the
clean values, or raises :class:`AnnouncementInvalid` with a Vietnamese message per field, so a
form can show every problem next to its field and the API can answer with the first one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from broadcaster.broadcasts.errors import BroadcastError
from broadcaster.domain import Announcement, AudioKey, Source, Tier, nfc
from broadcaster.fleet.targets import UNIT_PREFIX, TargetError, TargetResolver, check_target_list
from broadcaster.models import Announcement as AnnouncementRow

# Longest title: what the database column holds.
MAX_TITLE: int = int(AnnouncementRow.__table__.c.title.type.length)  # type: ignore[attr-defined]
# A time this close behind "now" is still accepted (clock skew between a browser and the server).
PAST_TOLERANCE = timedelta(seconds=60)
# Nobody plans a commune announcement more than a year ahead; a later date is a typing mistake.
MAX_AHEAD = timedelta(days=366)
AUDIO_KEY_RE = re.compile(r"^[0-9a-f]{64}$")
FIELDS = (
    "text", "title", "tier", "targets", "repeat", "engine", "voice", "audio", "at",
    "channel", "duration_s", "until",
)  # fmt: skip
# A relay shorter than this is a typing mistake (and would end before every cluster joined).
MIN_STREAM_S = 10.0


@dataclass(frozen=True)
class Limits:
    """Limits from the settings (``textnorm.max_chars``, ``broadcasts.max_repeat`` capped by
    ``audio.max_repeat``)."""

    max_chars: int = 20_000
    max_repeat: int = 5
    max_title: int = MAX_TITLE

    @classmethod
    def from_settings(cls, settings: Any, broadcasts: Any = None) -> Limits:
        """``broadcasts``: the broadcasts config in use (default the settings' own section). The
        repeat limit is capped by the renderer's, so an accepted value never fails at render time."""
        config = broadcasts if broadcasts is not None else settings.broadcasts
        repeat = min(config.max_repeat, settings.audio.max_repeat)
        return cls(max_chars=settings.textnorm.max_chars, max_repeat=repeat)


class AnnouncementInvalid(BroadcastError):
    """``errors`` maps a field (``text``, ``targets``, ...) to its Vietnamese message."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        field, message = next(iter(self.errors.items()))
        super().__init__(message, field=field)


@dataclass(frozen=True)
class Draft:
    """An announcement as it arrived, before any check."""

    text: Any = ""
    title: Any = ""
    tier: Any = Tier.NORMAL.value
    targets: Any = None
    repeat: Any = 1
    engine: Any = None
    voice: Any = None
    audio_key: Any = None
    at: Any = None

    @classmethod
    def of(cls, item: Any) -> Draft:
        """The bulletin fields of an Announcement, a schedule spec, or anything with those names."""
        return cls(**{f: _listed(getattr(item, f, None)) for f in _DRAFT_FIELDS})


_DRAFT_FIELDS = ("text", "title", "tier", "targets", "repeat", "engine", "voice", "audio_key", "at")


def _listed(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class Checked:
    """Clean values; ``at`` is aware UTC or None (now)."""

    text: str
    title: str
    tier: Tier
    targets: tuple[str, ...]
    repeat: int
    engine: str | None
    voice: str | None
    audio_key: str | None
    at: datetime | None

    def announcement(self, *, author: str | None, source: Source) -> Announcement:
        return Announcement(
            text=self.text,
            tier=self.tier,
            targets=self.targets,
            title=self.title,
            repeat=self.repeat,
            engine=self.engine,
            voice=self.voice,
            at=self.at,
            author=author,
            source=source,
            audio_key=AudioKey(self.audio_key) if self.audio_key else None,
        )


@dataclass(frozen=True)
class CheckedStream:
    """A clean relay: the channel, what to call it, tier, targets, start (None: now), planned end."""

    channel_id: int
    channel_name: str
    title: str
    tier: Tier
    targets: tuple[str, ...]
    at: datetime | None
    end: datetime


class AnnouncementValidator:
    """See the module docstring. Collaborators:

    - ``targets``: the one target resolver (unknown zones and clusters are refused);
    - ``engine_names``: the configured engine names; when it fails, an engine cannot be checked
      and is refused (never accepted blindly);
    - ``speakable``: raises an exception with a Vietnamese ``message_vi`` (SpeechError) when the
      text has nothing the normalizer can read; the same check as the web preview;
    - ``audio_exists``: whether an uploaded recording is still in the store.
    """

    def __init__(
        self,
        limits: Limits,
        *,
        targets: TargetResolver | None,
        engine_names: Callable[[], set[str]] | None = None,
        speakable: Callable[[str], object] | None = None,
        audio_exists: Callable[[str], bool] | None = None,
        tz: tzinfo = UTC,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.limits = limits
        self.targets = targets
        self.engine_names = engine_names
        self.speakable = speakable
        self.audio_exists = audio_exists
        self.tz = tz
        self.clock = clock

    def check(
        self,
        draft: Draft,
        *,
        need_text: bool = True,
        check_time: bool = True,
        only: frozenset[str] | None = None,
    ) -> Checked:
        """Every field of ``draft``; AnnouncementInvalid listing every problem. ``only``: report
        problems of these fields alone (the preview checks the text before any target is chosen)."""
        errors: dict[str, str] = {}
        audio_key = self._audio(draft.audio_key, errors)
        text = self._text(draft.text, errors, need=need_text and not draft.audio_key)
        title = self._title(draft.title, errors)
        tier = self._tier(draft.tier, errors)
        targets = self._targets(draft.targets, errors)
        repeat = self._repeat(draft.repeat, errors)
        engine = self._name(draft.engine, "engine", 50, errors)
        voice = self._name(draft.voice, "voice", 100, errors)
        if engine is not None and "engine" not in errors:
            self._engine(engine, errors)
        at = self._at(draft.at, errors, check_time)
        if only is not None:
            errors = {f: m for f, m in errors.items() if f in only}
        if errors:
            raise AnnouncementInvalid({f: errors[f] for f in FIELDS if f in errors})
        return Checked(text, title, tier or Tier.NORMAL, targets, repeat or 1, engine, voice, audio_key, at)

    def check_stream(
        self,
        *,
        channel: Any,
        duration_s: Any = None,
        until: Any = None,
        tier: Any = Tier.NORMAL.value,
        targets: Any = None,
        title: Any = "",
        at: Any = None,
        max_s: float = 6 * 3600.0,
        channel_lookup: Callable[[Any], tuple[int, str, str]] | None = None,
        check_time: bool = True,
    ) -> CheckedStream:
        """A relay (``channel`` + ``duration_s`` or ``until`` instead of ``text``): every field,
        AnnouncementInvalid listing every problem. ``channel_lookup`` returns (id, name, url) of
        an enabled channel or raises an error with a Vietnamese ``message``."""
        errors: dict[str, str] = {}
        channel_id, name = None, ""
        if channel_lookup is None:
            errors["channel"] = "Máy chủ này không bật chức năng tiếp sóng."
        else:
            try:
                channel_id, name, _ = channel_lookup(channel)
            except Exception as exc:
                errors["channel"] = str(getattr(exc, "message", None) or exc)
        title_clean = self._title(title, errors)
        tier_clean = self._tier(tier, errors)
        targets_clean = self._targets(targets, errors)
        at_clean = self._at(at, errors, check_time)
        start = at_clean or self.clock()
        end = self._stream_end(duration_s, until, start, max_s, errors)
        if errors:
            raise AnnouncementInvalid({f: errors[f] for f in FIELDS if f in errors})
        assert channel_id is not None and end is not None
        return CheckedStream(
            channel_id, name, title_clean or name, tier_clean or Tier.NORMAL, targets_clean, at_clean, end
        )

    def _stream_end(
        self, duration_s: Any, until: Any, start: datetime, max_s: float, errors: dict[str, str]
    ) -> datetime | None:
        if (duration_s is None) == (until is None):
            errors["duration_s"] = (
                "Hãy cho biết tiếp sóng bao lâu: số giây (duration_s) hoặc giờ kết thúc (until)."
            )
            return None
        if duration_s is not None:
            if isinstance(duration_s, str) and duration_s.strip().replace(".", "", 1).isdigit():
                duration_s = float(duration_s)
            if isinstance(duration_s, bool) or not isinstance(duration_s, int | float):
                errors["duration_s"] = "Thời lượng tiếp sóng phải là số giây."
                return None
            seconds = float(duration_s)
            field = "duration_s"
        else:
            end = self._at(until, errors, check_time=False, field="until")
            if end is None:
                return None
            seconds = (end - start).total_seconds()
            field = "until"
        if not MIN_STREAM_S <= seconds <= max_s:
            errors[field] = (
                f"Thời lượng tiếp sóng từ {MIN_STREAM_S:.0f} giây đến {max_s / 3600:.0f} giờ "
                f"(đang là {max(0.0, seconds):.0f} giây)."
            )
            return None
        return start + timedelta(seconds=seconds)

    def check_targets(self, value: Any) -> tuple[str, ...]:
        """Only the targets (volume commands, filters): AnnouncementInvalid on a bad list."""
        errors: dict[str, str] = {}
        targets = self._targets(value, errors)
        if errors:
            raise AnnouncementInvalid(errors)
        return targets

    # ------------------------------------------------------------------ fields

    def _text(self, value: Any, errors: dict[str, str], *, need: bool) -> str:
        if value is None:
            value = ""
        if not isinstance(value, str):
            errors["text"] = "Nội dung thông báo phải là văn bản."
            return ""
        text = nfc(value).strip()
        if not text:
            if need:
                errors["text"] = (
                    "Nội dung thông báo đang trống: vui lòng nhập nội dung (hoặc tải lên một bản ghi âm)."
                )
            return ""
        if len(text) > self.limits.max_chars:
            errors["text"] = (
                f"Nội dung dài {_vi_int(len(text))} ký tự, tối đa {_vi_int(self.limits.max_chars)} ký tự."
            )
            return text
        if self.speakable is not None:
            try:
                self.speakable(text)
            except Exception as exc:  # SpeechError: the officer-facing reason is message_vi
                errors["text"] = str(getattr(exc, "message_vi", None) or exc)
        return text

    def _title(self, value: Any, errors: dict[str, str]) -> str:
        if value is None:
            return ""
        if not isinstance(value, str):
            errors["title"] = "Tiêu đề phải là văn bản."
            return ""
        title = nfc(value).strip()
        if len(title) > self.limits.max_title:
            errors["title"] = f"Tiêu đề dài tối đa {self.limits.max_title} ký tự."
        return title

    @staticmethod
    def _tier(value: Any, errors: dict[str, str]) -> Tier | None:
        try:
            return Tier(value)
        except ValueError:
            errors["tier"] = "Mức ưu tiên không hợp lệ: chọn thông thường, ưu tiên hoặc khẩn cấp."
            return None

    def _targets(self, value: Any, errors: dict[str, str]) -> tuple[str, ...]:
        try:
            targets = check_target_list(value)
            if self.targets is not None:
                known = self.targets.known()
                unknown = [t for t in targets if t not in known]
                units = [t for t in unknown if t.startswith(UNIT_PREFIX)]
                if units:  # downstream units (issue 11): a message of their own
                    if not any(k.startswith(UNIT_PREFIX) for k in known):
                        raise TargetError(
                            "Máy chủ này chưa có đơn vị cấp dưới nào để gửi tin "
                            "(thêm bằng lệnh «broadcaster downstream add»)."
                        )
                    raise TargetError(f"Không có đơn vị cấp dưới: {', '.join(units[:20])}.")
                if unknown:
                    raise TargetError(f"Không có khu vực hay cụm loa: {', '.join(unknown[:20])}.")
        except TargetError as exc:
            errors["targets"] = exc.message
            return ()
        return targets

    def _repeat(self, value: Any, errors: dict[str, str]) -> int | None:
        most = self.limits.max_repeat
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
            errors["repeat"] = f"Số lần phát từ 1 đến {most}."
            return None
        return value

    @staticmethod
    def _name(value: Any, field: str, limit: int, errors: dict[str, str]) -> str | None:
        if value is None or value == "":
            return None
        if not isinstance(value, str) or len(value) > limit:
            errors[field] = "Giọng đọc không hợp lệ."
            return None
        return value.strip() or None

    def _engine(self, engine: str, errors: dict[str, str]) -> None:
        if self.engine_names is None:
            return
        try:
            names = self.engine_names()
        except Exception:
            errors["engine"] = "Không kiểm tra được giọng đọc lúc này; hãy thử lại hoặc để giọng mặc định."
            return
        if engine not in names:
            errors["engine"] = f"Giọng đọc không có trên máy chủ này. Có: {', '.join(sorted(names))}."

    def _audio(self, value: Any, errors: dict[str, str]) -> str | None:
        if value is None or value == "":
            return None
        if not isinstance(value, str) or not AUDIO_KEY_RE.match(value):
            errors["audio"] = "Mã bản ghi âm không hợp lệ."
            return None
        if self.audio_exists is not None and not self.audio_exists(value):
            errors["audio"] = "Bản ghi âm đã tải lên không còn trên máy chủ. Vui lòng tải lên lại."
            return None
        return value

    def _at(self, value: Any, errors: dict[str, str], check_time: bool, field: str = "at") -> datetime | None:
        if value is None or value == "":
            return None
        what = "Thời điểm phát" if field == "at" else "Giờ kết thúc"
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                errors[field] = f"{what} không hợp lệ: «{value}» (ví dụ 2026-03-15T07:30:00+07:00)."
                return None
            if value.tzinfo is None:
                value = value.replace(tzinfo=self.tz)
        if not isinstance(value, datetime):
            errors[field] = f"{what} phải có dạng 2026-03-15T07:30:00+07:00."
            return None
        if value.tzinfo is None:
            errors[field] = f"{what} phải có múi giờ (ví dụ 2026-03-15T07:30:00+07:00)."
            return None
        at = value.astimezone(UTC)
        if check_time:
            now = self.clock()
            if at < now - PAST_TOLERANCE:
                errors["at"] = "Thời điểm phát đã qua."
            elif at > now + MAX_AHEAD:
                errors["at"] = "Thời điểm phát xa quá một năm."
        return at


def _vi_int(number: int) -> str:
    """20000 -> "20.000" (Vietnamese thousands separator)."""
    return f"{number:,}".replace(",", ".")


__all__ = [
    "AUDIO_KEY_RE",
    "MAX_AHEAD",
    "MAX_TITLE",
    "PAST_TOLERANCE",
    "AnnouncementInvalid",
    "AnnouncementValidator",
    "Checked",
    "CheckedStream",
    "Draft",
    "Limits",
]

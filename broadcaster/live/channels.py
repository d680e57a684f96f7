"""Relay channels: the admin's named audio streams (``channels`` table), checked at the edge."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.domain import nfc
from broadcaster.live.probe import SourceError, check_url
from broadcaster.models import Broadcast, BroadcastState, Channel, Schedule

# What the column holds.
MAX_NAME = 100


class ChannelError(Exception):
    """A channel request that cannot be done; ``message`` is Vietnamese, ``field`` names the input."""

    def __init__(self, message: str, field: str | None = None, status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status


def channel_dict(row: Channel) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "url": row.url,
        "enabled": row.enabled,
        "created_by": row.created_by,
        "created": row.created.isoformat() if row.created else None,
    }


def _name(value: Any) -> str:
    if not isinstance(value, str) or not nfc(value).strip():
        raise ChannelError("Hãy đặt tên kênh (ví dụ «VOV1», «Đài PT-TH tỉnh»).", "name")
    name = nfc(value).strip()
    if len(name) > MAX_NAME:
        raise ChannelError(f"Tên kênh dài tối đa {MAX_NAME} ký tự.", "name")
    return name


def _url(value: Any) -> str:
    if not isinstance(value, str):
        raise ChannelError("Địa chỉ luồng âm thanh phải là văn bản.", "url")
    try:
        return check_url(value)
    except SourceError as exc:
        raise ChannelError(str(exc), "url") from exc


class Channels:
    """CRUD of relay channels (the API and the admin page call it)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def list(self) -> list[dict[str, Any]]:
        with self.sessions() as session:
            return [channel_dict(c) for c in session.scalars(select(Channel).order_by(Channel.name))]

    def get(self, channel_id: int) -> dict[str, Any] | None:
        with self.sessions() as session:
            row = session.get(Channel, channel_id)
            return channel_dict(row) if row is not None else None

    def create(self, name: Any, url: Any, *, by: str | None = None, enabled: Any = True) -> int:
        row = Channel(name=_name(name), url=_url(url), enabled=_enabled(enabled), created_by=by)
        try:
            with self.sessions.begin() as session:
                session.add(row)
                session.flush()
                return row.id
        except IntegrityError as exc:
            raise ChannelError(f"Đã có kênh tên «{row.name}».", "name", 409) from exc

    def update(self, channel_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        try:
            with self.sessions.begin() as session:
                row = session.get(Channel, channel_id)
                if row is None:
                    raise ChannelError(f"Không có kênh #{channel_id}.", status=404)
                if "name" in changes:
                    row.name = _name(changes["name"])
                if "url" in changes:
                    row.url = _url(changes["url"])
                if "enabled" in changes:
                    row.enabled = _enabled(changes["enabled"])
                session.flush()
                return channel_dict(row)
        except IntegrityError as exc:
            raise ChannelError("Đã có kênh mang tên này.", "name", 409) from exc

    def delete(self, channel_id: int) -> None:
        """Delete a channel; refused while a relay of it is waiting or on air."""
        with self.sessions.begin() as session:
            row = session.get(Channel, channel_id)
            if row is None:
                raise ChannelError(f"Không có kênh #{channel_id}.", status=404)
            open_states = [s.value for s in BroadcastState if not s.finished]
            busy = session.scalar(
                select(Broadcast.id).where(
                    Broadcast.channel_id == channel_id, Broadcast.state.in_(open_states)
                )
            )
            if busy is not None:
                raise ChannelError(
                    f"Kênh «{row.name}» đang được tiếp sóng hoặc đã hẹn (lượt phát #{busy}): hãy hủy lượt đó trước.",
                    status=409,
                )
            schedule = session.scalar(select(Schedule.name).where(Schedule.channel_id == channel_id))
            if schedule is not None:
                raise ChannelError(
                    f"Kênh «{row.name}» đang dùng trong lịch phát «{schedule}»: hãy xóa hoặc sửa lịch đó "
                    "trước (hoặc tắt kênh thay vì xóa).",
                    status=409,
                )
            session.delete(row)

    def by_name(self, name: str) -> int | None:
        """The id of the channel called ``name`` (schedules/*.yaml name channels), or None."""
        with self.sessions() as session:
            return session.scalar(select(Channel.id).where(Channel.name == nfc(name).strip()))

    def usable(self, channel_id: Any) -> tuple[int, str, str]:
        """(id, name, url) of an enabled channel; ChannelError (field ``channel``) otherwise."""
        if isinstance(channel_id, bool) or not isinstance(channel_id, int):
            raise ChannelError("Hãy chọn kênh tiếp sóng (mã kênh là một số).", "channel")
        with self.sessions() as session:
            row = session.get(Channel, channel_id)
            if row is None:
                raise ChannelError(f"Không có kênh tiếp sóng #{channel_id}.", "channel")
            if not row.enabled:
                raise ChannelError(f"Kênh «{row.name}» đang tắt.", "channel")
            return row.id, row.name, row.url


def _enabled(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ChannelError("'enabled' phải là true hoặc false.", "enabled")
    return value


__all__ = ["ChannelError", "Channels", "channel_dict"]

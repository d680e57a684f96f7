"""The speaker and zone registry: CRUD with validation, and per-speaker MQTT credentials.

Two ways in:

* module functions taking a SQLAlchemy ``Session`` (``create_zone(session, ...)``,
  ``create_speaker(session, ...)``): they validate, add and flush, and leave the commit to the
  caller;
* :class:`Registry`, which opens a session per call, commits, returns JSON-ready dicts and then
  tells its ``on_change`` hooks (the managed broker updates its password file and ACL from them).

A speaker's MQTT password is generated at creation (or reset), returned once, and only its
mosquitto-format hash is stored.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.broker import hash_password, verify_password
from broadcaster.domain import ALL_TARGETS, nfc
from broadcaster.models import Schedule, Speaker, Zone
from speakers.protocol import valid_id

_LOGGER = logging.getLogger(__name__)

_HHMM_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
MAX_NAME = 200
MAX_LOCATION = 300

# Ids a zone or cluster may not take (compared case-insensitively). A cluster logs in to the broker
# with its id as user name and as MQTT client id: "controller" would be the controller's broker
# account (read and write on every topic), and an id starting with "loa-controller" could take the
# controller's client id (controller_client_id) and kick it off the broker. "all" means every cluster.
# (broadcaster.services.CONTROLLER_USER is "controller"; importing it here would be circular through
# settings -> scheduling; tests/test_registry.py checks the two stay equal.)
RESERVED_IDS = frozenset({ALL_TARGETS, "controller"})
RESERVED_PREFIXES = ("loa-controller",)

# 18 random bytes -> 24 URL-safe characters: typed once into a node's config file.
_PASSWORD_BYTES = 18


class RegistryError(ValueError):
    """A registry request that cannot be honoured; ``message`` is meant for the officer.

    ``code`` is ``invalid`` (bad field), ``not_found`` or ``conflict``; ``field`` names the field
    at fault when there is one.
    """

    def __init__(self, message: str, *, code: str = "invalid", field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.field = field


@dataclass(frozen=True)
class RegistryChange:
    """What changed, for ``Registry.on_change`` hooks.

    ``kind``: ``speaker_created``, ``speaker_updated``, ``speaker_deleted``, ``speaker_password``,
    ``zone_created``, ``zone_updated``, ``zone_deleted``. For speakers, ``zone_id`` is the zone
    after the change, ``password_hash`` the stored hash and ``password`` the clear password when
    it was just generated (creation, reset), else None.
    """

    kind: str
    speaker_id: str | None = None
    zone_id: str | None = None
    password_hash: str | None = None
    password: str | None = None


# ------------------------------------------------------------------ credentials


def generate_password() -> str:
    return secrets.token_urlsafe(_PASSWORD_BYTES)


def mosquitto_hash(password: str, *, salt: bytes | None = None) -> str:
    """Hash ``password`` as ``mosquitto_passwd`` does (``$7$``: PBKDF2-SHA512), via the broker module."""
    return hash_password(password, salt=salt)


def verify_mosquitto_hash(password: str, hashed: str) -> bool:
    """True when ``password`` matches a ``$7$`` hash."""
    return verify_password(password, hashed)


# ------------------------------------------------------------------ validation


def _check_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not valid_id(value):
        raise RegistryError(
            f"Mã {what} không hợp lệ: {value!r}. Chỉ dùng chữ không dấu, số, '_', '.', '-' (tối đa 64 ký tự). "
            f"(Invalid id: use letters, digits, '_', '.', '-', at most 64 characters.)",
            field="id",
        )
    lowered = value.lower()
    if lowered in RESERVED_IDS or lowered.startswith(RESERVED_PREFIXES):
        reserved = ", ".join(f"'{r}'" for r in sorted(RESERVED_IDS))
        prefixes = ", ".join(f"'{p}...'" for p in RESERVED_PREFIXES)
        raise RegistryError(
            f"Mã {what} '{value}' được dành riêng cho hệ thống, hãy chọn mã khác (không dùng {reserved}, "
            f"{prefixes}). (Reserved id: it would clash with the controller's broker account or "
            f"client id, or with 'all'.)",
            field="id",
        )
    return value


def _check_name(value: Any, field: str = "name", limit: int = MAX_NAME, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise RegistryError(f"Trường '{field}' phải là chuỗi không rỗng.", field=field)
    value = nfc(value.strip())
    if len(value) > limit:
        raise RegistryError(f"Trường '{field}' dài quá {limit} ký tự.", field=field)
    return value or None


def check_hhmm(value: Any, field: str) -> str | None:
    """Quiet hours and schedule times are ``"HH:MM"`` (24 h). None or "" clears."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _HHMM_RE.match(value):
        raise RegistryError(
            f"Trường '{field}' phải có dạng giờ HH:MM, ví dụ 21:00 (nhận {value!r}).", field=field
        )
    return value


def _check_fields(data: dict[str, Any], allowed: Iterable[str]) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise RegistryError(f"Trường không được hỗ trợ: {', '.join(unknown)}.", field=unknown[0])


# ------------------------------------------------------------------ dict views


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def zone_dict(zone: Zone, speaker_count: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": zone.id,
        "name": zone.name,
        "quiet_start": zone.quiet_start,
        "quiet_end": zone.quiet_end,
        "created": _iso(zone.created),
    }
    if speaker_count is not None:
        out["speaker_count"] = speaker_count
    return out


def speaker_dict(speaker: Speaker) -> dict[str, Any]:
    return {
        "id": speaker.id,
        "name": speaker.name,
        "zone": speaker.zone_id,
        "location": speaker.location,
        "enabled": speaker.enabled,
        "has_credentials": bool(speaker.mqtt_password_hash),
        "created": _iso(speaker.created),
    }


# ------------------------------------------------------------------ zones (session level)


def get_zone(session: Session, zone_id: str) -> Zone:
    zone = session.get(Zone, zone_id) if isinstance(zone_id, str) else None
    if zone is None:
        raise RegistryError(f"Không có khu vực '{zone_id}'.", code="not_found", field="zone")
    return zone


def _check_id_free(session: Session, new_id: str) -> None:
    """Zone ids and cluster ids share one namespace: a broadcast target names one thing only."""
    if session.get(Zone, new_id) is not None:
        raise RegistryError(
            f"Mã '{new_id}' đã có: đó là một khu vực. Hãy chọn mã khác.", code="conflict", field="id"
        )
    if session.get(Speaker, new_id) is not None:
        raise RegistryError(
            f"Mã '{new_id}' đã có: đó là một cụm loa. Hãy chọn mã khác.", code="conflict", field="id"
        )


def create_zone(
    session: Session, id: str, name: str, quiet_start: str | None = None, quiet_end: str | None = None
) -> Zone:
    zone_id = _check_id(id, "khu vực")
    _check_id_free(session, zone_id)
    zone = Zone(
        id=zone_id,
        name=_check_name(name),
        quiet_start=check_hhmm(quiet_start, "quiet_start"),
        quiet_end=check_hhmm(quiet_end, "quiet_end"),
    )
    _check_quiet_pair(zone)
    session.add(zone)
    session.flush()
    return zone


def update_zone(session: Session, id: str, **fields: Any) -> Zone:
    _check_fields(fields, ("name", "quiet_start", "quiet_end"))
    zone = get_zone(session, id)
    if "name" in fields:
        zone.name = _check_name(fields["name"])  # type: ignore[assignment]
    if "quiet_start" in fields:
        zone.quiet_start = check_hhmm(fields["quiet_start"], "quiet_start")
    if "quiet_end" in fields:
        zone.quiet_end = check_hhmm(fields["quiet_end"], "quiet_end")
    _check_quiet_pair(zone)
    session.flush()
    return zone


def _check_quiet_pair(zone: Zone) -> None:
    if (zone.quiet_start is None) != (zone.quiet_end is None):
        raise RegistryError(
            "Giờ yên lặng cần cả giờ bắt đầu và giờ kết thúc (ví dụ 21:00 và 05:00).", field="quiet_start"
        )
    if zone.quiet_start is not None and zone.quiet_start == zone.quiet_end:
        raise RegistryError("Giờ bắt đầu và kết thúc yên lặng không được trùng nhau.", field="quiet_end")


def delete_zone(session: Session, id: str) -> None:
    """Delete an empty zone; a zone that still has clusters is refused (move them first)."""
    zone = get_zone(session, id)
    count = session.scalar(select(func.count()).select_from(Speaker).where(Speaker.zone_id == zone.id)) or 0
    if count:
        raise RegistryError(
            f"Khu vực '{zone.id}' còn {count} cụm loa; hãy chuyển hoặc xoá các cụm loa trước.",
            code="conflict",
            field="id",
        )
    _check_not_scheduled(session, zone.id, "Khu vực")
    session.delete(zone)
    session.flush()


def _check_not_scheduled(session: Session, target: str, what: str) -> None:
    """A zone or speaker named in a schedule's targets cannot go: the bulletin would fail to air."""
    users = [
        name
        for name, targets in session.execute(select(Schedule.name, Schedule.targets))
        if target in targets
    ]
    if users:
        raise RegistryError(
            f"{what} '{target}' đang có trong lịch phát: {', '.join(users[:5])}; hãy sửa các lịch này trước.",
            code="conflict",
            field="id",
        )


def list_zones(session: Session) -> list[Zone]:
    return list(session.scalars(select(Zone).order_by(Zone.id)))


# ------------------------------------------------------------------ speakers (session level)


def get_speaker(session: Session, speaker_id: str) -> Speaker:
    speaker = session.get(Speaker, speaker_id) if isinstance(speaker_id, str) else None
    if speaker is None:
        raise RegistryError(f"Không có cụm loa '{speaker_id}'.", code="not_found", field="speaker")
    return speaker


def _check_zone_ref(session: Session, zone: Any) -> str | None:
    if zone is None or zone == "":
        return None
    if not isinstance(zone, str) or session.get(Zone, zone) is None:
        raise RegistryError(f"Không có khu vực '{zone}'. Hãy tạo khu vực trước.", field="zone")
    return zone


def create_speaker(
    session: Session, id: str, name: str, zone: str | None = None, location: str | None = None
) -> tuple[Speaker, str]:
    """Add a cluster; returns it with its MQTT password (shown once, only the hash is stored)."""
    speaker_id = _check_id(id, "cụm loa")
    _check_id_free(session, speaker_id)
    password = generate_password()
    speaker = Speaker(
        id=speaker_id,
        name=_check_name(name),
        zone_id=_check_zone_ref(session, zone),
        location=_check_name(location, "location", MAX_LOCATION, required=False),
        mqtt_password_hash=mosquitto_hash(password),
        enabled=True,
    )
    session.add(speaker)
    session.flush()
    return speaker, password


def update_speaker(session: Session, id: str, **fields: Any) -> Speaker:
    _check_fields(fields, ("name", "zone", "location", "enabled"))
    speaker = get_speaker(session, id)
    if "name" in fields:
        speaker.name = _check_name(fields["name"])  # type: ignore[assignment]
    if "zone" in fields:
        speaker.zone_id = _check_zone_ref(session, fields["zone"])
    if "location" in fields:
        speaker.location = _check_name(fields["location"], "location", MAX_LOCATION, required=False)
    if "enabled" in fields:
        if not isinstance(fields["enabled"], bool):
            raise RegistryError("Trường 'enabled' phải là true hoặc false.", field="enabled")
        speaker.enabled = fields["enabled"]
    session.flush()
    return speaker


def delete_speaker(session: Session, id: str) -> None:
    speaker = get_speaker(session, id)
    _check_not_scheduled(session, speaker.id, "Cụm loa")
    session.delete(speaker)
    session.flush()


def reset_speaker_password(session: Session, id: str) -> tuple[Speaker, str]:
    speaker = get_speaker(session, id)
    password = generate_password()
    speaker.mqtt_password_hash = mosquitto_hash(password)
    session.flush()
    return speaker, password


def list_speakers(session: Session, zone: str | None = None) -> list[Speaker]:
    query = select(Speaker).order_by(Speaker.id)
    if zone is not None:
        query = query.where(Speaker.zone_id == zone)
    return list(session.scalars(query))


# ------------------------------------------------------------------ Registry facade


ChangeHook = Callable[[RegistryChange], None]


class Registry:
    """Session-per-call facade used by the API and the web UI; fires ``on_change`` after commit."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self.on_change: list[ChangeHook] = []

    def _notify(self, change: RegistryChange) -> None:
        for hook in list(self.on_change):
            try:
                hook(change)
            except Exception:  # a broken hook must not undo a committed change
                _LOGGER.exception("registry change hook %r failed for %s", hook, change.kind)

    # zones
    def list_zones(self) -> list[dict[str, Any]]:
        with self.sessions() as session:
            counts = dict(
                session.execute(select(Speaker.zone_id, func.count()).group_by(Speaker.zone_id)).all()
            )
            return [zone_dict(z, counts.get(z.id, 0)) for z in list_zones(session)]

    def get_zone(self, zone_id: str) -> dict[str, Any]:
        with self.sessions() as session:
            zone = get_zone(session, zone_id)
            count = session.scalar(
                select(func.count()).select_from(Speaker).where(Speaker.zone_id == zone.id)
            )
            return zone_dict(zone, count or 0)

    def create_zone(
        self, id: str, name: str, quiet_start: str | None = None, quiet_end: str | None = None
    ) -> dict[str, Any]:
        with self.sessions.begin() as session:
            out = zone_dict(create_zone(session, id, name, quiet_start, quiet_end), 0)
        _LOGGER.info("zone %s created", out["id"])
        self._notify(RegistryChange("zone_created", zone_id=out["id"]))
        return out

    def update_zone(self, id: str, **fields: Any) -> dict[str, Any]:
        with self.sessions.begin() as session:
            out = zone_dict(update_zone(session, id, **fields))
        self._notify(RegistryChange("zone_updated", zone_id=out["id"]))
        return self.get_zone(out["id"])

    def delete_zone(self, id: str) -> None:
        with self.sessions.begin() as session:
            delete_zone(session, id)
        _LOGGER.info("zone %s deleted", id)
        self._notify(RegistryChange("zone_deleted", zone_id=id))

    # speakers
    def list_speakers(self, zone: str | None = None) -> list[dict[str, Any]]:
        with self.sessions() as session:
            return [speaker_dict(s) for s in list_speakers(session, zone)]

    def get_speaker(self, speaker_id: str) -> dict[str, Any]:
        with self.sessions() as session:
            return speaker_dict(get_speaker(session, speaker_id))

    def password_hashes(self) -> dict[str, str]:
        """``{speaker id: $7$ hash}`` of every enabled speaker, for writing the broker password file."""
        with self.sessions() as session:
            rows = session.execute(
                select(Speaker.id, Speaker.mqtt_password_hash).where(
                    Speaker.enabled.is_(True), Speaker.mqtt_password_hash.is_not(None)
                )
            ).all()
            return {r.id: r.mqtt_password_hash for r in rows}

    def zones_of_speakers(self) -> dict[str, str | None]:
        """``{speaker id: zone id}``, for the broker ACL."""
        with self.sessions() as session:
            return dict(session.execute(select(Speaker.id, Speaker.zone_id)).all())

    def create_speaker(
        self, id: str, name: str, zone: str | None = None, location: str | None = None
    ) -> tuple[dict[str, Any], str]:
        with self.sessions.begin() as session:
            speaker, password = create_speaker(session, id, name, zone, location)
            out = speaker_dict(speaker)
            hashed = speaker.mqtt_password_hash
        _LOGGER.info("speaker %s created in zone %s", out["id"], out["zone"])
        self._notify(
            RegistryChange("speaker_created", out["id"], out["zone"], password_hash=hashed, password=password)
        )
        return out, password

    def update_speaker(self, id: str, **fields: Any) -> dict[str, Any]:
        with self.sessions.begin() as session:
            speaker = update_speaker(session, id, **fields)
            out = speaker_dict(speaker)
            hashed = speaker.mqtt_password_hash
        self._notify(RegistryChange("speaker_updated", out["id"], out["zone"], password_hash=hashed))
        return out

    def delete_speaker(self, id: str) -> None:
        with self.sessions.begin() as session:
            zone_id = get_speaker(session, id).zone_id
            delete_speaker(session, id)
        _LOGGER.info("speaker %s deleted", id)
        self._notify(RegistryChange("speaker_deleted", id, zone_id))

    def reset_speaker_password(self, id: str) -> str:
        with self.sessions.begin() as session:
            speaker, password = reset_speaker_password(session, id)
            zone_id, hashed = speaker.zone_id, speaker.mqtt_password_hash
        _LOGGER.info("speaker %s: MQTT password reset", id)
        self._notify(RegistryChange("speaker_password", id, zone_id, password_hash=hashed, password=password))
        return password


__all__ = [
    "Registry",
    "RegistryChange",
    "RegistryError",
    "check_hhmm",
    "create_speaker",
    "create_zone",
    "delete_speaker",
    "delete_zone",
    "generate_password",
    "get_speaker",
    "get_zone",
    "list_speakers",
    "list_zones",
    "mosquitto_hash",
    "reset_speaker_password",
    "speaker_dict",
    "update_speaker",
    "update_zone",
    "verify_mosquitto_hash",
    "zone_dict",
]

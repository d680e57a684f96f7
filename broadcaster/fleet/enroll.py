"""Enrollment: everything a cluster's computer needs, in one ``agent.yaml``.

:func:`enroll` creates the cluster when it is new (or moves it to the zone given), gives it a new
password (only its hash is stored) and returns an :class:`AgentBundle`: the speaker id, its zone,
the broker's ``mqtts://`` URL (``broker.public_host`` and ``broker.tls_port``), the password and
the CA to pin (``broadcaster.broker.node_endpoint``). ``bundle.to_yaml()`` is the file of
``docs/agent.md`` with exactly its enrollment keys; ``speaker-agent run --config agent.yaml``
needs nothing else.

Three ways in, one function: ``broadcaster speaker enroll`` (CLI), ``POST
/api/speakers/{id}/enroll`` (API) and the admin page's "Tải cấu hình" (web), which hands out a
one-time link (:class:`EnrollLinks`) so a technician's phone can fetch the file from a QR code:

* the link holds a random token; only its sha256 is stored, with the cluster, an expiry
  (``LINK_VALID_S``) and when it was used;
* opening the link shows a page; downloading (a POST, so that a chat app's link preview cannot
  spend it) claims the link in one conditional UPDATE (once, before its expiry, for a cluster
  that still exists) and only then resets the password and writes the file. No password is kept
  anywhere between the admin's click and the download.

Registry changes made here reach the managed broker of a running ``serve`` whether this runs in
that process (registry hooks) or in another one (the registry revision, ``broker/sync.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, update
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.fleet.registry import Registry, RegistryError
from broadcaster.models import EnrollLink

if TYPE_CHECKING:
    from broadcaster.settings import Settings

_LOGGER = logging.getLogger(__name__)

# A one-time link is good for this long: enough to walk to the cluster with the phone, short
# enough that a link seen over someone's shoulder is soon worthless.
LINK_VALID_S = 600
# 32 random bytes -> 43 URL-safe characters: unguessable, and still a small QR code.
_TOKEN_BYTES = 32
# Links used or expired are deleted after this long (kept a day for "why did my link fail?").
_LINK_KEEP = timedelta(days=1)


class EnrollError(ValueError):
    """Enrollment is not possible as asked; ``message`` is meant for the officer or technician."""

    def __init__(self, message: str, *, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class AgentBundle:
    """A cluster's complete agent configuration (the enrollment keys of docs/agent.md)."""

    id: str
    zone: str | None
    mqtt_url: str
    password: str
    ca_pem: str | None  # None with an operator's certificate: the node trusts its system's CAs

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "zone": self.zone, "mqtt_url": self.mqtt_url}
        out["password"] = self.password
        if self.ca_pem is not None:
            out["ca_pem"] = self.ca_pem
        return out

    def to_yaml(self) -> str:
        """agent.yaml: scalars double-quoted (JSON strings are YAML), the CA as a literal block."""
        lines = [
            f"# Loa xa agent configuration of cluster {self.id}, from the controller's enrollment.",
            "# It holds the cluster's password: keep it private (mode 0600). See docs/agent.md.",
        ]
        for key, value in self.to_dict().items():
            if key == "ca_pem":
                lines.append("ca_pem: |")
                lines += [f"  {line}" for line in value.strip().splitlines()]
            elif value is None:
                lines.append(f"{key}: null")
            else:
                lines.append(f"{key}: {json.dumps(value, ensure_ascii=False)}")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Enrollment:
    bundle: AgentBundle
    created: bool  # the cluster was new
    enabled: bool  # a disabled cluster is refused by the broker until it is enabled again


def enroll(
    registry: Registry,
    settings: Settings,
    speaker_id: str,
    *,
    zone: str | None = None,
    name: str | None = None,
    create: bool = True,
) -> Enrollment:
    """Create (``create``) or update the cluster, give it a new password and return its bundle.

    ``zone``/``name`` given for an existing cluster move or rename it. Raises
    :class:`RegistryError` (bad id, unknown zone, unknown cluster with ``create=False``) or
    :class:`EnrollError` (the broker's node listener is not known yet)."""
    from broadcaster.broker import BrokerError, node_endpoint

    try:
        endpoint = node_endpoint(settings)  # first: fail before changing anything
    except BrokerError as exc:
        raise EnrollError(str(exc), code="unavailable") from exc
    try:
        existing = registry.get_speaker(speaker_id)
    except RegistryError as exc:
        if exc.code != "not_found" or not create:
            raise
        existing = None
    if existing is None:
        speaker, password = registry.create_speaker(speaker_id, name or speaker_id, zone)
        created = True
    else:
        fields: dict[str, Any] = {}
        if zone is not None and zone != existing["zone"]:
            fields["zone"] = zone
        if name is not None and name != existing["name"]:
            fields["name"] = name
        if fields:
            registry.update_speaker(speaker_id, **fields)
        password = registry.reset_speaker_password(speaker_id)
        speaker = registry.get_speaker(speaker_id)
        created = False
    _LOGGER.info("speaker %s enrolled (%s)", speaker_id, "created" if created else "new password")
    bundle = AgentBundle(
        id=speaker["id"],
        zone=speaker["zone"],
        mqtt_url=endpoint.url,
        password=password,
        ca_pem=endpoint.ca_pem,
    )
    return Enrollment(bundle, created, bool(speaker["enabled"]))


# ------------------------------------------------------------------ one-time links


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class LinkInfo:
    speaker_id: str
    expires: datetime


class EnrollLinks:
    """One-time download links of agent.yaml (see the module docstring)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        registry: Registry,
        settings: Settings,
        valid_s: float = LINK_VALID_S,
    ) -> None:
        self.sessions = sessions
        self.registry = registry
        self.settings = settings
        self.valid_s = valid_s

    def create(self, speaker_id: str, *, by: str | None = None) -> tuple[str, datetime]:
        """A new link's token (shown once) and its expiry. The cluster must exist."""
        self.registry.get_speaker(speaker_id)  # RegistryError not_found
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        now = datetime.now(UTC)
        expires = now + timedelta(seconds=self.valid_s)
        with self.sessions.begin() as session:
            session.execute(delete(EnrollLink).where(EnrollLink.expires < now - _LINK_KEEP))
            session.add(
                EnrollLink(
                    token_sha256=_digest(token),
                    speaker_id=speaker_id,
                    created=now,
                    expires=expires,
                    created_by=by,
                )
            )
        _LOGGER.info("speaker %s: one-time enrollment link created by %s", speaker_id, by or "?")
        return token, expires

    def peek(self, token: str) -> LinkInfo:
        """The link's cluster and expiry, when it can still be used; :class:`EnrollError` else."""
        with self.sessions() as session:
            link = session.get(EnrollLink, _digest(token)) if token else None
            if link is None:
                raise EnrollError("Liên kết tải cấu hình không đúng.", code="not_found")
            if link.used is not None:
                raise EnrollError("Liên kết này đã được dùng. Hãy tạo liên kết mới.", code="gone")
            if link.expires <= datetime.now(UTC):
                raise EnrollError("Liên kết này đã hết hạn. Hãy tạo liên kết mới.", code="gone")
            return LinkInfo(link.speaker_id, link.expires)

    def redeem(self, token: str) -> AgentBundle:
        """Spend the link (once: one conditional UPDATE decides between concurrent downloads),
        then reset the cluster's password and return its bundle."""
        info = self.peek(token)
        now = datetime.now(UTC)
        with self.sessions.begin() as session:
            claimed = session.execute(
                update(EnrollLink)
                .where(
                    EnrollLink.token_sha256 == _digest(token),
                    EnrollLink.used.is_(None),
                    EnrollLink.expires > now,
                )
                .values(used=now)
            ).rowcount
        if claimed != 1:
            raise EnrollError("Liên kết này đã được dùng. Hãy tạo liên kết mới.", code="gone")
        try:
            enrollment = enroll(self.registry, self.settings, info.speaker_id, create=False)
        except RegistryError as exc:
            raise EnrollError("Cụm loa của liên kết này không còn nữa.", code="gone") from exc
        _LOGGER.info("speaker %s: configuration downloaded through a one-time link", info.speaker_id)
        return enrollment.bundle


__all__ = [
    "LINK_VALID_S",
    "AgentBundle",
    "EnrollError",
    "EnrollLinks",
    "Enrollment",
    "LinkInfo",
    "enroll",
]

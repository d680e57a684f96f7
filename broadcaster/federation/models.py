"""Tables of the link between levels (commune, district, province) and of CAP alerts.

Imported by ``broadcaster.models`` (at its end) so ``Base.metadata`` holds them; the core tables
stay as they are. Two sides, one codebase:

- upper side (a district or a province): ``fed_units`` (downstream units and their keys),
  ``fed_bulletins`` (what was sent down), ``fed_outbox`` (per unit, in sequence), and what the
  units reported: ``fed_unit_bulletins``, ``fed_unit_deliveries``, ``fed_clusters``,
  ``fed_minutes``; ``fed_nonces`` (the replay window);
- lower side (a commune, or a district towards its province): ``fed_link`` (one row: the
  upstream's address and token, the bulletin cursor, the report sequence), ``fed_reports`` (the
  bounded, persisted queue of reports going up) and ``fed_inbox`` (every bulletin or CAP alert
  received, and what became of it: it maps local broadcast ids to upstream references).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Date, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from broadcaster.models import Base, UtcDateTime, utcnow

# ------------------------------------------------------------------ upper side


class FedUnit(Base):
    """A downstream unit (a commune under a district, a district under a province)."""

    __tablename__ = "fed_units"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    # The HMAC key derived from the token (sha256, docs/federation.md); the token is never stored.
    key_hex: Mapped[str] = mapped_column(String(64))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_seen: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    link_id: Mapped[str | None] = mapped_column(String(64))
    last_report_seq: Mapped[int] = mapped_column(Integer, default=0)  # highest report applied
    acked_seq: Mapped[int] = mapped_column(Integer, default=0)  # highest outbox seq the unit stored
    next_seq: Mapped[int] = mapped_column(Integer, default=1)  # next outbox seq


class FedBulletin(Base):
    """A bulletin sent down: composed here (``broadcast_id``) or forwarded from our upstream
    (``inbox_id``, and ``broadcast_id`` when it also aired here)."""

    __tablename__ = "fed_bulletins"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    broadcast_id: Mapped[int | None] = mapped_column(Integer, index=True)
    inbox_id: Mapped[int | None] = mapped_column(Integer, index=True)
    tier: Mapped[str] = mapped_column(String(20))
    title: Mapped[str] = mapped_column(String(300), default="")
    text: Mapped[str] = mapped_column(Text, default="")
    format: Mapped[str] = mapped_column(String(10), default="text")  # text | audio
    audio_key: Mapped[str | None] = mapped_column(String(64))
    audio_sha256: Mapped[str | None] = mapped_column(String(64))
    audio_size: Mapped[int | None] = mapped_column(Integer)
    duration_s: Mapped[float | None] = mapped_column(Float)
    repeat: Mapped[int] = mapped_column(Integer, default=1)
    targets: Mapped[list[str]] = mapped_column(JSON, default=list)  # unit targets as given
    units: Mapped[list[str]] = mapped_column(JSON, default=list)  # direct units it went to
    at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    valid_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    state: Mapped[str] = mapped_column(String(20), default="waiting")  # waiting|sent|cancelled|dropped
    sender: Mapped[str] = mapped_column(String(200), default="")
    created: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class FedOutbox(Base):
    """What one unit is to receive, in sequence (bulletins and cancellations)."""

    __tablename__ = "fed_outbox"
    __table_args__ = (UniqueConstraint("unit", "seq", name="uq_fed_outbox_unit_seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    unit: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))  # bulletin | cancel
    bulletin_id: Mapped[int] = mapped_column(Integer, index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class FedUnitBulletin(Base):
    """What became of a bulletin at one unit (path ``huyen-a/xa-b``), as reported."""

    __tablename__ = "fed_unit_bulletins"
    __table_args__ = (UniqueConstraint("bulletin_id", "unit", name="uq_fed_unit_bulletin"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bulletin_id: Mapped[int] = mapped_column(Integer, index=True)
    unit: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(30))
    reason: Mapped[str | None] = mapped_column(Text)
    updated: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class FedUnitDelivery(Base):
    """Proof of play of a bulletin on one cluster of one unit, as reported."""

    __tablename__ = "fed_unit_deliveries"
    __table_args__ = (UniqueConstraint("bulletin_id", "unit", "speaker", name="uq_fed_unit_delivery"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bulletin_id: Mapped[int] = mapped_column(Integer, index=True)
    unit: Mapped[str] = mapped_column(String(200))
    speaker: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    seconds_played: Mapped[float | None] = mapped_column(Float)
    rms_dbfs: Mapped[float | None] = mapped_column(Float)
    reason: Mapped[str | None] = mapped_column(Text)
    updated: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class FedCluster(Base):
    """A cluster of a unit below, as last reported."""

    __tablename__ = "fed_clusters"
    unit: Mapped[str] = mapped_column(String(200), primary_key=True)
    speaker: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    zone: Mapped[str | None] = mapped_column(String(64))
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    faults: Mapped[list[str]] = mapped_column(JSON, default=list)
    last_health: Mapped[datetime | None] = mapped_column(UtcDateTime)
    reported_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class FedMinutes(Base):
    """Minutes aired per day and cluster of a unit below, as last reported."""

    __tablename__ = "fed_minutes"
    unit: Mapped[str] = mapped_column(String(200), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    speaker: Mapped[str] = mapped_column(String(64), primary_key=True)
    broadcasts: Mapped[int] = mapped_column(Integer, default=0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)


class FedNonce(Base):
    """Nonces seen within the replay window, per unit (a replayed request is refused)."""

    __tablename__ = "fed_nonces"
    __table_args__ = (Index("ix_fed_nonces_ts", "ts"),)
    unit: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    ts: Mapped[datetime] = mapped_column(UtcDateTime)


# ------------------------------------------------------------------ lower side


class FedLink(Base):
    """Our upstream (one row, id 1). The token is kept: signing needs it (file mode of the database)."""

    __tablename__ = "fed_link"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(500))
    token: Mapped[str] = mapped_column(String(300))
    unit: Mapped[str] = mapped_column(String(64))
    link_id: Mapped[str] = mapped_column(String(64))
    cursor: Mapped[int] = mapped_column(Integer, default=0)  # highest bulletin seq stored
    next_report_seq: Mapped[int] = mapped_column(Integer, default=1)
    dropped_reports: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(20), default="new")  # new|ok|error|revoked
    last_error: Mapped[str | None] = mapped_column(Text)
    last_ok: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class FedReport(Base):
    """A report waiting to go up; ``seq`` comes from ``FedLink.next_report_seq`` (never reused)."""

    __tablename__ = "fed_reports"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(20))
    coalesce_key: Mapped[str | None] = mapped_column(String(250), index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class FedInbox(Base):
    """A bulletin from the upstream, or a CAP alert, and what became of it here."""

    __tablename__ = "fed_inbox"
    __table_args__ = (UniqueConstraint("origin", "ref", name="uq_fed_inbox_origin_ref"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    origin: Mapped[str] = mapped_column(String(100))  # "upstream" | "cap:<source>"
    ref: Mapped[str] = mapped_column(String(300))  # the upstream's bulletin id, or CAP sender,id,sent
    tier: Mapped[str] = mapped_column(String(20))
    title: Mapped[str] = mapped_column(String(300), default="")
    text: Mapped[str] = mapped_column(Text, default="")
    format: Mapped[str] = mapped_column(String(10), default="text")
    audio_key: Mapped[str | None] = mapped_column(String(64))
    audio_sha256: Mapped[str | None] = mapped_column(String(64))
    duration_s: Mapped[float | None] = mapped_column(Float)
    repeat: Mapped[int] = mapped_column(Integer, default=1)
    targets: Mapped[list[str]] = mapped_column(JSON, default=lambda: ["all"])
    route: Mapped[list[str]] = mapped_column(JSON, default=lambda: ["*"])
    at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    valid_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    sender: Mapped[str] = mapped_column(String(200), default="")
    state: Mapped[str] = mapped_column(String(20), default="received")
    reason: Mapped[str | None] = mapped_column(Text)
    broadcast_id: Mapped[int | None] = mapped_column(Integer, index=True)
    forwarded_id: Mapped[int | None] = mapped_column(Integer)
    decided_by: Mapped[str | None] = mapped_column(String(100))
    hold_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    clash: Mapped[list[int]] = mapped_column(JSON, default=list)
    reported: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    final: Mapped[bool] = mapped_column(Boolean, default=False)
    seen: Mapped[bool] = mapped_column(Boolean, default=False)  # the officer saw the notice
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    received: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


__all__ = [
    "FedBulletin",
    "FedCluster",
    "FedInbox",
    "FedLink",
    "FedMinutes",
    "FedNonce",
    "FedOutbox",
    "FedReport",
    "FedUnit",
    "FedUnitBulletin",
    "FedUnitDelivery",
]

"""SQLAlchemy models of the controller. SQLite by default, any SQLAlchemy URL in production.

Times are stored as timezone-aware UTC (``UtcDateTime``); text is NFC.
State columns hold the string values of the enums below so the log reads plainly.
"""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from broadcaster import domain


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite drops the tzinfo otherwise)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UtcDateTime column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class Role(enum.StrEnum):
    ADMIN = "admin"  # quản trị
    EDITOR = "editor"  # biên tập
    APPROVER = "approver"  # phê duyệt


class Approval(enum.StrEnum):
    DRAFT = "draft"
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class BroadcastState(enum.StrEnum):
    SCHEDULED = "scheduled"  # waiting for its time
    PENDING_APPROVAL = "pending_approval"
    RENDERING = "rendering"
    SENDING = "sending"  # audio and play commands on their way
    PLAYING = "playing"
    DONE = "done"  # every target played to the end
    PARTIAL = "partial"  # finished, but some targets did not play to the end
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"
    MISSED = "missed"  # a scheduled airing past its grace
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in _FINISHED


_FINISHED = {
    BroadcastState.DONE,
    BroadcastState.PARTIAL,
    BroadcastState.INTERRUPTED,
    BroadcastState.CANCELLED,
    BroadcastState.MISSED,
    BroadcastState.FAILED,
}


class DeliveryState(enum.StrEnum):
    PENDING = "pending"  # not yet sent (target offline, or queued behind another item)
    SENT = "sent"
    RECEIVED = "received"
    SCHEDULED = "scheduled"
    PLAYING = "playing"
    DONE = "done"
    FAILED = "failed"
    PREEMPTED = "preempted"  # interrupted by a higher tier
    STOPPED = "stopped"
    EXPIRED = "expired"  # arrived after valid_until
    MISSED = "missed"  # never delivered in time
    CANCELLED = "cancelled"


class Zone(Base):
    """A thôn (hamlet) or any group of clusters commanded together."""

    __tablename__ = "zones"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # Quiet hours "HH:MM"; normal broadcasts are held back between them. Emergencies are exempt.
    quiet_start: Mapped[str | None] = mapped_column(String(5))
    quiet_end: Mapped[str | None] = mapped_column(String(5))
    created: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    speakers: Mapped[list[Speaker]] = relationship(back_populates="zone")


class Speaker(Base):
    """A loudspeaker cluster: one node agent with its amplifier."""

    __tablename__ = "speakers"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    zone_id: Mapped[str | None] = mapped_column(ForeignKey("zones.id", ondelete="SET NULL"))
    location: Mapped[str | None] = mapped_column(String(300))
    # MQTT credentials: the node logs in as its id; the broker password file holds this hash.
    mqtt_password_hash: Mapped[str | None] = mapped_column(String(300))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    zone: Mapped[Zone | None] = relationship(back_populates="speakers")


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(20))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_used: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class Announcement(Base):
    """What was written (or uploaded): the text, how it reads, to whom, in which tier."""

    __tablename__ = "announcements"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(300), default="")
    text: Mapped[str] = mapped_column(Text, default="")
    normalized_text: Mapped[str] = mapped_column(Text, default="")
    tier: Mapped[str] = mapped_column(String(20), default="normal")
    targets: Mapped[list[str]] = mapped_column(JSON, default=lambda: ["all"])
    repeat: Mapped[int] = mapped_column(Integer, default=1)
    engine: Mapped[str | None] = mapped_column(String(50))
    voice: Mapped[str | None] = mapped_column(String(100))
    audio_key: Mapped[str | None] = mapped_column(String(64))  # rendered or uploaded audio
    author: Mapped[str | None] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(20), default="api")
    approval: Mapped[str] = mapped_column(String(20), default=Approval.APPROVED.value)
    approved_by: Mapped[str | None] = mapped_column(String(100))
    approved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    broadcasts: Mapped[list[Broadcast]] = relationship(back_populates="announcement")


class Broadcast(Base):
    """One airing of an announcement, at one time, to its targets."""

    __tablename__ = "broadcasts"
    __table_args__ = (
        # A scheduled bulletin airs at most once per fire time, whatever restarts happen.
        UniqueConstraint("schedule_id", "fire_time", name="uq_broadcast_schedule_fire"),
        Index("ix_broadcasts_state", "state"),
        Index("ix_broadcasts_created", "created"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    announcement_id: Mapped[int] = mapped_column(ForeignKey("announcements.id", ondelete="CASCADE"))
    tier: Mapped[str] = mapped_column(String(20))
    targets: Mapped[list[str]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(30), default=BroadcastState.SCHEDULED.value)
    scheduled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)  # None: now
    start_at: Mapped[datetime | None] = mapped_column(UtcDateTime)  # the synchronized start sent
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    valid_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    audio_key: Mapped[str | None] = mapped_column(String(64))
    engine_used: Mapped[str | None] = mapped_column(String(50))
    duration_s: Mapped[float | None] = mapped_column(Float)
    schedule_id: Mapped[int | None] = mapped_column(ForeignKey("schedules.id", ondelete="SET NULL"))
    fire_time: Mapped[datetime | None] = mapped_column(UtcDateTime)
    reason: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(100))
    created: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # --- live audio (issue 10, migration live_0006): relays and live speech are broadcasts too.
    # kind: announcement | relay | live; a relay names its channel (and keeps its name, for the log
    # and reports even after the channel is deleted); end_at is the planned end of a stream item.
    kind: Mapped[str] = mapped_column(String(20), default="announcement", server_default="announcement")
    channel_id: Mapped[int | None] = mapped_column(ForeignKey("channels.id", ondelete="SET NULL"))
    source_name: Mapped[str | None] = mapped_column(String(200))
    end_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    announcement: Mapped[Announcement] = relationship(back_populates="broadcasts")
    deliveries: Mapped[list[Delivery]] = relationship(
        back_populates="broadcast", cascade="all, delete-orphan", order_by="Delivery.speaker_id"
    )
    attempts: Mapped[list[DeliveryAttempt]] = relationship(
        back_populates="broadcast",
        cascade="all, delete-orphan",
        order_by="(DeliveryAttempt.speaker_id, DeliveryAttempt.attempt)",
    )


class Delivery(Base):
    """What one cluster did with one broadcast."""

    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("broadcast_id", "speaker_id", name="uq_delivery"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    broadcast_id: Mapped[int] = mapped_column(ForeignKey("broadcasts.id", ondelete="CASCADE"))
    speaker_id: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(20), default=DeliveryState.PENDING.value)
    updated: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    seconds_played: Mapped[float | None] = mapped_column(Float)
    rms_dbfs: Mapped[float | None] = mapped_column(Float)
    reason: Mapped[str | None] = mapped_column(Text)
    broadcast: Mapped[Broadcast] = relationship(back_populates="deliveries")


class DeliveryAttempt(Base):
    """One airing of a broadcast on one cluster: the first, and each re-airing after an
    interruption (attempt 1, 2, ...), with how it ended. A delivery holds the latest state; the
    attempts keep every airing, so an interrupted first airing stays visible and counted."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (UniqueConstraint("broadcast_id", "speaker_id", "attempt", name="uq_delivery_attempt"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    broadcast_id: Mapped[int] = mapped_column(ForeignKey("broadcasts.id", ondelete="CASCADE"), index=True)
    speaker_id: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # playing | done | preempted | stopped | failed | expired
    outcome: Mapped[str] = mapped_column(String(20), default="playing")
    seconds_played: Mapped[float | None] = mapped_column(Float)
    reason: Mapped[str | None] = mapped_column(Text)
    broadcast: Mapped[Broadcast] = relationship(back_populates="attempts")


class Schedule(Base):
    """A recurring or one-off bulletin. ``source_file`` is set for ones loaded from schedules/*.yaml."""

    __tablename__ = "schedules"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    source_file: Mapped[str | None] = mapped_column(String(300), unique=True)
    title: Mapped[str] = mapped_column(String(300), default="")
    text: Mapped[str] = mapped_column(Text)
    tier: Mapped[str] = mapped_column(String(20), default="normal")
    targets: Mapped[list[str]] = mapped_column(JSON, default=lambda: ["all"])
    repeat: Mapped[int] = mapped_column(Integer, default=1)
    engine: Mapped[str | None] = mapped_column(String(50))
    voice: Mapped[str | None] = mapped_column(String(100))
    # kind: once | daily | weekdays | weekly | cron. ``time`` "HH:MM" for daily/weekdays/weekly,
    # ``days`` "mon,wed,fri" for weekly, ``run_at`` for once, ``cron`` a 5-field crontab line.
    kind: Mapped[str] = mapped_column(String(20))
    time: Mapped[str | None] = mapped_column(String(5))
    days: Mapped[str | None] = mapped_column(String(40))
    run_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    cron: Mapped[str | None] = mapped_column(String(100))
    valid_from: Mapped[datetime | None] = mapped_column(UtcDateTime)
    valid_to: Mapped[datetime | None] = mapped_column(UtcDateTime)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    audio_key: Mapped[str | None] = mapped_column(String(64))  # rendered ahead of air time
    approval: Mapped[str] = mapped_column(String(20), default=Approval.APPROVED.value)
    author: Mapped[str | None] = mapped_column(String(100))
    created: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # --- live audio (issue 10, migration live_0006): a schedule may relay a channel for a duration
    # (e.g. VOV1 news every day 6:00-6:30) instead of reading a text.
    channel_id: Mapped[int | None] = mapped_column(ForeignKey("channels.id", ondelete="SET NULL"))
    duration_s: Mapped[float | None] = mapped_column(Float)

    def announcement(self, audio_key: str | None = None) -> domain.Announcement:
        """The bulletin of one airing of this schedule."""
        return domain.Announcement(
            text=self.text,
            tier=domain.Tier(self.tier),
            targets=tuple(self.targets or ("all",)),
            title=self.title or self.name,
            repeat=self.repeat,
            engine=self.engine,
            voice=self.voice,
            author=self.author or "lịch phát",
            source=domain.Source.SCHEDULE,
            audio_key=domain.AudioKey(audio_key) if audio_key else None,
            extra={"schedule_id": str(self.id), "schedule_name": self.name},
        )


# --- live audio (issue 10, migration live_0006) -------------------------------------------------


class Channel(Base):
    """A relay channel the admin defined: a named HTTP(S) audio stream (Icecast/Shoutcast, HLS)."""

    __tablename__ = "channels"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    url: Mapped[str] = mapped_column(String(1000))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str | None] = mapped_column(String(100))
    created: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class HealthSample(Base):
    __tablename__ = "health_samples"
    __table_args__ = (Index("ix_health_speaker_ts", "speaker_id", "ts"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    speaker_id: Mapped[str] = mapped_column(String(64))
    ts: Mapped[datetime] = mapped_column(UtcDateTime)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class LogEntry(Base):
    """Every decision the controller takes, with its reason (arbitration, misses, alerts)."""

    __tablename__ = "log_entries"
    __table_args__ = (Index("ix_log_ts", "ts"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text)
    broadcast_id: Mapped[int | None] = mapped_column(Integer, index=True)
    speaker_id: Mapped[str | None] = mapped_column(String(64))


class Alert(Base):
    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    speaker_id: Mapped[str | None] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(40))  # offline | amplifier | error | stale
    message: Mapped[str] = mapped_column(Text)
    raised_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    cleared_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class LexiconEntry(Base):
    """An officer's reading of an abbreviation or word; overrides the shipped data files. The
    scope is ``engine`` (and ``voice`` of it); "" applies to all, so the unique constraint holds
    on every database (NULLs would never clash). ``hint``: a phonetic hint (IPA, or espeak-ng
    phonemes on an espeak-ng entry), see ``broadcaster.pronunciation``."""

    __tablename__ = "lexicon"
    __table_args__ = (UniqueConstraint("term", "engine", "voice", name="uq_lexicon_scope"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    term: Mapped[str] = mapped_column(String(100))
    engine: Mapped[str] = mapped_column(String(50), default="", server_default="")
    voice: Mapped[str] = mapped_column(String(100), default="", server_default="")
    reading: Mapped[str] = mapped_column(String(500))
    hint: Mapped[str | None] = mapped_column(String(200))
    updated_by: Mapped[str | None] = mapped_column(String(100))
    updated: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class Setting(Base):
    """Runtime settings an admin changes in the web UI (e.g. approval_required)."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)


class TtsUsage(Base):
    """Characters sent to a metered (cloud) speech engine on one local day: cost, and the daily
    cap (``broadcaster.tts.usage``). Counts only, never text or keys."""

    __tablename__ = "tts_usage"
    engine: Mapped[str] = mapped_column(String(50), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)  # local date (settings.timezone)
    chars: Mapped[int] = mapped_column(Integer, default=0)
    requests: Mapped[int] = mapped_column(Integer, default=0)


class UserSession(Base):
    """A logged-in browser. The signed session cookie carries a random token; only its SHA-256 is
    kept here. Logout, a password change, disabling the account and "log out everywhere" delete
    rows, and a cookie whose row is gone is refused at its next request (a copied cookie dies with
    the session it was copied from)."""

    __tablename__ = "user_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the cookie token
    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires: Mapped[datetime] = mapped_column(UtcDateTime)
    address: Mapped[str | None] = mapped_column(String(64))


class LexiconChange(Base):
    """A lexicon change proposed by an editor while approval is required: it reaches the lexicon
    (and so every render, approved recurring bulletins included) only once an approver accepts it.
    ``reading`` None proposes deleting ``entry_id``."""

    __tablename__ = "lexicon_changes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    term: Mapped[str] = mapped_column(String(100))
    engine: Mapped[str] = mapped_column(String(50), default="", server_default="")  # scope, as LexiconEntry
    voice: Mapped[str] = mapped_column(String(100), default="", server_default="")
    reading: Mapped[str | None] = mapped_column(String(500))
    hint: Mapped[str | None] = mapped_column(String(200))
    entry_id: Mapped[int | None] = mapped_column(Integer)  # the entry edited or deleted, if any
    state: Mapped[str] = mapped_column(String(20), default=Approval.PENDING.value, index=True)
    proposed_by: Mapped[str | None] = mapped_column(String(100))
    created: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    decided_by: Mapped[str | None] = mapped_column(String(100))
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    reason: Mapped[str | None] = mapped_column(Text)


class RegistryRevision(Base):
    """One row whose ``revision`` the database bumps (triggers, :func:`registry_revision_ddl`) on
    every insert, update or delete of a speaker, whoever writes it: this controller, the CLI
    (``broadcaster speaker enroll``) or another process. The running controller polls it to
    keep its managed broker's accounts in step with changes made elsewhere (``broker/sync.py``)."""

    __tablename__ = "registry_revision"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision: Mapped[int] = mapped_column(Integer, default=0)


class EnrollLink(Base):
    """A one-time link to download a cluster's agent.yaml (``broadcaster.fleet.enroll``): only the
    sha256 of its random token is kept; it works once (``used``) and until ``expires``."""

    __tablename__ = "enroll_links"
    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    speaker_id: Mapped[str] = mapped_column(ForeignKey("speakers.id", ondelete="CASCADE"), index=True)
    created: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires: Mapped[datetime] = mapped_column(UtcDateTime)
    used: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_by: Mapped[str | None] = mapped_column(String(100))


def registry_revision_ddl(dialect: str) -> list[str]:
    """Statements (idempotent) that make the database bump ``registry_revision`` on every change of
    the ``speakers`` table, and create its one row. SQLite and PostgreSQL; other databases get
    only the row (the controller then notices other processes' changes at its next restart)."""
    row = (
        "INSERT INTO registry_revision (id, revision) "
        "SELECT 1, 0 WHERE NOT EXISTS (SELECT 1 FROM registry_revision)"
    )
    bump = "UPDATE registry_revision SET revision = revision + 1"
    if dialect == "sqlite":
        return [row] + [
            f"CREATE TRIGGER IF NOT EXISTS registry_revision_{op.lower()} AFTER {op} ON speakers "
            f"BEGIN {bump}; END"
            for op in ("INSERT", "UPDATE", "DELETE")
        ]
    if dialect == "postgresql":
        return [
            row,
            "CREATE OR REPLACE FUNCTION registry_revision_bump() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN {bump}; RETURN NULL; END $$",
            "DROP TRIGGER IF EXISTS registry_revision_bump ON speakers",
            "CREATE TRIGGER registry_revision_bump AFTER INSERT OR UPDATE OR DELETE ON speakers "
            "FOR EACH STATEMENT EXECUTE FUNCTION registry_revision_bump()",
        ]
    return [row]


@event.listens_for(Base.metadata, "after_create")
def _registry_revision_triggers(target: Any, connection: Any, **kw: Any) -> None:
    # create_all (a new database) builds what the migration field_0006 builds for an old one.
    for statement in registry_revision_ddl(connection.dialect.name):
        connection.exec_driver_sql(statement)


# ------------------------------------------------------------------ federation (issue 11)
# The tables of the link between levels and of CAP alerts live in their own module; importing it
# here puts them in ``Base.metadata`` (create_all, migrations, the schema test).
from broadcaster.federation import models as _federation_models  # noqa: E402,F401

"""In-memory state of the airings in progress, shared by the dispatcher, arbitration and receipts.

An :class:`Airing` is a broadcast that is due, approved and rendered, from the moment it is queued
until every one of its deliveries has ended. Only the dispatcher thread changes airings; arbitration
reads them (never writes) and returns decisions that the dispatcher applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from broadcaster.domain import Tier
from speakers.protocol import AudioRef

# A live item has no planned end until the officer ends it: it holds its clusters this long at most.
OPEN_END_S = 4 * 3600.0


def wire_id(broadcast_id: int, attempt: int = 0) -> str:
    """The ``broadcast_id`` sent to nodes for one attempt of a broadcast on a cluster.

    Nodes remember the ids they finished and would take a re-airing under the same id for a
    duplicate, so attempt n > 0 goes out as ``"12-r<n>"``."""
    return str(broadcast_id) if attempt == 0 else f"{broadcast_id}-r{attempt}"


def parse_wire_id(value: str | None) -> tuple[int, int] | None:
    """``"12"`` -> (12, 0), ``"12-r1"`` -> (12, 1); None for anything else."""
    if not value:
        return None
    head, sep, tail = value.partition("-r")
    try:
        bid, attempt = int(head), (int(tail) if sep else 0)
    except ValueError:
        return None
    # Ids live in 64-bit database columns; a bigger number is nobody's broadcast.
    if not (0 < bid < 2**63 and 0 <= attempt < 1000):
        return None
    return bid, attempt


def slot_key(schedule_id: int, fire_time: datetime) -> str:
    """The key of one scheduled airing (docs/protocol.md section 11): ``s12@2027-01-15T00:00:00Z``."""
    return f"s{schedule_id}@{fire_time.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"


def parse_slot(value: str | None) -> tuple[int, datetime] | None:
    """``"s12@2027-01-15T00:00:00Z"`` -> (12, that instant, aware UTC); None for anything else."""
    if not value or not value.startswith("s") or "@" not in value:
        return None
    head, _, when = value[1:].partition("@")
    try:
        schedule_id = int(head)
        fire_time = datetime.strptime(when, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    if not 0 < schedule_id < 2**63:
        return None
    return schedule_id, fire_time


@dataclass
class Airing:
    """A broadcast being aired (see the module docstring)."""

    id: int
    tier: Tier
    order: int  # arrival order (the broadcast id): a re-queued item keeps its place
    title: str
    audio_key: str
    audio: AudioRef | None  # None for a stream item
    duration: float
    valid_until: float
    whole_zones: set[str]  # zones targeted as a whole (one zone publish serves them)
    pending: set[str] = field(default_factory=set)  # clusters that still have to get it
    active: dict[str, tuple[float, float]] = field(default_factory=dict)  # cluster -> (start, end)
    requeues: dict[str, int] = field(default_factory=dict)
    # Attempt number per cluster (see wire_id); receipts of an older attempt are stale.
    attempts: dict[str, int] = field(default_factory=dict)
    preempted_by: dict[str, int] = field(default_factory=dict)
    sent_at: dict[str, float] = field(default_factory=dict)  # cluster -> when its play went out
    logged: set[tuple[str, str]] = field(default_factory=set)  # decisions already written to the log
    started: bool = False
    cancelled: bool = False
    cancel_reason: str = ""
    slot: str | None = None  # a scheduled airing: nodes that aired it offline answer from their record
    # Stream items (relays, live speech): the stream the nodes play, with a fixed end in controller
    # time (None: a live item still going). A stream re-aired after an interruption resumes at the
    # live point for the time that remains, never from the start.
    stream: str | None = None
    kind: str = "announcement"
    end_at: float | None = None
    min_lead: float = 0.0  # a stream needs its frames on the wire before the start (its delay)
    # A streamed emergency's whole recording once stored (key, reference, bytes): the clusters that
    # missed the stream (offline) get it as a file when the stream is over.
    recording: tuple[str, AudioRef, bytes] | None = None

    def end_for(self, start: float) -> float:
        """When the item ends on a cluster where it starts at ``start``."""
        if self.stream is None:
            return start + self.duration
        return self.end_at if self.end_at is not None else start + OPEN_END_S

    def remaining(self, start: float) -> float:
        return max(0.0, self.end_for(start) - start)


@dataclass(frozen=True)
class Hold:
    """An item that is due but still rendering: it keeps its place in the queue on its clusters."""

    id: int
    tier: Tier
    targets: frozenset[str]


__all__ = ["OPEN_END_S", "Airing", "Hold", "parse_slot", "parse_wire_id", "slot_key", "wire_id"]

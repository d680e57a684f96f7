"""The MQTT wire protocol between the controller and speaker nodes (stdlib only).

``docs/protocol.md`` is the authority; this module implements it and is shared by
the controller and the agent. Every JSON message carries ``"v"`` (the protocol
version) and ``"type"``. Unknown fields are ignored so that newer controllers and
older nodes keep talking. A message that cannot be understood raises
:class:`ProtocolError`; callers log it, count it and carry on.

Audio chunks are the one binary payload: raw bytes of chunk ``n`` of the file whose
sha256 is in the topic (``{prefix}/audio/{sha256}/{n}``).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from speakers.wire import PROTOCOL_VERSION, Message, ProtocolError, decode_message

DEFAULT_PREFIX = "loa"
# 64 KiB keeps a chunk well under every broker's default packet limit and lets a
# node on a weak 4G link make progress chunk by chunk.
DEFAULT_CHUNK_SIZE = 64 * 1024

# MQTT 5 message expiry (seconds) that publishers set, see docs/protocol.md "Delivery".
EVENT_EXPIRY_S = 24 * 3600  # receipts: the controller may be away for a day and still learn
TIME_EXPIRY_S = 5  # a time request or answer older than this is useless
DEFAULT_SESSION_EXPIRY_S = 24 * 3600  # a node's session (subscriptions, queued commands)

TIERS = ("normal", "priority", "emergency")
TIER_RANK = {t: i for i, t in enumerate(TIERS)}

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
# A slot key names one scheduled airing, independent of broadcast ids (docs/protocol.md section 11):
# printable, no spaces, short enough that "slot:" + key still fits a 128-character broadcast id.
_SLOT_RE = re.compile(r"^[!-~]{1,120}$")
# A lookahead is a node's whole schedule for the next hours; this bounds the node's memory.
MAX_LOOKAHEAD_SLOTS = 1000


def valid_id(value: str) -> bool:
    """Speaker and zone ids: letters, digits, ``_ . -``; never MQTT wildcards or ``/``."""
    return bool(_ID_RE.match(value))


def check_id(value: str, what: str = "id") -> str:
    if not isinstance(value, str) or not valid_id(value):
        raise ProtocolError(f"invalid {what}: {value!r}")
    return value


def valid_slot(value: str) -> bool:
    """Slot keys: 1-120 printable ASCII characters without spaces (``s12@2026-01-05T06:00:00Z``)."""
    return bool(_SLOT_RE.match(value))


def _check_slot(value: str | None) -> None:
    if value is not None and not valid_slot(value):
        raise ValueError(f"invalid slot key {value!r} (1-120 printable characters, no spaces)")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _finite(name: str, value: float | None) -> None:
    if value is not None and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number")


# --------------------------------------------------------------------------- topics


@dataclass(frozen=True)
class Topics:
    """Topic builders and the parser for one prefix."""

    prefix: str = DEFAULT_PREFIX

    def status(self, speaker: str) -> str:
        return f"{self.prefix}/speakers/{speaker}/status"

    def health(self, speaker: str) -> str:
        return f"{self.prefix}/speakers/{speaker}/health"

    def cmd(self, speaker: str) -> str:
        return f"{self.prefix}/speakers/{speaker}/cmd"

    def events(self, speaker: str) -> str:
        return f"{self.prefix}/speakers/{speaker}/events"

    def time_request(self, speaker: str) -> str:
        return f"{self.prefix}/speakers/{speaker}/time"

    def lookahead(self, speaker: str) -> str:
        return f"{self.prefix}/speakers/{speaker}/lookahead"

    def zone_cmd(self, zone: str) -> str:
        return f"{self.prefix}/zones/{zone}/cmd"

    def audio_chunk(self, audio_id: str, index: int) -> str:
        return f"{self.prefix}/audio/{audio_id}/{index}"

    def audio_filter(self, audio_id: str) -> str:
        return f"{self.prefix}/audio/{audio_id}/+"

    def stream(self, stream_id: str) -> str:
        """Frames of one live stream (section 12): published once, read by every node playing it."""
        return f"{self.prefix}/streams/{stream_id}/audio"

    # Subscriptions of the controller.
    def controller_filters(self) -> list[str]:
        p = self.prefix
        return [
            f"{p}/speakers/+/status",
            f"{p}/speakers/+/health",
            f"{p}/speakers/+/events",
            f"{p}/speakers/+/time",
        ]

    # Subscriptions of one node (audio topics are subscribed on demand).
    def node_filters(self, speaker: str, zone: str | None) -> list[str]:
        filters = [self.cmd(speaker)]
        if zone:
            filters.append(self.zone_cmd(zone))
        filters.append(self.lookahead(speaker))
        return filters

    def parse(self, topic: str) -> tuple[str, str, str | None]:
        """Split a topic into ``(kind, ident, extra)``.

        kind is one of ``status health events time cmd lookahead zone_cmd audio stream``; ident is
        the speaker, zone, audio or stream id; extra is the chunk index for audio.
        """
        parts = topic.split("/")
        pre = self.prefix.split("/")
        if parts[: len(pre)] != pre:
            raise ProtocolError(f"topic outside prefix: {topic!r}")
        rest = parts[len(pre) :]
        if len(rest) == 3 and rest[0] == "speakers" and rest[2] in _SPEAKER_KINDS:
            return rest[2], check_id(rest[1], "speaker id"), None
        if len(rest) == 3 and rest[0] == "zones" and rest[2] == "cmd":
            return "zone_cmd", check_id(rest[1], "zone id"), None
        if len(rest) == 3 and rest[0] == "audio" and _SHA_RE.match(rest[1]) and rest[2].isdigit():
            return "audio", rest[1], rest[2]
        if len(rest) == 3 and rest[0] == "streams" and rest[2] == "audio":
            return "stream", check_id(rest[1], "stream id"), None
        raise ProtocolError(f"unknown topic: {topic!r}")


_SPEAKER_KINDS = frozenset({"status", "health", "cmd", "events", "time", "lookahead"})


# ---------------------------------------------------------------------- messages


@dataclass(frozen=True)
class AudioRef(Message):
    """Identifies a file and how it is chunked; the node verifies every chunk and the whole."""

    TYPE: ClassVar[str] = "audio"
    id: str
    size: int
    chunk_hashes: tuple[str, ...]
    chunk_size: int = DEFAULT_CHUNK_SIZE
    duration_s: float = 0.0
    format: str = "mp3"

    def __post_init__(self) -> None:
        if not _SHA_RE.match(self.id):
            raise ValueError("audio id must be a lowercase sha256 hex digest")
        if self.size < 0 or self.chunk_size <= 0:
            raise ValueError("bad size")
        if any(not _SHA_RE.match(h) for h in self.chunk_hashes):
            raise ValueError("chunk hashes must be lowercase sha256 hex digests")
        _finite("duration_s", self.duration_s)
        if self.duration_s < 0:
            raise ValueError("duration_s must not be negative")
        expected = max(1, -(-self.size // self.chunk_size))
        if len(self.chunk_hashes) != expected:
            raise ValueError(f"expected {expected} chunk hashes, got {len(self.chunk_hashes)}")

    @property
    def chunk_count(self) -> int:
        return len(self.chunk_hashes)

    def chunk_of(self, data: bytes, index: int) -> bytes:
        """Bytes of chunk ``index`` of the whole file ``data``."""
        if not 0 <= index < self.chunk_count:
            raise IndexError(f"chunk {index} out of range 0..{self.chunk_count - 1}")
        return data[index * self.chunk_size : (index + 1) * self.chunk_size]

    def chunk_ok(self, index: int, chunk: bytes) -> bool:
        """True when ``chunk`` is chunk ``index`` of this file (length and sha256)."""
        if not 0 <= index < self.chunk_count:
            return False
        last = index == self.chunk_count - 1
        expected_len = self.size - index * self.chunk_size if last else self.chunk_size
        return len(chunk) == expected_len and sha256_hex(chunk) == self.chunk_hashes[index]

    @classmethod
    def for_bytes(
        cls, data: bytes, chunk_size: int = DEFAULT_CHUNK_SIZE, duration_s: float = 0.0
    ) -> AudioRef:
        chunks = split_chunks(data, chunk_size)
        return cls(
            id=sha256_hex(data),
            size=len(data),
            chunk_hashes=tuple(sha256_hex(c) for c in chunks),
            chunk_size=chunk_size,
            duration_s=duration_s,
        )


def split_chunks(data: bytes, chunk_size: int = DEFAULT_CHUNK_SIZE) -> list[bytes]:
    return [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)] or [b""]


# Commands: controller -> node, on {prefix}/speakers/{id}/cmd or {prefix}/zones/{zone}/cmd.


@dataclass(frozen=True)
class PlayCommand(Message):
    """Play ``audio`` at ``start_at`` (controller clock, Unix seconds).

    ``valid_until``: a node that receives the command later does not play it.
    ``targets``: when sent to a zone topic, the speaker ids meant (empty = all members).
    ``slot``: the scheduled airing this play is (section 11): a node that already aired the slot
    on its own answers with its receipts instead of playing it again.
    """

    TYPE: ClassVar[str] = "play"
    broadcast_id: str
    audio: AudioRef
    start_at: float
    tier: Literal["normal", "priority", "emergency"] = "normal"
    volume: int | None = None
    valid_until: float | None = None
    title: str = ""
    targets: tuple[str, ...] = ()
    slot: str | None = None  # added with offline airing (optional)

    def __post_init__(self) -> None:
        if not self.broadcast_id or len(self.broadcast_id) > 128:
            raise ValueError("broadcast_id must be 1..128 characters")
        _finite("start_at", self.start_at)
        _finite("valid_until", self.valid_until)
        if self.volume is not None and not 0 <= self.volume <= 100:
            raise ValueError("volume must be 0..100")
        for target in self.targets:
            if not valid_id(target):
                raise ValueError(f"invalid target speaker id {target!r}")
        _check_slot(self.slot)


@dataclass(frozen=True)
class StopCommand(Message):
    """Stop ``broadcast_id``, or everything (playing and queued) when it is None."""

    TYPE: ClassVar[str] = "stop"
    broadcast_id: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class VolumeCommand(Message):
    TYPE: ClassVar[str] = "volume"
    volume: int

    def __post_init__(self) -> None:
        if not 0 <= self.volume <= 100:
            raise ValueError("volume must be 0..100")


@dataclass(frozen=True)
class TimeSync(Message):
    """The controller's answer to a :class:`TimeRequest` (also sent unasked to ask for a resync,
    with ``seq`` = -1)."""

    TYPE: ClassVar[str] = "time"
    seq: int
    t_node: float  # echoed from the request
    t_controller: float  # controller clock when answering

    def __post_init__(self) -> None:
        if self.seq < -1:
            raise ValueError("seq must be >= -1")
        _finite("t_node", self.t_node)
        _finite("t_controller", self.t_controller)


@dataclass(frozen=True)
class StreamCommand(Message):
    """Play the live stream ``stream`` (a relay or live speech, section 12) from ``start_at`` to
    ``end_at`` (controller time). ``end_at`` null: until the stream's last frame (live speech).

    A node that gets it after ``start_at`` (it connected or restarted mid-stream) joins at the live
    point: it plays from the next frame it receives. The other fields mean what they mean in
    :class:`PlayCommand`; ``valid_until`` defaults to ``end_at``.
    """

    TYPE: ClassVar[str] = "stream"
    broadcast_id: str
    stream: str
    start_at: float
    end_at: float | None = None
    tier: Literal["normal", "priority", "emergency"] = "normal"
    volume: int | None = None
    valid_until: float | None = None
    title: str = ""
    targets: tuple[str, ...] = ()
    kind: Literal["relay", "live"] = "relay"

    def __post_init__(self) -> None:
        if not self.broadcast_id or len(self.broadcast_id) > 128:
            raise ValueError("broadcast_id must be 1..128 characters")
        if not valid_id(self.stream):
            raise ValueError(f"invalid stream id {self.stream!r}")
        _finite("start_at", self.start_at)
        _finite("end_at", self.end_at)
        _finite("valid_until", self.valid_until)
        if self.end_at is not None and self.end_at < self.start_at:
            raise ValueError("end_at must not be before start_at")
        if self.volume is not None and not 0 <= self.volume <= 100:
            raise ValueError("volume must be 0..100")
        for target in self.targets:
            if not valid_id(target):
                raise ValueError(f"invalid target speaker id {target!r}")

    @property
    def slot(self) -> None:
        """Streams are never lookahead slots (live items need the link, section 11)."""
        return None


COMMANDS: dict[str, type[Message]] = {
    c.TYPE: c for c in (PlayCommand, StopCommand, VolumeCommand, TimeSync, StreamCommand)
}


# --------------------------------------------------------------------- stream frames (binary)
# In speakers/frames.py; re-exported here, where the rest of the wire protocol is.
from speakers.frames import (  # noqa: E402
    CODEC_IMA_ADPCM,
    CODEC_SILENCE,
    FRAME_HEADER_SIZE,
    StreamFrame,
)


@dataclass(frozen=True)
class Slot(Message):
    """One scheduled airing in a :class:`Lookahead` (embedded, never sent alone).

    ``slot`` is the stable key of the airing (suggested ``s<schedule id>@<fire time, UTC ISO>``);
    ``start_at`` and ``valid_until`` are controller time. Only normal and priority items are aired
    offline: emergencies and live items need the link.
    """

    TYPE: ClassVar[str] = "slot"
    slot: str
    start_at: float
    audio: AudioRef
    tier: Literal["normal", "priority"] = "normal"
    title: str = ""
    valid_until: float | None = None
    volume: int | None = None

    def __post_init__(self) -> None:
        _check_slot(self.slot)
        _finite("start_at", self.start_at)
        _finite("valid_until", self.valid_until)
        if self.valid_until is not None and self.valid_until < self.start_at:
            raise ValueError("valid_until must not be before start_at")
        if self.volume is not None and not 0 <= self.volume <= 100:
            raise ValueError("volume must be 0..100")


@dataclass(frozen=True)
class Lookahead(Message):
    """Retained on {prefix}/speakers/{id}/lookahead: the node's scheduled airings ahead.

    Each message replaces the previous one entirely (an empty ``slots`` = nothing scheduled).
    """

    TYPE: ClassVar[str] = "lookahead"
    generated_at: float
    slots: tuple[Slot, ...] = ()
    horizon_s: float | None = None  # informative: how far ahead the controller looked

    def __post_init__(self) -> None:
        _finite("generated_at", self.generated_at)
        _finite("horizon_s", self.horizon_s)
        if len(self.slots) > MAX_LOOKAHEAD_SLOTS:
            raise ValueError(f"at most {MAX_LOOKAHEAD_SLOTS} slots")
        keys = [s.slot for s in self.slots]
        if len(set(keys)) != len(keys):
            raise ValueError("slot keys must be unique")


LOOKAHEAD_MESSAGES: dict[str, type[Message]] = {Lookahead.TYPE: Lookahead}

# Node -> controller.


@dataclass(frozen=True)
class TimeRequest(Message):
    """On {prefix}/speakers/{id}/time: asks the controller for its clock."""

    TYPE: ClassVar[str] = "time_request"
    seq: int
    t_node: float

    def __post_init__(self) -> None:
        if self.seq < 0:
            raise ValueError("seq must be >= 0")
        _finite("t_node", self.t_node)


@dataclass(frozen=True)
class Status(Message):
    """Retained on {prefix}/speakers/{id}/status; ``online: false`` is also the last will."""

    TYPE: ClassVar[str] = "status"
    online: bool
    ts: float | None = None
    zone: str | None = None
    agent_version: str | None = None


@dataclass(frozen=True)
class Health(Message):
    """Periodic telemetry on {prefix}/speakers/{id}/health."""

    TYPE: ClassVar[str] = "health"
    ts: float
    uptime_s: float
    volume: int
    amplifier_on: bool
    playing: str | None = None  # broadcast id
    cache_bytes: int = 0
    clock_offset_ms: float | None = None
    last_error: str | None = None
    queue: tuple[str, ...] = ()
    malformed_count: int = 0
    cpu_temp_c: float | None = None
    disk_free_bytes: int | None = None
    signal_dbm: float | None = None
    # Added in the first agent release (optional, so older nodes stay valid):
    clock_rtt_ms: float | None = None  # round trip of the time sample the offset came from
    reconnects: int = 0  # MQTT reconnections since the agent started
    zone: str | None = None
    player: str | None = None  # real | null | file
    agent_version: str | None = None
    # Added with the agent service (optional):
    supply_v: float | None = None  # supply voltage, from a configured file or command
    on_backup: bool | None = None  # True while running on the backup battery/UPS
    output_dbfs: float | None = None  # RMS of the last second sent to the output; None when idle


EVENT_STATES = (
    "received",
    "need_audio",  # ``missing`` lists chunk indexes the node lacks; the controller sends them
    "scheduled",
    "playing",
    "done",
    "failed",
    "preempted",
    "stopped",
    "expired",
    "error",  # a command the node could not understand; ``reason`` says why
)
EventState = Literal[
    "received",
    "need_audio",
    "scheduled",
    "playing",
    "done",
    "failed",
    "preempted",
    "stopped",
    "expired",
    "error",
]


@dataclass(frozen=True)
class Event(Message):
    """A receipt on {prefix}/speakers/{id}/events.

    ``done`` carries ``seconds_played`` and ``rms_dbfs`` measured from what was actually played;
    ``playing`` carries ``started_at`` in controller time.
    """

    TYPE: ClassVar[str] = "event"
    state: EventState
    ts: float
    broadcast_id: str | None = None
    audio_id: str | None = None
    started_at: float | None = None
    seconds_played: float | None = None
    rms_dbfs: float | None = None
    reason: str | None = None
    missing: tuple[int, ...] = ()
    tier: str | None = None  # the broadcast's tier, echoed (optional)
    # Added with offline airing (optional):
    slot: str | None = None  # the scheduled airing (lookahead slot) this receipt is about
    finished_at: float | None = None  # final receipts of a started item: when playback ended
    offline: bool = False  # True: the node aired it on its own, without a play command

    def __post_init__(self) -> None:
        if any(i < 0 for i in self.missing):
            raise ValueError("missing chunk indexes must be >= 0")
        _check_slot(self.slot)


NODE_MESSAGES: dict[str, type[Message]] = {c.TYPE: c for c in (TimeRequest, Status, Health, Event)}
ALL_MESSAGES: dict[str, type[Message]] = {**COMMANDS, **LOOKAHEAD_MESSAGES, **NODE_MESSAGES}


def decode(payload: bytes | str, allowed: dict[str, type[Message]] | None = None) -> Any:
    """Parse one JSON message. Raises :class:`ProtocolError` on anything malformed.

    A message of a newer protocol version is still parsed (unknown fields are ignored);
    one without ``type`` or with a type not in ``allowed`` is rejected.
    """
    return decode_message(payload, ALL_MESSAGES if allowed is None else allowed)


def decode_command(payload: bytes | str) -> Any:
    return decode(payload, COMMANDS)


def decode_node_message(payload: bytes | str) -> Any:
    return decode(payload, NODE_MESSAGES)


def decode_lookahead(payload: bytes | str) -> Lookahead:
    """A lookahead; an empty payload (the retained message cleared) is an empty lookahead."""
    if not payload:
        return Lookahead(generated_at=0.0)
    result: Lookahead = decode(payload, LOOKAHEAD_MESSAGES)
    return result


__all__ = [
    "ALL_MESSAGES",
    "COMMANDS",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_PREFIX",
    "DEFAULT_SESSION_EXPIRY_S",
    "EVENT_EXPIRY_S",
    "EVENT_STATES",
    "LOOKAHEAD_MESSAGES",
    "MAX_LOOKAHEAD_SLOTS",
    "NODE_MESSAGES",
    "PROTOCOL_VERSION",
    "TIERS",
    "TIER_RANK",
    "TIME_EXPIRY_S",
    "AudioRef",
    "Event",
    "Health",
    "Lookahead",
    "Message",
    "PlayCommand",
    "ProtocolError",
    "Slot",
    "Status",
    "StopCommand",
    "StreamCommand",
    "StreamFrame",
    "FRAME_HEADER_SIZE",
    "CODEC_IMA_ADPCM",
    "CODEC_SILENCE",
    "TimeRequest",
    "TimeSync",
    "Topics",
    "VolumeCommand",
    "check_id",
    "decode",
    "decode_command",
    "decode_lookahead",
    "decode_node_message",
    "sha256_hex",
    "split_chunks",
    "valid_id",
    "valid_slot",
]

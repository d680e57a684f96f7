"""Stream frames: the binary payload of a relay or live stream on
``{prefix}/streams/{stream}/audio`` (``docs/protocol.md``, section 12; stdlib only).

Split from :mod:`speakers.protocol`, which re-exports everything here: the JSON messages live there,
the one binary stream format here.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from speakers.wire import ProtocolError

FRAME_MAGIC = b"LXA1"
# magic, seq, t (controller time of the first sample), samples, rate, codec, flags, ADPCM predictor
# and step index at the first sample: 29 bytes, network order.
_FRAME_HEADER = struct.Struct("!4sIdIIBBhB")
FRAME_HEADER_SIZE = _FRAME_HEADER.size
CODEC_SILENCE = 0  # no payload: ``samples`` of silence (a stalled source keeps the clock going)
CODEC_IMA_ADPCM = 1  # 4-bit IMA ADPCM, mono, low nibble first (speakers/adpcm.py)
FLAG_LAST = 1  # the stream ends after this frame
# A frame longer than this is not a live frame (bounds a node's decode work per message).
MAX_FRAME_SAMPLES = 48_000 * 2


@dataclass(frozen=True)
class StreamFrame:
    """One frame of a stream on ``{prefix}/streams/{stream}/audio`` (binary, section 12)."""

    seq: int
    t: float  # controller time at which the first sample sounds
    samples: int
    rate: int
    payload: bytes = b""
    codec: int = CODEC_IMA_ADPCM
    last: bool = False
    predictor: int = 0
    index: int = 0

    @property
    def duration(self) -> float:
        return self.samples / self.rate

    @property
    def end(self) -> float:
        return self.t + self.duration

    def encode(self) -> bytes:
        flags = FLAG_LAST if self.last else 0
        header = _FRAME_HEADER.pack(
            FRAME_MAGIC,
            self.seq & 0xFFFFFFFF,
            self.t,
            self.samples,
            self.rate,
            self.codec,
            flags,
            self.predictor,
            self.index,
        )
        return header + self.payload

    @classmethod
    def decode(cls, data: bytes) -> StreamFrame:
        """Parse a frame; ProtocolError on anything malformed."""
        if len(data) < FRAME_HEADER_SIZE:
            raise ProtocolError("stream frame shorter than its header")
        magic, seq, t, samples, rate, codec, flags, predictor, index = _FRAME_HEADER.unpack_from(data)
        if magic != FRAME_MAGIC:
            raise ProtocolError("not a stream frame (bad magic)")
        payload = bytes(data[FRAME_HEADER_SIZE:])
        if not math.isfinite(t) or not 8000 <= rate <= 48000 or not 0 < samples <= MAX_FRAME_SAMPLES:
            raise ProtocolError("stream frame with a bad time, rate or length")
        if codec == CODEC_IMA_ADPCM:
            if len(payload) != (samples + 1) // 2 or not 0 <= index <= 88:
                raise ProtocolError("ADPCM frame length does not match its sample count")
        elif codec == CODEC_SILENCE:
            if payload:
                raise ProtocolError("a silence frame has no payload")
        else:
            raise ProtocolError(f"unknown stream codec {codec}")
        return cls(seq, t, samples, rate, payload, codec, bool(flags & FLAG_LAST), predictor, index)


__all__ = [
    "CODEC_IMA_ADPCM",
    "CODEC_SILENCE",
    "FLAG_LAST",
    "FRAME_HEADER_SIZE",
    "FRAME_MAGIC",
    "MAX_FRAME_SAMPLES",
    "StreamFrame",
]

"""The framer: conditioned PCM in, timed frames out (sans I/O: the caller reads and publishes).

Each frame carries the controller time its first sample must sound: the time the first sample of
the stream reached the framer, plus the playout delay, plus the samples before it divided by the
rate. Time on the wire therefore follows the samples exactly (every cluster plays the same sample
at the same instant). Two things break that line, and the framer re-anchors then:

- the source fell behind (a stall, a slow network): a frame would be due less than half the
  playout delay from now, too late for the clusters. The next frame is re-anchored at now + delay;
  the jump is a *gap* (silence on the clusters), returned by :meth:`take_gaps` for the log;
- nothing at all came for a while: :meth:`fill` keeps the clock going with silence frames (no
  payload) so that the clusters hear silence, not an ended stream, while the source is retried.
"""

from __future__ import annotations

import array
from dataclasses import dataclass

from speakers import adpcm
from speakers.protocol import CODEC_IMA_ADPCM, CODEC_SILENCE, StreamFrame


@dataclass(frozen=True)
class Gap:
    at: float  # controller time where the audio jumped
    seconds: float


class Framer:
    def __init__(self, rate: int, frame_s: float, delay_s: float) -> None:
        self.rate = rate
        self.frame_samples = max(1, round(rate * frame_s))
        self.delay_s = delay_s
        self.seq = 0
        self.next_t: float | None = None  # controller time of the next frame's first sample
        self._pending = array.array("h")
        self._predictor = 0
        self._index = 0
        self._gaps: list[Gap] = []
        self.samples_out = 0

    def _anchor(self, now: float, min_ahead: float | None = None) -> float:
        """The next frame's time, re-anchored when it is due less than ``min_ahead`` (default half
        the delay) from now: too late for the clusters."""
        if min_ahead is None:
            min_ahead = self.delay_s / 2
        if self.next_t is None:
            self.next_t = now + self.delay_s
        elif self.next_t < now + min_ahead:
            target = now + self.delay_s
            self._gaps.append(Gap(self.next_t, target - self.next_t))
            self.next_t = target
        return self.next_t

    def push(self, pcm: bytes, now: float) -> list[StreamFrame]:
        """Add s16le mono PCM at the stream's rate; return the frames now complete."""
        self._pending.extend(adpcm.pcm_to_samples(pcm))
        frames = []
        n = self.frame_samples
        while len(self._pending) >= n:
            chunk = self._pending[:n]
            del self._pending[:n]
            frames.append(self._frame(chunk, now))
        return frames

    def _frame(self, chunk: array.array[int], now: float, last: bool = False) -> StreamFrame:
        t = self._anchor(now)
        predictor, index = self._predictor, self._index
        payload, self._predictor, self._index = adpcm.encode(chunk, predictor, index)
        frame = StreamFrame(
            seq=self.seq,
            t=t,
            samples=len(chunk),
            rate=self.rate,
            payload=payload,
            codec=CODEC_IMA_ADPCM,
            last=last,
            predictor=predictor,
            index=index,
        )
        self._advance(len(chunk))
        return frame

    def _advance(self, samples: int) -> None:
        self.seq += 1
        self.samples_out += samples
        assert self.next_t is not None
        self.next_t += samples / self.rate

    def fill(self, now: float, upto: float | None = None) -> list[StreamFrame]:
        """Silence frames (no payload) until the stream's clock reaches ``upto`` (default: now plus
        half the delay), when the source gives nothing: the clusters keep an open, silent stream."""
        if self.next_t is None:
            return []
        limit = now + self.delay_s / 2 if upto is None else upto
        frames = []
        # Silence keeps the clock going from where the audio stopped; only a clock already in the
        # past (the pump itself was held up) is re-anchored. Re-anchoring at half the delay, as for
        # audio, would jump ahead at every tick and publish nothing at all.
        self._anchor(now, min_ahead=0.0)
        while self.next_t < limit:
            frame = StreamFrame(
                seq=self.seq, t=self.next_t, samples=self.frame_samples, rate=self.rate, codec=CODEC_SILENCE
            )
            self._advance(self.frame_samples)
            frames.append(frame)
        return frames

    def finish(self, now: float) -> StreamFrame:
        """The last frame: what is pending (padded to one sample at least), flagged ``last``."""
        chunk = self._pending[:]
        del self._pending[:]
        if not chunk:
            chunk = array.array("h", [0])
        return self._frame(chunk, now, last=True)

    def ahead(self, now: float) -> float:
        """How far the next frame is beyond ``now`` + delay (positive: the source runs fast)."""
        return 0.0 if self.next_t is None else self.next_t - (now + self.delay_s)

    def take_gaps(self) -> list[Gap]:
        gaps, self._gaps = self._gaps, []
        return gaps


__all__ = ["Framer", "Gap"]

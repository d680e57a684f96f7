"""The framer (broadcaster/live/framer.py), sans I/O: PCM and the time in, timed frames out."""

from __future__ import annotations

import array

from broadcaster.live.framer import Framer
from speakers.protocol import CODEC_IMA_ADPCM, CODEC_SILENCE

RATE = 12_000
FRAME_S = 0.25
DELAY = 0.6


def _pcm(seconds: float, value: int = 1000) -> bytes:
    return array.array("h", [value] * int(seconds * RATE)).tobytes()


def test_frames_carry_the_time_their_first_sample_sounds() -> None:
    framer = Framer(RATE, FRAME_S, DELAY)
    frames = framer.push(_pcm(1.0), now=100.0)
    assert [f.seq for f in frames] == [0, 1, 2, 3]
    assert [round(f.t, 3) for f in frames] == [100.6, 100.85, 101.1, 101.35]
    assert all(f.codec == CODEC_IMA_ADPCM and f.samples == 3000 for f in frames)
    # Time follows the samples, not the arrival: a chunk arriving early is not re-timed.
    assert framer.push(_pcm(0.25), now=100.3)[0].t == frames[-1].end


def test_silence_keeps_the_clock_going_while_nothing_comes() -> None:
    """Regression: fill() re-anchored at every tick and published nothing, so a live item whose
    browser stopped sending never reached its last frame on the nodes."""
    framer = Framer(RATE, FRAME_S, DELAY)
    audio = framer.push(_pcm(0.5), now=0.0)
    assert audio[-1].end == 1.1
    published = []
    now = 0.0
    while now < 5.0:  # the pump's ticks
        now += 0.05
        published += framer.fill(now)
    assert published, "silence frames while the source is silent"
    assert all(f.codec == CODEC_SILENCE and not f.payload for f in published)
    seqs = [f.seq for f in audio + published]
    assert seqs == list(range(len(seqs)))  # no hole: nodes never take a frame for lost
    stream = audio + published
    for before, after in zip(stream, stream[1:], strict=False):
        assert abs(after.t - before.end) < 1e-9  # one continuous clock
    assert published[0].t == audio[-1].end  # silence starts where the audio stopped
    assert not framer.take_gaps()
    # Each silence frame goes out before it is due.
    last = published[-1]
    assert 0 < last.t - now <= DELAY


def test_audio_too_late_for_the_clusters_jumps_ahead_and_the_gap_is_reported() -> None:
    framer = Framer(RATE, FRAME_S, DELAY)
    framer.push(_pcm(0.25), now=0.0)  # next frame due at 0.85
    late = framer.push(_pcm(0.25), now=0.7)[0]  # due in 0.15 s < half the delay: too late
    assert late.t == 0.7 + DELAY
    [gap] = framer.take_gaps()
    assert gap.at == 0.85 and round(gap.seconds, 3) == 0.45


def test_the_last_frame_is_flagged() -> None:
    framer = Framer(RATE, FRAME_S, DELAY)
    framer.push(_pcm(0.3), now=0.0)  # one frame out, 0.05 s pending
    last = framer.finish(now=0.1)
    assert last.last and last.samples == 600 and last.seq == 1

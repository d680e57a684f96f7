"""A generated announcement chime (no sound files shipped, nothing copyrighted).

Three soft bell tones, a major triad: rising before an announcement (C5 E5 G5), falling after it
(G5 E5 C5). Each tone is a sine with two quiet overtones, a short attack and an exponential
decay, so it sounds like a struck bell rather than a beep.
"""

from __future__ import annotations

import math
from array import array
from functools import lru_cache

# Equal-tempered pitches of C5, E5 and G5, in Hz.
NOTES_HZ = (523.25, 659.25, 783.99)
NOTE_SPACING_S = 0.30  # onset to onset
NOTE_RING_S = 1.1  # how long each tone sounds
DECAY_TAU_S = 0.30  # e-folding time of the decay
ATTACK_S = 0.008  # short enough to sound struck, long enough not to click
# (multiple of the fundamental, relative amplitude): a mellow bell.
OVERTONES = ((1.0, 1.0), (2.0, 0.30), (3.0, 0.08))
PEAK = 0.5  # -6 dBFS; the renderer sets the level relative to the speech anyway


@lru_cache(maxsize=8)
def chime_pcm16(sample_rate: int, rising: bool = True) -> bytes:
    """The chime as mono signed 16-bit little-endian PCM at ``sample_rate``."""
    notes = NOTES_HZ if rising else tuple(reversed(NOTES_HZ))
    total = int((NOTE_SPACING_S * (len(notes) - 1) + NOTE_RING_S) * sample_rate)
    mix = [0.0] * total
    ring = int(NOTE_RING_S * sample_rate)
    attack = max(1, int(ATTACK_S * sample_rate))
    fade = max(1, int(0.05 * sample_rate))  # last 50 ms fade to exact zero
    for index, freq in enumerate(notes):
        start = int(index * NOTE_SPACING_S * sample_rate)
        steps = [2 * math.pi * freq * mult / sample_rate for mult, _ in OVERTONES]
        amps = [amp for _, amp in OVERTONES]
        for n in range(ring):
            pos = start + n
            if pos >= total:
                break
            t = n / sample_rate
            env = math.exp(-t / DECAY_TAU_S)
            if n < attack:
                env *= n / attack
            if n > ring - fade:
                env *= (ring - n) / fade
            mix[pos] += env * sum(a * math.sin(s * n) for s, a in zip(steps, amps, strict=True))
    peak = max(abs(v) for v in mix) or 1.0
    scale = PEAK * 32767 / peak
    return array("h", (int(v * scale) for v in mix)).tobytes()

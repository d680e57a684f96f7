"""IMA ADPCM, 4 bits per sample, mono: the codec of live audio frames (docs/protocol.md section 12).

Chosen because every frame is decodable on its own (the frame header carries the predictor and the
step index), so a lost frame costs exactly its own duration and a node joins a stream at any frame;
because it needs nothing but the standard library on a node; and because 12 kHz at 4 bits is 48
kbps, inside a 4G budget of 64 kbps with room for the framing. Horn loudspeakers reproduce little
above 5-6 kHz, so a 12 kHz rate loses nothing audible on them.
"""

from __future__ import annotations

import array
import sys

_STEPS = (
    7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 19, 21, 23, 25, 28, 31, 34, 37, 41, 45, 50, 55, 60, 66,
    73, 80, 88, 97, 107, 118, 130, 143, 157, 173, 190, 209, 230, 253, 279, 307, 337, 371, 408, 449,
    494, 544, 598, 658, 724, 796, 876, 963, 1060, 1166, 1282, 1411, 1552, 1707, 1878, 2066, 2272,
    2499, 2749, 3024, 3327, 3660, 4026, 4428, 4871, 5358, 5894, 6484, 7132, 7845, 8630, 9493,
    10442, 11487, 12635, 13899, 15289, 16818, 18500, 20350, 22385, 24623, 27086, 29794, 32767,
)  # fmt: skip
_INDEX_ADJUST = (-1, -1, -1, -1, 2, 4, 6, 8, -1, -1, -1, -1, 2, 4, 6, 8)


def pcm_to_samples(pcm: bytes) -> array.array[int]:
    """s16le bytes -> signed 16-bit samples (host order)."""
    samples = array.array("h")
    samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def samples_to_pcm(samples: array.array[int]) -> bytes:
    if sys.byteorder == "big":
        samples = array.array("h", samples)
        samples.byteswap()
    return samples.tobytes()


def encode(samples: array.array[int] | list[int], predictor: int, index: int) -> tuple[bytes, int, int]:
    """Encode ``samples`` starting from the state (``predictor``, ``index``); returns the nibbles
    (two samples a byte, the first in the low nibble) and the state after the last sample."""
    out = bytearray((len(samples) + 1) // 2)
    steps, adjust = _STEPS, _INDEX_ADJUST
    for n, sample in enumerate(samples):
        step = steps[index]
        diff = sample - predictor
        code = 0
        if diff < 0:
            code = 8
            diff = -diff
        delta = step >> 3
        if diff >= step:
            code |= 4
            diff -= step
            delta += step
        if diff >= step >> 1:
            code |= 2
            diff -= step >> 1
            delta += step >> 1
        if diff >= step >> 2:
            code |= 1
            delta += step >> 2
        predictor = predictor - delta if code & 8 else predictor + delta
        if predictor > 32767:
            predictor = 32767
        elif predictor < -32768:
            predictor = -32768
        index += adjust[code]
        if index < 0:
            index = 0
        elif index > 88:
            index = 88
        if n & 1:
            out[n >> 1] |= code << 4
        else:
            out[n >> 1] = code
    return bytes(out), predictor, index


def decode(data: bytes, count: int, predictor: int, index: int) -> array.array[int]:
    """Decode ``count`` samples from ``data`` starting from the state (``predictor``, ``index``)."""
    out = array.array("h", bytes(2 * count))
    steps, adjust = _STEPS, _INDEX_ADJUST
    if not 0 <= index <= 88:
        raise ValueError("ADPCM step index out of range")
    count = min(count, 2 * len(data))
    for n in range(count):
        byte = data[n >> 1]
        code = (byte >> 4) if n & 1 else (byte & 15)
        step = steps[index]
        delta = step >> 3
        if code & 4:
            delta += step
        if code & 2:
            delta += step >> 1
        if code & 1:
            delta += step >> 2
        predictor = predictor - delta if code & 8 else predictor + delta
        if predictor > 32767:
            predictor = 32767
        elif predictor < -32768:
            predictor = -32768
        index += adjust[code]
        if index < 0:
            index = 0
        elif index > 88:
            index = 88
        out[n] = predictor
    return out


__all__ = ["decode", "encode", "pcm_to_samples", "samples_to_pcm"]

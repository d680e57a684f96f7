"""Loudness measurement (EBU R128 / ITU-R BS.1770 via ffmpeg ``ebur128``) and mastering.

Mastering turns the assembled program into the broadcast MP3: high-pass, gain, a limiter run at
four times the sample rate (so it catches inter-sample peaks), resampling and MP3 encoding.
TTS speech is peaky (espeak-ng reaches 0 dBFS at about -18.5 LUFS), so reaching -16 LUFS under a
-1.5 dBTP ceiling needs limiting, and limiting lowers the loudness again. We therefore encode,
measure the encoded file itself, and correct gain and ceiling until both targets hold
(usually two or three passes). ffmpeg's ``loudnorm`` was tried first: on such speech it falls
back to its dynamic mode and stops about 2 LU short of the target.
"""

from __future__ import annotations

import logging
import math
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

_LOGGER = logging.getLogger(__name__)

FFMPEG = "ffmpeg"
FFMPEG_TIMEOUT_S = 600  # a 30-minute recording masters in well under a minute; this only stops a hang
MAX_PASSES = 6
LOUDNESS_TOLERANCE_LU = 0.4  # aim well inside the +-1 LU promise
PEAK_MARGIN_DB = 0.1  # final true peak at least this far under the ceiling
FIRST_CEILING_MARGIN_DB = 0.8  # limiter starts this far under the ceiling (MP3 adds overshoot)
MAX_GAIN_DB = 40.0
GATE_FLOOR_LUFS = -69.9  # ebur128 reports -70 LUFS when nothing passes its absolute gate

_SUMMARY_RE = re.compile(
    r"Integrated loudness:\s+I:\s+(?P<i>-?[\d.]+|-inf) LUFS.*?True peak:\s+Peak:\s+(?P<tp>-?[\d.]+|-inf) dBFS",
    re.S,
)
_TIME_RE = re.compile(r"time=(\d+):(\d+):(\d+(?:\.\d+)?)")


class AudioError(Exception):
    """ffmpeg failed or produced something unusable."""


@dataclass(frozen=True)
class Loudness:
    integrated_lufs: float
    true_peak_dbtp: float
    duration_s: float


@dataclass(frozen=True)
class Mastered:
    mp3: bytes
    duration_s: float
    loudness: Loudness
    passes: int
    gain_db: float
    ceiling_db: float


def _run(cmd: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    try:
        proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=FFMPEG_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise AudioError(f"{cmd[0]} timed out") from exc
    except OSError as exc:
        raise AudioError(f"cannot run {cmd[0]}: {exc}") from exc
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise AudioError(f"{cmd[0]} failed: {' / '.join(tail)}")
    return proc


def _parse_db(value: str) -> float:
    return -math.inf if value == "-inf" else float(value)


def measure(path: Path) -> Loudness:
    """Integrated loudness and true peak of an audio file, as ffmpeg's ebur128 reports them."""
    proc = _run(
        [FFMPEG, "-hide_banner", "-nostats", "-loglevel", "info", "-i", str(path),
         "-af", "ebur128=peak=true:framelog=verbose", "-f", "null", "-"]
    )  # fmt: skip
    log = proc.stderr.decode("utf-8", "replace")
    summaries = list(_SUMMARY_RE.finditer(log))
    found = summaries[-1] if summaries else None
    times = _TIME_RE.findall(log)
    if found is None or not times:
        raise AudioError(f"no loudness summary for {path.name}")
    h, m, s = times[-1]  # decoded length, exact for MP3 unlike header estimates
    return Loudness(_parse_db(found["i"]), _parse_db(found["tp"]), int(h) * 3600 + int(m) * 60 + float(s))


def decode_to_wav(data: bytes, *, max_s: float | None = None) -> bytes:
    """Any audio ffmpeg reads (MP3, WAV, M4A, OGG, AMR, a phone video's sound...) -> mono 16-bit
    WAV at its own rate. With ``max_s``, decoding stops a second past it (the caller rejects
    the upload as too long without decoding hours of it)."""
    if not data:
        raise AudioError("empty audio")
    with tempfile.TemporaryDirectory(prefix="loa-decode-") as tmp:
        src, dst = Path(tmp) / "in", Path(tmp) / "out.wav"
        src.write_bytes(data)
        limit = ["-t", f"{max_s + 1:.3f}"] if max_s is not None else []
        try:
            _run(
                [FFMPEG, "-hide_banner", "-nostats", "-loglevel", "error", "-y", "-i", str(src), *limit,
                 "-vn", "-ac", "1", "-c:a", "pcm_s16le", "-f", "wav", str(dst)]
            )  # fmt: skip
        except AudioError as exc:
            raise AudioError(f"not readable as audio ({exc})") from exc
        wav = dst.read_bytes() if dst.exists() else b""
        if len(wav) <= 44:
            raise AudioError("no audio in the file")
        return wav


def _encode(
    src: Path, dst: Path, *, gain_db: float, ceiling_db: float, in_rate: int, out_rate: int,
    bitrate_kbps: int, highpass_hz: int,
) -> None:  # fmt: skip
    filters = []
    if highpass_hz:
        filters.append(f"highpass=f={highpass_hz}")
    filters += [
        f"volume={gain_db:.3f}dB",
        f"aresample={in_rate * 4}",  # limit at 4x rate: catches inter-sample (true) peaks
        f"alimiter=limit={10 ** (ceiling_db / 20):.5f}:level=0:attack=1:release=60",
        f"aresample={out_rate}",
    ]
    _run(
        [FFMPEG, "-hide_banner", "-nostats", "-loglevel", "error", "-y", "-i", str(src),
         "-af", ",".join(filters), "-ac", "1", "-ar", str(out_rate),
         "-c:a", "libmp3lame", "-b:a", f"{bitrate_kbps}k",
         "-map_metadata", "-1", "-id3v2_version", "0", "-write_id3v1", "0", "-f", "mp3", str(dst)]
    )  # fmt: skip


def master(
    wav: bytes,
    *,
    in_rate: int,
    out_rate: int = 24_000,
    bitrate_kbps: int = 48,
    target_lufs: float = -16.0,
    ceiling_dbtp: float = -1.5,
    highpass_hz: int = 100,
) -> Mastered:
    """WAV program -> broadcast MP3 at ``target_lufs`` (within 0.4 LU) and a true peak at most
    ``ceiling_dbtp``, both measured on the encoded MP3."""
    with tempfile.TemporaryDirectory(prefix="loa-master-") as tmp:
        src = Path(tmp) / "program.wav"
        src.write_bytes(wav)
        source = measure(src)
        if not math.isfinite(source.integrated_lufs) or source.integrated_lufs <= GATE_FLOOR_LUFS:
            raise AudioError("the program is silent or too short to measure")
        gain = min(target_lufs - source.integrated_lufs, MAX_GAIN_DB)
        ceiling = ceiling_dbtp - FIRST_CEILING_MARGIN_DB
        history: list[tuple[float, float]] = []  # (gain, measured loudness)
        best: tuple[tuple[bool, float], int, Path, Loudness, float, float] | None = None
        for attempt in range(1, MAX_PASSES + 1):
            out = Path(tmp) / f"pass{attempt}.mp3"
            _encode(
                src, out, gain_db=gain, ceiling_db=ceiling, in_rate=in_rate, out_rate=out_rate,
                bitrate_kbps=bitrate_kbps, highpass_hz=highpass_hz,
            )  # fmt: skip
            got = measure(out)
            _LOGGER.debug(
                "master pass %d: gain %.2f dB, ceiling %.2f dB -> %.2f LUFS, %.2f dBTP",
                attempt, gain, ceiling, got.integrated_lufs, got.true_peak_dbtp,
            )  # fmt: skip
            peak_ok = got.true_peak_dbtp <= ceiling_dbtp - PEAK_MARGIN_DB
            error = target_lufs - got.integrated_lufs
            rank = (not peak_ok, abs(error))
            if best is None or rank < best[0]:
                best = (rank, attempt, out, got, gain, ceiling)
            if peak_ok and abs(error) <= LOUDNESS_TOLERANCE_LU:
                break
            if not peak_ok:
                ceiling -= got.true_peak_dbtp - (ceiling_dbtp - 0.4)
            history.append((gain, got.integrated_lufs))
            if abs(error) > LOUDNESS_TOLERANCE_LU / 2:
                gain = min(gain + max(-12.0, min(12.0, error / _slope(history))), MAX_GAIN_DB)
        assert best is not None
        _rank, attempt, out, got, gain, ceiling = best
        if got.true_peak_dbtp > ceiling_dbtp or abs(target_lufs - got.integrated_lufs) > 1.0:
            _LOGGER.warning(
                "mastering missed its targets after %d passes: %.2f LUFS, %.2f dBTP",
                MAX_PASSES, got.integrated_lufs, got.true_peak_dbtp,
            )  # fmt: skip
        return Mastered(
            mp3=out.read_bytes(),
            duration_s=got.duration_s,
            loudness=got,
            passes=attempt,
            gain_db=gain,
            ceiling_db=ceiling,
        )


def _slope(history: list[tuple[float, float]]) -> float:
    """Loudness change per dB of gain, from the last two passes (the limiter makes it < 1)."""
    if len(history) >= 2:
        (g0, i0), (g1, i1) = history[-2], history[-1]
        if abs(g1 - g0) > 0.05:
            return max(0.15, min(1.0, (i1 - i0) / (g1 - g0)))
    return 0.5 if len(history) >= 1 else 1.0

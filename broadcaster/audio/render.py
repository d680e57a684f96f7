"""Assembling broadcast programs: speech pieces, pauses, chime, repeats. The only pydub import.

Everything here works on 16-bit mono PCM at the speech's own sample rate; resampling to the
broadcast rate happens once, in ffmpeg, while mastering (better quality than pydub's).
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from broadcaster.audio.chime import chime_pcm16
from broadcaster.audio.config import AudioConfig
from broadcaster.audio.loudness import AudioError, Mastered, decode_to_wav, master
from broadcaster.tts.base import AudioClip

with warnings.catch_warnings():
    # pydub imports audioop, deprecated since Python 3.11 (audioop-lts replaces it on 3.13+).
    warnings.simplefilter("ignore", DeprecationWarning)
    from pydub import AudioSegment
    from pydub.silence import detect_leading_silence

_LOGGER = logging.getLogger(__name__)

SILENCE_BELOW_PEAK_DB = 45.0  # quieter than peak minus this counts as silence when trimming
SILENCE_FLOOR_DBFS = -60.0
TRIM_KEEP_MS = 20  # keep a little of the fade so consonants are not clipped
CHIME_BELOW_SPEECH_DB = 4.0  # the chime sits a little under the voice
SILENT_RECORDING_DBFS = -50.0  # an upload whose loudest sample is under this is "silent"


class RecordingRejected(AudioError):
    """An upload that cannot be broadcast; ``code`` is not_audio, too_long, too_short or silent."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Track:
    """Mono 16-bit audio being assembled (wraps a pydub segment; pydub stays in this module)."""

    segment: AudioSegment

    @property
    def duration_s(self) -> float:
        return len(self.segment) / 1000.0

    @property
    def sample_rate(self) -> int:
        return int(self.segment.frame_rate)

    @property
    def peak_dbfs(self) -> float:
        return float(self.segment.max_dBFS)

    def wav_bytes(self) -> bytes:
        buf = io.BytesIO()
        self.segment.export(buf, format="wav")
        return buf.getvalue()


def _from_wav(data: bytes) -> AudioSegment:
    try:
        seg = AudioSegment.from_wav(io.BytesIO(data))
    except Exception as exc:  # pydub raises assorted errors on bad WAV
        raise AudioError(f"unreadable WAV audio: {exc}") from exc
    if seg.channels != 1:
        seg = seg.set_channels(1)
    if seg.sample_width != 2:
        seg = seg.set_sample_width(2)
    return seg


def decode_clip(clip: AudioClip) -> Track:
    """An engine's clip as a mono 16-bit track (MP3 decoded by ffmpeg with a timeout)."""
    data = clip.data if clip.format == "wav" else decode_to_wav(clip.data)
    return Track(_from_wav(data))


def _trim(seg: AudioSegment) -> AudioSegment:
    if len(seg) == 0:
        return seg
    threshold = max(seg.max_dBFS - SILENCE_BELOW_PEAK_DB, SILENCE_FLOOR_DBFS)
    start = detect_leading_silence(seg, silence_threshold=threshold, chunk_size=5)
    end = detect_leading_silence(seg.reverse(), silence_threshold=threshold, chunk_size=5)
    start = max(0, start - TRIM_KEEP_MS)
    stop = len(seg) - max(0, end - TRIM_KEEP_MS)
    return seg[start:stop] if stop > start else seg[:0]


def _silence(ms: int, rate: int) -> AudioSegment:
    return AudioSegment.silent(duration=ms, frame_rate=rate).set_sample_width(2)


def speech_track(parts: Sequence[tuple[AudioClip, int]]) -> Track:
    """Join synthesized pieces, each trimmed of the engine's own leading/trailing silence and
    followed by its pause (ms), at the rate of the first piece."""
    if not parts:
        raise AudioError("nothing to assemble")
    out: AudioSegment | None = None
    for clip, pause_ms in parts:
        seg = decode_clip(clip).segment
        if out is not None and seg.frame_rate != out.frame_rate:
            seg = seg.set_frame_rate(out.frame_rate)
        seg = _trim(seg)
        if pause_ms:
            seg = seg + _silence(pause_ms, seg.frame_rate)
        out = seg if out is None else out + seg
    assert out is not None
    if len(out) == 0 or out.max_dBFS == float("-inf"):
        raise AudioError("the engine produced only silence")
    return Track(out)


def chime_track(rate: int, rising: bool) -> Track:
    return Track(AudioSegment(data=chime_pcm16(rate, rising), sample_width=2, frame_rate=rate, channels=1))


def program(
    body: Track,
    config: AudioConfig,
    *,
    repeat: int = 1,
    connector: Track | None = None,
    chime: bool = True,
) -> Track:
    """``[chime] body ([gap connector gap] body)*(repeat-1) [chime]`` with edge silence."""
    rate = body.sample_rate
    speech = body.segment
    gap = _silence(config.repeat_gap_ms, rate)
    spoken = speech
    for _ in range(repeat - 1):
        spoken = spoken + gap
        if connector is not None:
            conn = connector.segment
            if conn.frame_rate != rate:
                conn = conn.set_frame_rate(rate)
            spoken = spoken + _trim(conn) + gap
        spoken = spoken + speech
    edge = _silence(config.edge_silence_ms, rate)
    if chime:
        between = _silence(config.chime_gap_ms, rate)
        level = speech.dBFS - CHIME_BELOW_SPEECH_DB
        opening = chime_track(rate, rising=True).segment
        closing = chime_track(rate, rising=False).segment
        opening = opening.apply_gain(level - opening.dBFS)
        closing = closing.apply_gain(level - closing.dBFS)
        spoken = opening + between + spoken + between + closing
    return Track(edge + spoken + edge)


# A streamed program's chime level: the level TTS speech usually has (about -18 dBFS) less
# CHIME_BELOW_SPEECH_DB, since the speech is not there yet to measure (``program`` measures it).
STREAM_CHIME_DBFS = -22.0


def stream_piece(clip: AudioClip | None, pause_ms: int, rate: int) -> bytes:
    """One piece of a streamed program (``speech.render_streamed``), as s16le mono PCM at
    ``rate``: the clip trimmed of the engine's silences, then its pause; ``clip`` None: the pause."""
    if clip is None:
        seg = _silence(pause_ms, rate)
    else:
        seg = _trim(decode_clip(clip).segment).set_frame_rate(rate)
        if pause_ms:
            seg = seg + _silence(pause_ms, rate)
    return bytes(seg.raw_data)


def stream_chime(rate: int, rising: bool, gap_ms: int) -> bytes:
    """The chime of a streamed program at a fixed level, with its gap (rising: after it; falling:
    before it), as s16le mono PCM at ``rate``."""
    chime = chime_track(rate, rising=rising).segment
    chime = chime.apply_gain(STREAM_CHIME_DBFS - chime.dBFS)
    gap = _silence(gap_ms, rate)
    return bytes((chime + gap if rising else gap + chime).raw_data)


def recording_track(data: bytes, *, max_s: float) -> Track:
    """An officer's upload (any format ffmpeg reads) as a trimmed mono track.

    Raises AudioError with a reason when it is not audio, too long, too short or silent.
    """
    try:
        wav = decode_to_wav(data, max_s=max_s)
        seg = _from_wav(wav)
    except AudioError as exc:
        raise RecordingRejected("not_audio", f"not audio: {exc}") from exc
    if len(seg) / 1000.0 > max_s:
        raise RecordingRejected("too_long", f"recording longer than {max_s:g} s")
    if len(seg) == 0 or seg.max_dBFS < SILENT_RECORDING_DBFS:
        raise RecordingRejected("silent", "recording is silent")
    seg = _trim(seg)
    if len(seg) < 500:
        raise RecordingRejected("too_short", "recording is shorter than half a second")
    return Track(seg)


def master_track(track: Track, config: AudioConfig) -> Mastered:
    """The broadcast MP3 of a program, at the configured loudness, peak, rate and bitrate."""
    return master(
        track.wav_bytes(),
        in_rate=track.sample_rate,
        out_rate=config.sample_rate,
        bitrate_kbps=config.bitrate_kbps,
        target_lufs=config.target_lufs,
        ceiling_dbtp=config.true_peak_dbtp,
        highpass_hz=config.highpass_hz,
    )

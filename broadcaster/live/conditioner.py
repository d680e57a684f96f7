"""The ffmpeg command lines that pull and condition a source for horn loudspeakers.

Both apply the high-pass, loudness target and true-peak ceiling of rendered announcements
(``broadcaster/audio/config.py``), continuously, and write s16le mono PCM at the frame rate:

- a **relay** (Icecast/Shoutcast MP3 or AAC, HLS .m3u8) is paced by the pump and normalised by ``loudnorm`` in its one-pass (dynamic) mode, which looks 3 s ahead: a relay can
  afford that, its playout delay absorbs it;
- **live speech** (PCM from the browser on stdin) cannot: 3 s would make the speaker hear the horns
  long after speaking. It goes through a compressor with make-up gain towards the same target and a
  limiter at the same ceiling, ~40 ms of processing delay.
"""

from __future__ import annotations

from broadcaster.audio.config import AudioConfig

# PCM the browser sends: 16 kHz mono s16le (static/live.js resamples to it).
BROWSER_RATE = 16_000
# ffmpeg waits this long (microseconds) on a silent socket before it gives up on a read.
_RW_TIMEOUT_US = 8_000_000


def _ceiling(audio: AudioConfig) -> float:
    return round(10 ** (audio.true_peak_dbtp / 20), 4)


def _highpass(audio: AudioConfig) -> list[str]:
    # Mono first (a stereo source is averaged), so every filter after it sees one channel.
    return ["aformat=channel_layouts=mono"] + (
        [f"highpass=f={audio.highpass_hz}"] if audio.highpass_hz else []
    )


def _limiter(audio: AudioConfig) -> list[str]:
    return [
        "aformat=sample_fmts=dbl:channel_layouts=mono",
        f"alimiter=limit={_ceiling(audio)}:level=disabled",
    ]


def relay_filters(audio: AudioConfig, rate: int) -> str:
    steps = [
        *_highpass(audio),
        f"loudnorm=I={audio.target_lufs}:TP={audio.true_peak_dbtp}:LRA=11",
        f"aresample={rate}",
        *_limiter(audio),
    ]
    return ",".join(steps)


def live_filters(audio: AudioConfig, rate: int) -> str:
    # A browser microphone with automatic gain sits around -30..-20 dBFS RMS: a 4:1 compressor above
    # -30 dB with 10 dB of make-up brings speech near -16 LUFS without any look-ahead.
    steps = [
        *_highpass(audio),
        "acompressor=threshold=0.0316:ratio=4:attack=5:release=250:makeup=3.16",
        f"aresample={rate}",
        *_limiter(audio),
    ]
    return ",".join(steps)


def _output(rate: int) -> list[str]:
    return ["-vn", "-ac", "1", "-ar", str(rate), "-f", "s16le", "-flush_packets", "1", "pipe:1"]


def relay_command(
    ffmpeg: str, url: str, audio: AudioConfig, rate: int, demuxer: str | None = None
) -> list[str]:
    """Pull ``url`` once, conditioned (see the module docstring); ``demuxer`` from the probe."""
    # Probe little (a live source is one known stream): ffmpeg's default 5 s of analysis would delay
    # the start by as much. No -re: a radio server sends at its own pace, and the pump paces a
    # source that bursts (HLS segments, Icecast's burst on connect) by the frames' clock.
    network = ["-rw_timeout", str(_RW_TIMEOUT_US), "-probesize", "32768", "-analyzeduration", "500000"]
    if demuxer == "hls" or url.split("?")[0].lower().endswith((".m3u8", ".m3u")):
        network += ["-live_start_index", "-3"]
    if demuxer is not None:
        network += ["-f", demuxer]
    return [
        ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", *network,
        "-user_agent", "LoaXa-relay/1", "-i", url, "-af", relay_filters(audio, rate), *_output(rate),
    ]  # fmt: skip


def live_command(ffmpeg: str, audio: AudioConfig, rate: int) -> list[str]:
    """Condition the browser's PCM from stdin with no buffering of our own."""
    return [
        ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-fflags", "nobuffer",
        "-probesize", "32", "-analyzeduration", "0",
        "-f", "s16le", "-ar", str(BROWSER_RATE), "-ac", "1", "-i", "pipe:0",
        "-af", live_filters(audio, rate), *_output(rate),
    ]  # fmt: skip


def recording_command(ffmpeg: str, rate: int, wav_path: str) -> list[str]:
    """Not used for playback: the conditioned PCM of a live item written as the log's recording."""
    return [ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-f", "s16le", "-ar", str(rate), "-ac", "1",
            "-i", "pipe:0", wav_path]  # fmt: skip


__all__ = ["BROWSER_RATE", "live_command", "live_filters", "relay_command", "relay_filters"]

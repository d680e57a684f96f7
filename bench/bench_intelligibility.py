"""Intelligibility: word error rate of an offline Vietnamese recognizer (viet-asr 0.1.0.dev11, its
model inside the wheel) on our broadcast audio, per engine, with and without text normalization.

    .venv/bin/python bench/bench_intelligibility.py [--with-gtts] [--piper-voice FILE.onnx]

Ten fixed announcements (bench/data/intelligibility.txt: dates, times, money, abbreviations,
numbers, a phone number). Each is rendered through the real pipeline (chime off so the recognizer
hears only speech), converted to 16 kHz 16-bit mono WAV and transcribed. The reference is always
the normalized text (lower-cased, punctuation stripped): "without normalization" feeds the raw
text to the engine, so "UBND" or "7h30" are read however the engine guesses. A control row
feeds the engine's own WAV (normalized text, no pauses, mastering or MP3) to the recognizer, to
show what our rendering costs or gains. WER is
(substitutions + deletions + insertions) / reference words, over all ten.

gTTS needs the network; it is skipped unless --with-gtts is given. Piper needs a Vietnamese voice
file (--piper-voice); none can be installed offline here, so it is skipped by default. The cloud
engines (FPT.AI, Viettel AI, Zalo AI, Google Cloud, Azure) are measured when their key is set
(``BROADCASTER_TTS__FPT__API_KEY``... or the settings file in ``BROADCASTER_CONFIG``) and their
endpoint can be reached; otherwise the line says why they are not measurable.
"""

from __future__ import annotations

import argparse
import logging
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from broadcaster.audio.config import AudioConfig  # noqa: E402
from broadcaster.audio.store import AudioStore  # noqa: E402
from broadcaster.settings import SettingsError, load_settings  # noqa: E402
from broadcaster.speech import SpeechError, SpeechService  # noqa: E402
from broadcaster.textnorm import Normalizer  # noqa: E402
from broadcaster.textnorm.config import TextnormConfig  # noqa: E402
from broadcaster.tts import CLOUD_ENGINES, EngineChain, TtsConfig, build_engine  # noqa: E402

TEXT_FILE = ROOT / "bench" / "data" / "intelligibility.txt"
# How long to wait for a cloud endpoint to accept a TCP connection before calling it offline.
REACH_TIMEOUT_S = 5.0


def words(text: str) -> list[str]:
    """Lower-case words, punctuation stripped (letters with diacritics and digits kept)."""
    return re.findall(r"\w+", text.lower())


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance over words (substitution, deletion, insertion each cost 1)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def load_asr():  # type: ignore[no-untyped-def]
    try:
        from vietasr import Pipeline

        return Pipeline.preset("transcribe")
    except Exception as exc:  # report any failure of the recognizer plainly
        print(f"vietasr could not be loaded: {exc.__class__.__name__}: {exc}")
        print("Install it with: .venv/bin/pip install viet-asr==0.1.0.dev11")
        return None


def to_asr_wav(source: Path, wav: Path) -> None:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(source),
         "-ac", "1", "-ar", "16000", "-sample_fmt", "s16", str(wav)],
        check=True, timeout=120,
    )  # fmt: skip


def reachable(url: str, timeout_s: float = REACH_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the URL's host opens in time (name lookup included)."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    result: list[bool] = []

    def attempt() -> None:
        try:
            socket.create_connection((parts.hostname or "", port), timeout=timeout_s).close()
            result.append(True)
        except OSError:
            result.append(False)

    probe = threading.Thread(target=attempt, daemon=True)  # getaddrinfo has no timeout of its own
    probe.start()
    probe.join(timeout_s + 1)
    return bool(result and result[0])


def cloud_configs() -> list[tuple[str, TtsConfig]]:
    """The cloud engines with a key and a reachable endpoint; prints why the others are skipped."""
    try:
        tts = load_settings().tts
    except SettingsError as exc:
        print(f"cloud engines: not measurable: {exc}")
        return []
    out = []
    for name in CLOUD_ENGINES:
        engine = build_engine(name, tts)
        if not engine.available():
            print(f"{name}: not measurable offline: no key")
            continue
        url = getattr(engine, "url", None) or getattr(tts, name.replace("-", "_")).url
        if not reachable(url):
            print(
                f"{name}: not measurable offline: no network ({urllib.parse.urlsplit(url).hostname} unreachable)"
            )
            continue
        out.append((name, tts.model_copy(update={"order": [name]})))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--with-gtts", action="store_true", help="also measure gTTS (needs the network)")
    parser.add_argument("--piper-voice", type=Path, help="a Vietnamese piper voice .onnx to measure")
    parser.add_argument("--details", action="store_true", help="print every transcript")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    sentences = [line.strip() for line in TEXT_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]
    normalizer = Normalizer.from_config(TextnormConfig())
    references = [normalizer.normalize(s) for s in sentences]

    configs: list[tuple[str, TtsConfig]] = [("espeak-ng", TtsConfig(order=["espeak-ng"]))]
    if args.with_gtts:
        configs.insert(0, ("gtts", TtsConfig(order=["gtts"])))
    else:
        print("gtts: skipped (online engine; no network here; --with-gtts to include it)")
    if args.piper_voice:
        configs.append(("piper", TtsConfig(order=["piper"], piper={"voices": [args.piper_voice]})))
    else:
        print("piper: skipped (no Vietnamese piper voice installed; --piper-voice FILE.onnx to include one)")
    configs.extend(cloud_configs())

    asr = load_asr()
    if asr is None:
        return 1

    rows = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-intel-") as tmp:
        for name, tts in configs:
            engine = build_engine(name, tts)
            if not engine.available():
                print(f"{name}: skipped (not available here)")
                continue
            speech = SpeechService(
                EngineChain([engine], call_timeout_s=120, cooldown_s=0),
                AudioStore(Path(tmp) / name, 1 << 30),
                AudioConfig(),
                normalizer=normalizer,
            )
            conditions = (
                ("with normalization", "pipeline"),
                ("without normalization", "pipeline-raw-text"),
                ("with normalization, raw engine WAV (no pauses, mastering or MP3)", "engine"),
            )
            for label, mode in conditions:
                errors = total = 0
                try:
                    for index, (sentence, reference) in enumerate(zip(sentences, references, strict=True)):
                        wav = Path(tmp) / f"{name}-{index}.wav"
                        if mode == "engine":
                            clip = engine.synthesize(reference)
                            source = Path(tmp) / f"{name}-{index}-engine.{clip.format}"
                            source.write_bytes(clip.data)
                        else:
                            result = speech.render(
                                sentence,
                                chime=False,
                                strict=True,
                                engine=name,
                                normalized=None if mode == "pipeline" else sentence,
                            )
                            source = result.path
                        to_asr_wav(source, wav)
                        hypothesis = asr.transcribe(str(wav)).text
                        ref_words = words(reference)
                        errors += edit_distance(ref_words, words(hypothesis))
                        total += len(ref_words)
                        if args.details:
                            print(f"[{name}, {label}] ref: {' '.join(ref_words)}")
                            print(f"[{name}, {label}] asr: {hypothesis}")
                except SpeechError as exc:
                    print(f"{name}: failed ({exc})")
                    break
                except Exception as exc:  # the recognizer failing mid-way is reported, not hidden
                    print(f"vietasr failed while transcribing: {exc.__class__.__name__}: {exc}")
                    return 1
                rows.append((name, label, errors, total))

    print()
    print(f"viet-asr 0.1.0.dev11 (preset 'transcribe'), {len(sentences)} announcements, "
          f"{sum(len(words(r)) for r in references)} reference words; {time.perf_counter() - started:.0f} s")  # fmt: skip
    print()
    print("| engine | text fed to the engine | word errors / reference words | WER |")
    print("|---|---|---:|---:|")
    for name, label, errors, total in rows:
        print(f"| {name} | {label} | {errors} / {total} | {100 * errors / total:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Broadcast rendering: pieces and pauses, chime, programs, mastering to -16 LUFS / -1.5 dBTP
(measured independently with ffmpeg), uploaded recordings."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import pytest

from broadcaster.audio import render
from broadcaster.audio.chime import chime_pcm16
from broadcaster.audio.config import AudioConfig
from broadcaster.audio.loudness import AudioError, decode_to_wav, measure
from broadcaster.audio.script import Pause, Piece, split_pieces
from broadcaster.tts.base import AudioClip
from broadcaster.tts.espeak import EspeakEngine
from tests.fakes import tone_pcm16
from tests.fixtures_speech import audio_facts, make_audio

# --- pieces ------------------------------------------------------------------------------------


def test_pieces_carry_the_pause_of_their_punctuation() -> None:
    text = "xin chào bà con, hôm nay; ủy ban: thông báo. lịch tiêm!\n\ncó gì thắc mắc? hết"
    assert split_pieces(text) == [
        Piece("xin chào bà con,", Pause.CLAUSE),
        Piece("hôm nay;", Pause.CLAUSE),
        Piece("ủy ban:", Pause.CLAUSE),
        Piece("thông báo.", Pause.SENTENCE),
        Piece("lịch tiêm!", Pause.PARAGRAPH),
        Piece("có gì thắc mắc?", Pause.SENTENCE),
        Piece("hết", Pause.NONE),
    ]


def test_pieces_merge_mark_runs_and_keep_numbers_whole() -> None:
    assert split_pieces("giá 3,5 đồng và 1.250 tạ... hết.") == [
        Piece("giá 3,5 đồng và 1.250 tạ.", Pause.SENTENCE),
        Piece("hết.", Pause.NONE),
    ]
    assert split_pieces("một,\nhai") == [Piece("một,", Pause.PARAGRAPH), Piece("hai", Pause.NONE)]
    assert split_pieces("  ... ; \n ") == []
    assert split_pieces("một   câu\tdài") == [Piece("một câu dài", Pause.NONE)]


# --- chime -------------------------------------------------------------------------------------


def _zero_crossing_hz(pcm: bytes, rate: int, start_s: float, length_s: float) -> float:
    import array

    samples = array.array("h", pcm)[int(start_s * rate) : int((start_s + length_s) * rate)]
    crossings = sum(1 for x, y in zip(samples, samples[1:], strict=False) if (x < 0) != (y < 0))
    return crossings / 2 / length_s


def test_chime_rises_before_and_falls_after() -> None:
    rate = 24_000
    rising, falling = chime_pcm16(rate, True), chime_pcm16(rate, False)
    assert len(rising) == len(falling)
    assert 1.5 < len(rising) / 2 / rate < 2.0
    # The first note of the rising chime is C5 (523 Hz), of the falling one G5 (784 Hz).
    assert abs(_zero_crossing_hz(rising, rate, 0.02, 0.2) - 523) < 30
    assert abs(_zero_crossing_hz(falling, rate, 0.02, 0.2) - 784) < 40
    # It ends in silence (no click).
    import array

    assert max(abs(s) for s in array.array("h", rising)[-20:]) < 50


# --- program and mastering ----------------------------------------------------------------------


def tone_clip(seconds: float, rate: int = 16_000) -> AudioClip:
    return AudioClip.from_pcm16(tone_pcm16(seconds, rate), rate)


def test_speech_track_trims_engine_silence_and_adds_pauses() -> None:
    rate = 16_000
    silence = b"\x00\x00" * int(0.5 * rate)
    padded = AudioClip.from_pcm16(silence + tone_pcm16(1.0, rate) + silence, rate)
    track = render.speech_track([(padded, 600), (padded, 0)])
    # Two 1 s tones (each keeps 20 ms of fade either side) and one 600 ms pause.
    assert track.duration_s == pytest.approx(2.0 + 0.6, abs=0.1)
    assert track.sample_rate == rate


def test_speech_track_rejects_pure_silence() -> None:
    silent = AudioClip.from_pcm16(b"\x00\x00" * 8000, 16_000)
    with pytest.raises(AudioError, match="silence"):
        render.speech_track([(silent, 0)])


def test_program_adds_chime_gaps_and_repeats() -> None:
    config = AudioConfig(edge_silence_ms=300, chime_gap_ms=500, repeat_gap_ms=1000)
    body = render.speech_track([(tone_clip(2.0), 0)])
    connector = render.speech_track([(tone_clip(0.8), 0)])
    plain = render.program(body, config, chime=False)
    assert plain.duration_s == pytest.approx(2.0 + 0.6, abs=0.05)
    twice = render.program(body, config, chime=False, repeat=2, connector=connector)
    assert twice.duration_s == pytest.approx(0.6 + 2.0 + 1.0 + 0.8 + 1.0 + 2.0, abs=0.1)
    silent_gap = render.program(body, config, chime=False, repeat=2, connector=None)
    assert silent_gap.duration_s == pytest.approx(0.6 + 2.0 + 1.0 + 2.0, abs=0.05)
    chimed = render.program(body, config, chime=True)
    chime_s = len(chime_pcm16(body.sample_rate)) / 2 / body.sample_rate
    assert chimed.duration_s == pytest.approx(plain.duration_s + 2 * (chime_s + 0.5), abs=0.05)


@pytest.mark.integration
def test_mastered_espeak_program_meets_broadcast_targets(tmp_path: Path) -> None:
    config = AudioConfig()
    engine = EspeakEngine()
    parts = [
        (engine.synthesize("ủy ban nhân dân xã thông báo,"), config.clause_pause_ms),
        (engine.synthesize("lịch tiêm phòng cho đàn gia súc."), 0),
    ]
    program = render.program(render.speech_track(parts), config, chime=True)
    mastered = render.master_track(program, config)
    out = tmp_path / "out.mp3"
    out.write_bytes(mastered.mp3)
    facts = audio_facts(out)
    assert facts.codec == "mp3" and facts.channels == 1 and facts.sample_rate == 24_000
    assert abs(facts.bit_rate - 48_000) <= 2_000
    assert abs(facts.integrated_lufs - (-16.0)) <= 1.0
    assert facts.true_peak_dbtp <= -1.5
    assert facts.duration_s == pytest.approx(program.duration_s, abs=0.15)
    # What the service reports is what an independent measurement finds.
    assert mastered.loudness.integrated_lufs == pytest.approx(facts.integrated_lufs, abs=0.1)
    assert mastered.loudness.true_peak_dbtp == pytest.approx(facts.true_peak_dbtp, abs=0.1)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("lufs", "peak", "kbps", "rate"), [(-20.0, -3.0, 64, 22_050), (-14.0, -1.0, 32, 16_000)]
)
def test_mastering_follows_configured_targets(
    tmp_path: Path, lufs: float, peak: float, kbps: int, rate: int
) -> None:
    config = AudioConfig(target_lufs=lufs, true_peak_dbtp=peak, bitrate_kbps=kbps, sample_rate=rate)
    quiet = AudioClip.from_pcm16(tone_pcm16(3.0, 16_000, amp=0.05), 16_000)
    mastered = render.master_track(
        render.program(render.speech_track([(quiet, 0)]), config, chime=False), config
    )
    out = tmp_path / "out.mp3"
    out.write_bytes(mastered.mp3)
    facts = audio_facts(out)
    assert abs(facts.integrated_lufs - lufs) <= 1.0
    assert facts.true_peak_dbtp <= peak
    assert facts.sample_rate == rate and facts.channels == 1
    assert abs(facts.bit_rate - kbps * 1000) <= 2_000


@pytest.mark.integration
def test_measure_agrees_with_ffmpeg(tmp_path: Path) -> None:
    path = make_audio(tmp_path / "tone.wav", seconds=2.0, volume_db=-20)
    ours, theirs = measure(path), audio_facts(path)
    assert ours.integrated_lufs == pytest.approx(theirs.integrated_lufs, abs=0.05)
    assert ours.true_peak_dbtp == pytest.approx(theirs.true_peak_dbtp, abs=0.05)
    assert ours.duration_s == pytest.approx(2.0, abs=0.05)


# --- recordings --------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("suffix", ["mp3", "wav", "ogg", "m4a"])
def test_recordings_in_common_formats_decode_to_mono(tmp_path: Path, suffix: str) -> None:
    data = make_audio(tmp_path / f"rec.{suffix}", seconds=1.5).read_bytes()
    track = render.recording_track(data, max_s=60)
    assert track.duration_s == pytest.approx(1.5, abs=0.15)
    with wave.open(io.BytesIO(track.wav_bytes())) as wav:
        assert wav.getnchannels() == 1 and wav.getsampwidth() == 2


@pytest.mark.integration
def test_bad_recordings_are_rejected_with_a_reason(tmp_path: Path) -> None:
    cases = {
        "not_audio": b"%PDF-1.4 this is a document, not a recording" * 10,
        "silent": make_audio(tmp_path / "silent.wav", seconds=2.0, freq=0).read_bytes(),
        "too_long": make_audio(tmp_path / "long.mp3", seconds=4.0).read_bytes(),
        "too_short": make_audio(tmp_path / "short.wav", seconds=0.2).read_bytes(),
    }
    for code, data in cases.items():
        with pytest.raises(render.RecordingRejected) as err:
            render.recording_track(data, max_s=3.0)
        assert err.value.code == code
    with pytest.raises(AudioError, match="empty"):
        decode_to_wav(b"")


@pytest.mark.integration
def test_mastering_refuses_a_silent_program() -> None:
    from broadcaster.audio.loudness import master

    silent = AudioClip.from_pcm16(b"\x00\x00" * 16_000 * 2, 16_000)
    with pytest.raises(AudioError, match="silent or too short"):
        master(silent.data, in_rate=16_000)

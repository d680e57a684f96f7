"""The speech service with fake engines (real store, real ffmpeg mastering): bad input, cache,
fallback, time-outs, concurrency, repeats, recordings."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from pathlib import Path

import pytest

from broadcaster.speech import RECORDING_ENGINE, SpeechError
from tests.fakes import FailingEngine, FakeEngine, FakeNormalizer, GarbledEngine, HangingEngine
from tests.fixtures_speech import audio_facts, make_audio

TEXT = "Xin chào bà con."


def wait_until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "\n\t \n"])
def test_empty_text_is_refused_before_any_synthesis(make_speech, text: str) -> None:
    engine = FakeEngine("espeak-ng")
    speech = make_speech([engine])
    with pytest.raises(SpeechError) as err:
        speech.render(text)
    assert "trống" in err.value.message_vi and "empty" in err.value.message_en
    assert engine.call_count == 0
    assert speech.store.keys() == []


def test_text_over_the_limit_is_refused(make_speech) -> None:
    engine = FakeEngine("espeak-ng")
    speech = make_speech([engine], max_chars=50)
    with pytest.raises(SpeechError, match="quá dài: 51 ký tự, tối đa 50"):
        speech.render("a" * 51)
    assert engine.call_count == 0


def test_bad_options_are_refused(make_speech) -> None:
    speech = make_speech(
        [FakeEngine("gtts", voices=("vi",)), FakeEngine("espeak-ng", voices=("vi", "vi-south"))]
    )
    with pytest.raises(SpeechError, match="Số lần đọc phải từ 1 đến 5"):
        speech.render(TEXT, repeat=0)
    with pytest.raises(SpeechError, match="Số lần đọc"):
        speech.render(TEXT, repeat=6)
    with pytest.raises(SpeechError, match="Không có giọng đọc «festival»"):
        speech.render(TEXT, engine="festival")
    with pytest.raises(SpeechError, match="không có kiểu giọng «vi-south»"):
        speech.render(TEXT, engine="gtts", voice="vi-south")
    with pytest.raises(SpeechError, match="Không có kiểu giọng «klingon»"):
        speech.render(TEXT, voice="klingon")
    with pytest.raises(SpeechError, match="không có chữ nào đọc được"):
        speech.render("!!! ...")


def test_normalizer_failure_becomes_a_speech_error(make_speech) -> None:
    from broadcaster.textnorm.errors import NormalizationError

    class Refusing(FakeNormalizer):
        def normalize(self, text: str) -> str:
            raise NormalizationError("Văn bản không đọc được (unreadable)")

    speech = make_speech([FakeEngine("espeak-ng")], normalizer=Refusing())
    with pytest.raises(SpeechError) as err:
        speech.render(TEXT)
    assert err.value.message_vi == "Văn bản không đọc được"  # the officer reads no English
    assert "unreadable" in err.value.message_en


# --- cache -------------------------------------------------------------------------------------


def test_second_render_is_a_cache_hit_without_synthesis(make_speech) -> None:
    engine = FakeEngine("espeak-ng")
    speech = make_speech([engine])
    first = speech.render(TEXT)
    assert not first.cache_hit
    assert engine.call_count == 1
    assert first.engine == "espeak-ng" and first.voice == "giong-a"
    assert first.text == TEXT and first.normalized_text == "xin chào bà con."
    assert first.path == speech.store.path(first.key) and first.path.is_file()
    assert first.sha256 == hashlib.sha256(first.path.read_bytes()).hexdigest()
    assert abs(first.loudness_lufs + 16) <= 1.0 and first.true_peak_dbtp <= -1.5
    meta = json.loads(speech.store.meta_path(first.key).read_text(encoding="utf-8"))
    assert meta["text"] == TEXT and meta["normalized_text"] == "xin chào bà con."
    assert meta["engine"] == "espeak-ng" and meta["voice"] == "giong-a"
    assert meta["sha256"] == first.sha256 and meta["size"] == first.path.stat().st_size
    assert {"duration_s", "loudness_lufs", "true_peak_dbtp", "created", "settings"} <= meta.keys()

    second = speech.render(TEXT)
    assert second.cache_hit
    assert engine.call_count == 1
    assert (second.key, second.sha256, second.duration_s) == (first.key, first.sha256, first.duration_s)


def test_key_depends_on_voice_text_and_settings(make_speech) -> None:
    engine = FakeEngine("espeak-ng")
    speech = make_speech([engine])
    base = speech.render(TEXT, chime=False)
    keys = {
        base.key,
        speech.render(TEXT, chime=False, voice="giong-b").key,
        speech.render(TEXT, chime=True).key,
        speech.render(TEXT, chime=False, repeat=2).key,
        speech.render("Xin chào cả nhà.", chime=False).key,
    }
    assert len(keys) == 5
    # Raw texts that normalize alike share audio.
    assert speech.render("XIN CHÀO BÀ CON.", chime=False).key == base.key


def test_nfd_input_gives_the_same_audio_as_nfc(make_speech) -> None:
    import unicodedata

    speech = make_speech([FakeEngine("espeak-ng")])
    nfc = speech.render(TEXT)
    nfd = speech.render(unicodedata.normalize("NFD", TEXT))
    assert nfd.key == nfc.key and nfd.cache_hit and nfd.text == TEXT


def test_a_stored_render_of_an_earlier_engine_wins(make_speech) -> None:
    gtts, espeak = FakeEngine("gtts", voices=("vi",)), FakeEngine("espeak-ng", voices=("vi",))
    speech = make_speech([gtts, espeak])
    by_espeak = speech.render(TEXT, engine="espeak-ng", strict=True)
    assert by_espeak.engine == "espeak-ng" and gtts.call_count == 0
    # Only espeak-ng's render is stored: it is used, nothing is synthesized.
    hit = speech.render(TEXT)
    assert hit.cache_hit and hit.engine == "espeak-ng" and gtts.call_count == 0 and espeak.call_count == 1
    by_gtts = speech.render(TEXT, engine="gtts", strict=True)
    assert not by_gtts.cache_hit and by_gtts.engine == "gtts"
    # Both stored: the earlier engine of the configured order wins.
    again = speech.render(TEXT)
    assert again.cache_hit and again.engine == "gtts"
    assert (gtts.call_count, espeak.call_count) == (1, 1)


def test_concurrent_renders_of_one_text_synthesize_once(make_speech) -> None:
    gate = threading.Event()
    engine = FakeEngine("espeak-ng", gate=gate)
    speech = make_speech([engine])
    results, errors = [], []

    def worker() -> None:
        try:
            results.append(speech.render(TEXT))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for t in threads:
        t.start()
    assert engine.started.wait(10)
    # All five are inside the store, waiting on the one build of this key.
    wait_until(lambda: any(users == 5 for _, users in list(speech.store._key_locks.values())))
    gate.set()
    for t in threads:
        t.join(30)
    assert not errors
    assert engine.call_count == 1
    assert sorted(r.cache_hit for r in results) == [False, True, True, True, True]
    assert len({r.key for r in results}) == 1


# --- fallback ----------------------------------------------------------------------------------


def test_failing_engine_logs_its_reason_and_the_next_is_used(make_speech, caplog) -> None:
    gtts, espeak = FailingEngine("gtts"), FakeEngine("espeak-ng")
    speech = make_speech([gtts, espeak])
    with caplog.at_level(logging.WARNING):
        result = speech.render(TEXT)
    assert result.engine == "espeak-ng"
    assert speech.store.meta(result.key)["engine"] == "espeak-ng"
    assert any("gtts" in r.getMessage() and "network unreachable" in r.getMessage() for r in caplog.records)
    # Circuit breaker: the next render does not wait on gTTS again.
    speech.render("Lịch tiêm phòng.")
    assert gtts.call_count == 1
    assert [e["cooling_down"] for e in speech.engines()] == ["gtts: network unreachable", None]


def test_cooling_engine_is_still_tried_when_nothing_else_works(make_speech) -> None:
    flaky = FailingEngine("gtts")
    speech = make_speech([flaky, FailingEngine("espeak-ng")])
    with pytest.raises(SpeechError):
        speech.render(TEXT)
    # gtts recovers; it is in cool-down but is the only hope, so it is tried and then trusted again.
    flaky.error = None
    result = speech.render(TEXT)
    assert result.engine == "gtts"
    assert speech.chain.cooling("gtts") is None


def test_hanging_engine_times_out_and_the_next_is_used(make_speech, caplog) -> None:
    hanging, espeak = HangingEngine("gtts"), FakeEngine("espeak-ng")
    speech = make_speech([hanging, espeak], call_timeout_s=0.3)
    with caplog.at_level(logging.WARNING):
        result = speech.render(TEXT)
    assert hanging.started.is_set()
    assert result.engine == "espeak-ng"
    assert any("did not answer within 0.3 s" in r.getMessage() for r in caplog.records)


def test_engine_returning_garbage_is_reported_and_the_next_is_used(make_speech) -> None:
    garbled, espeak = GarbledEngine("piper"), FakeEngine("espeak-ng")
    speech = make_speech([garbled, espeak])
    assert speech.render(TEXT).engine == "espeak-ng"
    assert garbled.call_count == 1
    assert speech.store.keys() == [speech.render(TEXT).key]  # nothing stored for the garbled engine
    with pytest.raises(SpeechError) as err:
        speech.render(TEXT, engine="piper", strict=True)
    assert err.value.reasons["piper"].startswith("rendering failed: unreadable WAV audio")


def test_all_engines_failing_lists_every_reason(make_speech) -> None:
    speech = make_speech(
        [FailingEngine("gtts"), FakeEngine("piper", available=False), FailingEngine("espeak-ng")]
    )
    with pytest.raises(SpeechError) as err:
        speech.render(TEXT)
    # The officer reads what to do, in Vietnamese only; the engines' reasons are for the log.
    assert "không giọng đọc nào dùng được" in err.value.message_vi
    assert not any(name in err.value.message_vi for name in ("gtts", "piper", "espeak", "network"))
    assert err.value.reasons == {
        "gtts": "gtts: network unreachable",
        "espeak-ng": "espeak-ng: network unreachable",
        "piper": "not available here",
    }
    assert "gtts" in str(err.value) and "piper" in str(err.value) and "espeak-ng" in str(err.value)
    assert speech.store.keys() == []


def test_requested_engine_goes_first_and_strict_allows_no_other(make_speech) -> None:
    gtts, espeak = FakeEngine("gtts", voices=("vi",)), FailingEngine("espeak-ng", voices=("vi",))
    speech = make_speech([gtts, espeak])
    assert speech.render(TEXT, engine="espeak-ng").engine == "gtts"
    assert espeak.call_count == 1
    with pytest.raises(SpeechError) as err:
        speech.render("Câu khác.", engine="espeak-ng", strict=True)
    assert set(err.value.reasons) == {"espeak-ng"}


def test_voice_alone_picks_the_engine_that_offers_it(make_speech) -> None:
    gtts, espeak = FakeEngine("gtts", voices=("vi",)), FakeEngine("espeak-ng", voices=("vi", "vi-south"))
    speech = make_speech([gtts, espeak])
    result = speech.render(TEXT, voice="vi-south")
    assert (result.engine, result.voice) == ("espeak-ng", "vi-south")
    assert espeak.calls == [("xin chào bà con.", "vi-south")]


# --- text to pieces ----------------------------------------------------------------------------


def test_each_clause_is_synthesized_and_lexicon_reaches_the_normalizer(make_speech) -> None:
    engine = FakeEngine("espeak-ng")
    speech = make_speech([engine])
    result = speech.render("UBND xã thông báo, lịch tiêm phòng.\nHết.", lexicon={"UBND": "Ủy ban nhân dân"})
    assert result.normalized_text == "ủy ban nhân dân xã thông báo, lịch tiêm phòng.\nhết."
    assert [text for text, _ in engine.calls] == ["ủy ban nhân dân xã thông báo,", "lịch tiêm phòng.", "hết."]


def test_edited_spoken_text_bypasses_the_normalizer(make_speech) -> None:
    normalizer = FakeNormalizer()
    engine = FakeEngine("espeak-ng")
    speech = make_speech([engine], normalizer=normalizer)
    result = speech.render("UBND xã 7h30", normalized="ủy ban nhân dân xã, bảy giờ ba mươi\x07.")
    assert normalizer.calls == 0
    assert result.normalized_text == "ủy ban nhân dân xã, bảy giờ ba mươi ."
    assert [text for text, _ in engine.calls] == ["ủy ban nhân dân xã,", "bảy giờ ba mươi."]


def test_pauses_follow_punctuation(make_speech) -> None:
    engine = FakeEngine("espeak-ng", per_char_s=0.0)  # every piece is 0.2 s of tone
    speech = make_speech([engine], clause_pause_ms=300, sentence_pause_ms=700, paragraph_pause_ms=1500)
    one = speech.render("a b c", chime=False).duration_s
    clause = speech.render("a, b", chime=False).duration_s
    sentence = speech.render("a. b", chime=False).duration_s
    paragraph = speech.render("a\nb", chime=False).duration_s
    assert clause - one == pytest.approx(0.2 + 0.3, abs=0.08)
    assert sentence - one == pytest.approx(0.2 + 0.7, abs=0.08)
    assert paragraph - one == pytest.approx(0.2 + 1.5, abs=0.08)


def test_repeat_twice_roughly_doubles_the_duration(make_speech) -> None:
    engine = FakeEngine("espeak-ng")
    speech = make_speech([engine], repeat_connector="", repeat_gap_ms=1000, edge_silence_ms=300)
    once = speech.render(TEXT, chime=False)
    twice = speech.render(TEXT, chime=False, repeat=2)
    assert twice.duration_s == pytest.approx(2 * once.duration_s - 0.6 + 1.0, abs=0.1)
    assert engine.call_count == 2  # the repeat reuses the synthesized speech


def test_spoken_connector_between_repeats(make_speech) -> None:
    engine = FakeEngine("espeak-ng")
    speech = make_speech([engine], repeat_connector="Xin nhắc lại.")
    speech.render(TEXT, repeat=3, chime=False)
    assert [text for text, _ in engine.calls] == ["xin chào bà con.", "xin nhắc lại."]


# --- recordings --------------------------------------------------------------------------------


@pytest.mark.integration
def test_recording_is_made_broadcast_ready(make_speech, tmp_path: Path) -> None:
    speech = make_speech([FakeEngine("espeak-ng")])
    data = make_audio(tmp_path / "thong-bao.m4a", seconds=2.0, volume_db=-30).read_bytes()
    result = speech.import_recording(data, "C:\\Users\\cán bộ\\thông báo.m4a")
    assert result.engine == RECORDING_ENGINE and not result.cache_hit
    facts = audio_facts(result.path)
    assert facts.codec == "mp3" and facts.channels == 1
    assert abs(facts.integrated_lufs + 16) <= 1.0 and facts.true_peak_dbtp <= -1.5
    assert facts.duration_s > 2.0 + 2 * 1.7  # the recording framed by the chimes
    meta = speech.store.meta(result.key)
    assert meta["source_sha256"] == hashlib.sha256(data).hexdigest()
    assert meta["engine"] == RECORDING_ENGINE
    assert speech.import_recording(data, "again.m4a").cache_hit
    no_chime = speech.import_recording(data, "x.m4a", chime=False)
    assert not no_chime.cache_hit and no_chime.duration_s < facts.duration_s - 3


@pytest.mark.integration
def test_bad_recordings_get_clear_errors(make_speech, tmp_path: Path) -> None:
    speech = make_speech([FakeEngine("espeak-ng")], max_upload_bytes=50_000, max_recording_s=3.0)
    with pytest.raises(SpeechError, match="Tệp ghi âm trống"):
        speech.import_recording(b"", "x.mp3")
    with pytest.raises(SpeechError, match="quá lớn"):
        speech.import_recording(b"x" * 50_001, "x.mp3")
    with pytest.raises(SpeechError, match="không phải là âm thanh"):
        speech.import_recording(b"<html>not audio</html>" * 20, "x.mp3")
    with pytest.raises(SpeechError, match="không có tiếng"):
        speech.import_recording(make_audio(tmp_path / "s.wav", seconds=1.0, freq=0).read_bytes(), "s.wav")
    with pytest.raises(SpeechError, match="quá dài"):
        speech.import_recording(make_audio(tmp_path / "l.mp3", seconds=5.0).read_bytes(), "l.mp3")
    assert speech.store.keys() == []


# --- the rest of the API -----------------------------------------------------------------------


def test_engines_describe_themselves_for_the_form(make_speech) -> None:
    speech = make_speech([FakeEngine("gtts", voices=("vi",)), FakeEngine("piper", available=False)])
    assert speech.engines() == [
        {
            "name": "gtts",
            "label": "Google (cần Internet)",
            "available": True,
            "voices": ["vi"],
            "default_voice": "vi",
            "cooling_down": None,
            "voice_info": [],
            "status": {
                "name": "gtts",
                "label_vi": "Google Dịch",
                "available": True,
                "skipped": False,
                "until": None,
                "until_vi": None,
                "kind": None,
                "reason_vi": None,
                "reason": None,
            },
        },
        {
            "name": "piper",
            "label": "Piper (ngoại tuyến)",
            "available": False,
            "voices": [],
            "default_voice": "",
            "cooling_down": None,
            "voice_info": [],
            "status": {
                "name": "piper",
                "label_vi": "Piper",
                "available": False,
                "skipped": True,
                "until": None,
                "until_vi": None,
                "kind": "not_installed",
                "reason_vi": "Piper chưa sẵn sàng trên máy này",
                "reason": None,
            },
        },
    ]


def test_copy_to_writes_the_same_bytes(make_speech, tmp_path: Path) -> None:
    speech = make_speech([FakeEngine("espeak-ng")])
    result = speech.render(TEXT)
    dest = tmp_path / "out" / "nested" / "thong-bao.mp3"
    result.copy_to(dest)
    assert dest.read_bytes() == result.path.read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == ["thong-bao.mp3"]

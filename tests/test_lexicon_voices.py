"""Pronunciation the officer can fix (issue 12, item 4): lexicon entries per engine and voice, and
phonetic hints. Scope resolution, the hint's validation, the SSML and espeak-ng input built from
it, the Google Cloud and Azure requests checked by the local provider stub, the speech service
normalizing per engine attempt (a fallback reads its own entries), the store and the migration."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from broadcaster.db import make_engine, make_session_factory, migrate
from broadcaster.lexicon import Lexicon, LexiconError
from broadcaster.pronunciation import Reading, Readings, hint_error
from broadcaster.tts import TtsConfig, build_engine
from broadcaster.tts.azure import ssml
from broadcaster.tts.base import AudioClip
from broadcaster.tts.espeak import EspeakEngine
from broadcaster.tts.phonemes import espeak_text, split_marked, ssml_body
from tests.fakes import FakeNormalizer
from tests.fakes.engines import FailingEngine, FakeEngine
from tests.stubs.cloud_tts import SSML_NS, CloudTtsStub

KEY = "sk-test-4d2f8a"
IPA_COVID = "koː˧ vit˧˥"

# UBND: read in full everywhere, as letters on Google Cloud, and shorter on one espeak-ng voice.
LEXICON = Readings(
    [
        Reading("UBND", "ủy ban nhân dân"),
        Reading("UBND", "u bê en đê", engine="google-cloud"),
        Reading("UBND", "ủy ban", engine="espeak-ng", voice="vi-vn-x-south"),
        Reading("COVID", "cô vít", hint=IPA_COVID),
        Reading("HTX", "hợp tác xã", engine="espeak-ng", hint="h'Op t'ak s'a"),
    ]
)


# --- scope resolution -----------------------------------------------------------------------------


def test_the_most_specific_entry_wins_for_the_engine_and_voice_that_read() -> None:
    assert LEXICON.for_engine("gtts", "vi")["UBND"] == "ủy ban nhân dân"
    assert LEXICON.for_engine("google-cloud", "vi-VN-Wavenet-A")["UBND"] == "u bê en đê"
    assert LEXICON.for_engine("espeak-ng", "vi")["UBND"] == "ủy ban nhân dân"
    assert LEXICON.for_engine("espeak-ng", "vi-vn-x-south")["UBND"] == "ủy ban"
    # An engine's entry is nobody else's.
    assert "HTX" not in LEXICON.for_engine("gtts", "vi") and LEXICON.for_engine("espeak-ng")["HTX"]
    # As a plain mapping (what the text preview shows): the entries for every engine.
    assert dict(LEXICON) == {"UBND": "ủy ban nhân dân", "COVID": "cô vít"}
    assert LEXICON.scoped and not Readings.plain({"A": "a"}).scoped


def test_hints_go_to_the_engines_that_read_their_alphabet() -> None:
    # IPA (an entry for every engine) reaches the SSML engines, keyed by the reading as spoken.
    assert LEXICON.hints("google-cloud", "vi-VN-Wavenet-A", "ipa") == {"cô vít": IPA_COVID}
    assert LEXICON.hints("azure", "vi-VN-HoaiMyNeural", "ipa") == {"cô vít": IPA_COVID}
    # espeak-ng reads only the hints written for it, in its own notation.
    assert LEXICON.hints("espeak-ng", "vi", "espeak") == {"hợp tác xã": "h'Op t'ak s'a"}


@pytest.mark.parametrize(
    ("hint", "engine", "wrong"),
    [
        ("koː˧ vit˧˥", "", False),
        ("h'Op t'ak", "espeak-ng", False),
        ('a"><audio src="x', "", True),
        ("a&b", "google-cloud", True),
        ("[[x]]", "espeak-ng", True),
        ("x" * 201, "", True),
        ("a\nb", "", True),
        ("kɔ", "espeak-ng", True),  # IPA on an espeak-ng entry: it would read it as letters
    ],
)
def test_a_hint_is_validated(hint: str, engine: str, wrong: bool) -> None:
    problem = hint_error(hint, engine)
    assert (problem is not None) == wrong
    if problem:
        assert "Gợi ý phát âm" in problem


# --- what the engines receive -----------------------------------------------------------------------


def test_ssml_marks_whole_words_and_escapes_everything() -> None:
    hints = {"an": "aːn", "cô vít": 'k"o'}
    body = ssml_body("Ban an toàn: 5 < 7 & Cô  vít", hints)
    assert body.startswith('Ban <phoneme alphabet="ipa" ph="aːn">an</phoneme> toàn: 5 &lt; 7 &amp; ')
    root = ET.fromstring(f"<speak>{body}</speak>")  # well-formed, the quote kept inside ph
    assert [(p.get("ph"), p.text) for p in root] == [("aːn", "an"), ('k"o', "Cô  vít")]
    assert split_marked("không có gì", hints) == [("không có gì", None)]


def test_espeak_reads_a_hint_as_its_phoneme_input_and_nothing_else() -> None:
    assert espeak_text("hợp tác xã [[x]] họp", {"hợp tác xã": "h'Op"}) == "[[h'Op]]   x   họp"


def test_espeak_speaks_the_hint(tmp_path: Path) -> None:
    engine = EspeakEngine()
    plain = engine.synthesize("hợp tác xã")
    hinted = engine.synthesize("hợp tác xã", hints={"hợp tác xã": "h'el@U w'3:ld"})
    assert isinstance(hinted, AudioClip) and hinted.data != plain.data


@pytest.fixture(scope="module")
def stub(tone_mp3: bytes) -> Iterator[CloudTtsStub]:
    server = CloudTtsStub(audio=tone_mp3, key=KEY).start()
    try:
        yield server
    finally:
        server.stop()


def _config(stub: CloudTtsStub, *names: str) -> TtsConfig:
    sections = {
        n.replace("-", "_"): {"url": stub.endpoint(n), "api_key": KEY, "timeout_s": 5.0} for n in names
    }
    return TtsConfig(order=[*names, "espeak-ng"], **sections)


def test_google_gets_ssml_with_the_ipa_hint_and_plain_text_without_one(stub: CloudTtsStub) -> None:
    stub.mode = "ok"
    google = build_engine("google-cloud", _config(stub, "google-cloud"))
    google.synthesize("Phòng chống cô vít & sốt xuất huyết", "vi-VN-Wavenet-A", hints={"cô vít": IPA_COVID})
    sent = stub.last("google-cloud").json()
    assert sent["input"] == {
        "ssml": f'<speak>Phòng chống <phoneme alphabet="ipa" ph="{IPA_COVID}">cô vít</phoneme> '
        "&amp; sốt xuất huyết</speak>"
    }
    assert sent["voice"] == {"languageCode": "vi-VN", "name": "vi-VN-Wavenet-A"}
    google.synthesize("Không có từ nào cần gợi ý", "vi-VN-Wavenet-A", hints={"cô vít": IPA_COVID})
    assert stub.last("google-cloud").json()["input"] == {"text": "Không có từ nào cần gợi ý"}
    assert stub.problems == []


def test_azure_gets_the_phoneme_inside_its_voice(stub: CloudTtsStub) -> None:
    stub.mode = "ok"
    azure = build_engine("azure", _config(stub, "azure"))
    azure.synthesize("Cô vít < 5 ca", "vi-VN-NamMinhNeural", hints={"cô vít": IPA_COVID})
    body = stub.last("azure").body.decode()
    assert body == ssml("Cô vít < 5 ca", "vi-VN-NamMinhNeural", hints={"cô vít": IPA_COVID})
    phoneme = ET.fromstring(body).find(f"{SSML_NS}voice/{SSML_NS}phoneme")
    assert phoneme is not None and phoneme.get("ph") == IPA_COVID and phoneme.text == "Cô vít"
    assert stub.problems == []


def test_a_fallback_from_google_to_espeak_reads_espeaks_entries(stub: CloudTtsStub, make_speech: Any) -> None:
    """Google Cloud fails: espeak-ng takes over with its own reading (not Google's letters) and no
    IPA; then Google answers again and reads its own entry with the hint in SSML."""
    config = _config(stub, "google-cloud")
    google, espeak = build_engine("google-cloud", config), EspeakEngine()
    speech = make_speech([google, espeak], normalizer=FakeNormalizer())
    stub.mode = "server_error"
    fell_back = speech.render("UBND chống COVID.", lexicon=LEXICON, chime=False)
    assert fell_back.engine == "espeak-ng"
    assert fell_back.normalized_text == "ủy ban nhân dân chống cô vít."
    assert "u bê en đê" in stub.last("google-cloud").json()["input"]["ssml"]  # what Google was asked
    speech.chain.reset("google-cloud")
    stub.mode = "ok"
    cloud = speech.render(
        "UBND chống COVID.", lexicon=LEXICON, chime=False, engine="google-cloud", strict=True
    )
    assert cloud.engine == "google-cloud" and cloud.normalized_text == "u bê en đê chống cô vít."
    assert f'ph="{IPA_COVID}">cô vít</phoneme>' in stub.last("google-cloud").json()["input"]["ssml"]
    assert stub.problems == []


# --- the speech service -------------------------------------------------------------------------------


class HintedEngine(FakeEngine):
    """A fake engine that takes espeak-ng hints and records them."""

    phoneme_alphabet = "espeak"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hints: list[dict[str, str]] = []

    def synthesize(
        self, text: str, voice: str | None = None, hints: Mapping[str, str] | None = None
    ) -> AudioClip:
        self.hints.append(dict(hints or {}))
        return super().synthesize(text, voice)


def test_each_engine_attempt_normalizes_with_its_own_entries(make_speech: Any) -> None:
    cloud = FailingEngine("google-cloud", voices=("vi-VN-Wavenet-A",))
    espeak = HintedEngine("espeak-ng", voices=("vi", "vi-vn-x-south"))
    speech = make_speech([cloud, espeak], normalizer=FakeNormalizer())
    result = speech.render("UBND và HTX họp.", lexicon=LEXICON, chime=False)
    assert [t for t, _ in cloud.calls] == ["u bê en đê và htx họp."]
    assert result.engine == "espeak-ng" and [t for t, _ in espeak.calls] == [
        "ủy ban nhân dân và hợp tác xã họp."
    ]
    assert espeak.hints == [{"hợp tác xã": "h'Op t'ak s'a"}]
    assert result.normalized_text == "ủy ban nhân dân và hợp tác xã họp."
    # The voice's own entry, when that voice reads.
    south = speech.render(
        "UBND họp.", lexicon=LEXICON, chime=False, engine="espeak-ng", voice="vi-vn-x-south"
    )
    assert south.normalized_text == "ủy ban họp." and espeak.calls[-1] == ("ủy ban họp.", "vi-vn-x-south")
    # Stored per engine text and hint: the same render again synthesizes nothing.
    calls = espeak.call_count
    again = speech.render("UBND và HTX họp.", lexicon=LEXICON, chime=False)
    assert again.cache_hit and again.key == result.key and espeak.call_count == calls
    # A changed hint is a different sound: a new render.
    changed = Readings([*LEXICON.entries[:4], Reading("HTX", "hợp tác xã", engine="espeak-ng", hint="h'O")])
    assert speech.render("UBND và HTX họp.", lexicon=changed, chime=False).key != result.key


class ListSink:
    """A ProgramSink that keeps what it is given."""

    rate = 16_000

    def __init__(self) -> None:
        self.pcm: list[bytes] = []
        self.closed = False

    def open(self) -> None:
        pass

    def write(self, pcm: bytes) -> None:
        self.pcm.append(pcm)

    def close(self) -> None:
        self.closed = True


def test_a_streamed_emergency_falls_back_with_the_fallbacks_entries(make_speech: Any) -> None:
    cloud = FailingEngine("google-cloud", voices=("vi-VN-Wavenet-A",))
    espeak = HintedEngine("espeak-ng", voices=("vi", "vi-vn-x-south"))
    speech = make_speech([cloud, espeak], normalizer=FakeNormalizer())
    sink = ListSink()
    result = speech.render_streamed("UBND báo cháy. HTX sơ tán.", sink=sink, lexicon=LEXICON, chime=False)
    assert sink.closed and sink.pcm
    assert cloud.calls[0][0] == "u bê en đê báo cháy."
    assert [t for t, _ in espeak.calls] == ["ủy ban nhân dân báo cháy.", "hợp tác xã sơ tán."]
    assert espeak.hints[-1] == {"hợp tác xã": "h'Op t'ak s'a"}
    assert (
        result.engine == "espeak-ng"
        and result.normalized_text == "ủy ban nhân dân báo cháy. hợp tác xã sơ tán."
    )
    # Stored under the key a normal render of espeak-ng's text would have: the next airing is a hit.
    assert speech.render("UBND báo cháy. HTX sơ tán.", lexicon=LEXICON, chime=False).key == result.key


def test_a_plain_mapping_still_applies_to_every_engine(make_speech: Any) -> None:
    engine = FakeEngine("espeak-ng")
    speech = make_speech([engine], normalizer=FakeNormalizer())
    plain = speech.render("UBND họp.", lexicon={"UBND": "ủy ban nhân dân"}, chime=False)
    readings = speech.render("UBND họp.", lexicon=Readings.plain({"UBND": "ủy ban nhân dân"}), chime=False)
    assert (
        plain.normalized_text == "ủy ban nhân dân họp." and readings.key == plain.key and readings.cache_hit
    )


# --- the store and the migration ----------------------------------------------------------------------


@pytest.fixture
def lexicon(tmp_path: Path) -> Iterator[Lexicon]:
    engine = make_engine(f"sqlite:///{tmp_path / 'lex.db'}")
    migrate(engine)
    yield Lexicon(make_session_factory(engine))
    engine.dispose()


def test_a_term_is_unique_per_scope_and_proposals_carry_scope_and_hint(lexicon: Lexicon) -> None:
    general = lexicon.save("UBND", "ủy ban nhân dân", by="a")
    scoped = lexicon.save("UBND", "u bê en đê", by="a", engine="google-cloud", hint="u˧ ɓe˧")
    voiced = lexicon.save("UBND", "ủy ban", by="a", engine="espeak-ng", voice="vi-vn-x-south")
    assert len({general.id, scoped.id, voiced.id}) == 3
    assert lexicon.save("UBND", "ủ ban", by="b", engine="espeak-ng", voice="vi-vn-x-south").id == voiced.id
    with pytest.raises(LexiconError, match="đã có trong từ điển cho giọng đọc này"):
        lexicon.save("UBND", "x", by="a", engine="google-cloud", entry_id=general.id)
    readings = lexicon.overrides()
    assert readings.for_engine("espeak-ng", "vi-vn-x-south")["UBND"] == "ủ ban"
    assert readings.hints("google-cloud", "", "ipa") == {"u bê en đê": "u˧ ɓe˧"}

    change = lexicon.propose("HTX", "hợp tác xã", by="editor", engine="espeak-ng", hint="h'Op")
    assert (change.engine, change.voice, change.hint) == ("espeak-ng", "", "h'Op")
    assert lexicon.overrides().for_engine("espeak-ng").get("HTX") is None
    lexicon.approve(change.id, by="approver")
    item = next(e for e in lexicon.entries() if e.term == "HTX")
    assert (item.engine, item.voice, item.hint) == ("espeak-ng", "", "h'Op")
    assert "HTX" not in lexicon.overrides()  # for espeak-ng only


def test_migration_from_the_previous_head_keeps_entries_and_scopes_the_unique_term(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    migrate(engine, "field_0006")
    with engine.begin() as conn:
        conn.execute(
            text("insert into lexicon (term, reading, updated) values ('UBND', 'ủy ban', '2026-01-01')")
        )
        conn.execute(text("insert into lexicon_changes (term, reading, state, created) values ('X', 'x', 'pending', '2026-01-01')"))  # fmt: skip
    migrate(engine)
    migrate(engine)  # idempotent
    with engine.begin() as conn:
        assert conn.execute(text("select term, engine, voice, hint from lexicon")).one() == (
            "UBND",
            "",
            "",
            None,
        )
        assert conn.execute(text("select engine, voice from lexicon_changes")).one() == ("", "")
        conn.execute(text("insert into lexicon (term, reading, engine, updated) values ('UBND', 'u', 'espeak-ng', '2026-01-01')"))  # fmt: skip
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(
            text("insert into lexicon (term, reading, updated) values ('UBND', 'again', '2026-01-01')")
        )
    engine.dispose()

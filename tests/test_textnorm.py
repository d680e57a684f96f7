"""The normalizer's API: bad input, Unicode forms, tokens for the preview, the officer's
dictionary, extra vocabulary files, and the ``broadcaster normalize`` command."""

from __future__ import annotations

import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from broadcaster.settings import SettingsError, load_settings
from broadcaster.textnorm import (
    EmptyTextError,
    Lexicon,
    LexiconError,
    NormalizationError,
    Normalized,
    Normalizer,
    TextnormConfig,
    TextTooLongError,
    Token,
    default_normalizer,
    normalize,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def normalizer() -> Normalizer:
    return Normalizer.from_config()


# --- bad input


@pytest.mark.parametrize("text", ["", " ", "\n\t  \n", "\u3000"])
def test_empty_or_whitespace_is_a_clear_error(normalizer: Normalizer, text: str) -> None:
    with pytest.raises(EmptyTextError) as caught:
        normalizer.normalize(text)
    assert "Văn bản trống" in str(caught.value) and "empty text" in str(caught.value)


def test_nothing_readable_left_is_empty(normalizer: Normalizer) -> None:
    with pytest.raises(EmptyTextError):
        normalizer.normalize("🔔🔔 \x07 ✅")


def test_error_hierarchy() -> None:
    assert issubclass(EmptyTextError, NormalizationError)
    assert issubclass(TextTooLongError, NormalizationError)
    assert issubclass(NormalizationError, ValueError)


def test_over_the_limit_is_a_clear_error() -> None:
    small = Normalizer.from_config(TextnormConfig(max_chars=50))
    assert small.normalize("a" * 50) == "a" * 50
    with pytest.raises(TextTooLongError) as caught:
        small.normalize("a" * 51)
    assert "51" in str(caught.value) and "50" in str(caught.value)
    assert "quá dài" in str(caught.value) and "too long" in str(caught.value)


def test_default_limit_is_twenty_thousand_characters(normalizer: Normalizer) -> None:
    assert normalizer.max_chars == 20_000
    sentence = "UBND xã thông báo lịch cắt điện từ 7h30 đến 16h30 ngày 20/10. "
    long_text = sentence * (20_000 // len(sentence))
    assert len(long_text) <= 20_000
    assert normalizer.normalize(long_text).count("ủy ban nhân dân") == 20_000 // len(sentence)
    with pytest.raises(TextTooLongError):
        normalizer.normalize("x" * 20_001)


def test_non_text_is_rejected(normalizer: Normalizer) -> None:
    with pytest.raises(NormalizationError):
        normalizer.normalize(b"UBND")  # type: ignore[arg-type]


def test_nfd_input_gives_the_same_result_as_nfc(normalizer: Normalizer) -> None:
    text = "UBND xã Phúc Hòa thông báo: từ 7h30 ngày 15/3/2024, giá 1.250.000 đồng/tạ; Quý II/2024."
    nfd = unicodedata.normalize("NFD", text)
    assert nfd != text
    assert normalizer.normalize(nfd) == normalizer.normalize(text)
    assert unicodedata.is_normalized("NFC", normalizer.normalize(nfd))


def test_control_characters_and_emoji_are_dropped(normalizer: Normalizer) -> None:
    text = "📢 Thông\x07 báo\u200b khẩn 🌀🌧️: bão số 3\x1b đổ bộ ⚠️"
    assert normalizer.normalize(text) == "thông báo khẩn: bão số ba đổ bộ"


# --- output conventions


def test_lower_case_punctuation_kept_other_symbols_dropped(normalizer: Normalizer) -> None:
    assert normalizer.normalize('THÔNG BÁO: "Họp dân" lúc 8h! Ai vắng? Xin báo; cảm ơn.') == (
        "thông báo: họp dân lúc tám giờ! ai vắng? xin báo; cảm ơn."
    )


def test_whitespace_collapsed_and_line_breaks_kept(normalizer: Normalizer) -> None:
    text = "  Dòng   1  \n\n\n   - Thôn 2:\t\t5 hộ  \r\nhết  "
    assert normalizer.normalize(text) == "dòng một\nthôn hai: năm hộ\nhết"


def test_sentence_final_dot_after_number_is_punctuation(normalizer: Normalizer) -> None:
    assert normalizer.normalize("Tổng cộng 1.250.") == "tổng cộng một nghìn hai trăm năm mươi."
    assert normalizer.normalize("Năm 2024.") == "năm hai nghìn không trăm hai mươi tư."


def test_module_level_normalize_uses_one_cached_normalizer() -> None:
    assert default_normalizer() is default_normalizer()
    assert normalize("105 hộ") == "một trăm linh năm hộ"


# --- analyze(): tokens for the web preview


def test_tokens_cover_the_whole_input_in_order(normalizer: Normalizer) -> None:
    text = "📢 UBND xã Phúc Hòa: từ 7h30 ngày 05/9, gọi 0912 345 678 (Đ/c Lan)."
    result = normalizer.analyze(text)
    assert isinstance(result, Normalized)
    assert all(isinstance(token, Token) for token in result.tokens)
    assert "".join(token.original for token in result.tokens) == text
    assert result.text == normalizer.normalize(text)


def test_tokens_cover_nfc_of_nfd_input(normalizer: Normalizer) -> None:
    text = unicodedata.normalize("NFD", "Hòa Bình, ngày 1/6")
    result = normalizer.analyze(text)
    assert "".join(token.original for token in result.tokens) == unicodedata.normalize("NFC", text)


def test_changed_flags_mark_rewritten_pieces(normalizer: Normalizer) -> None:
    result = normalizer.analyze("UBND xã Phúc Hòa họp lúc 7h30 🔔")
    by_original = {token.original: token for token in result.tokens}
    assert by_original["UBND"].changed and by_original["UBND"].spoken == "ủy ban nhân dân"
    assert by_original["7h30"].changed and by_original["7h30"].spoken == "bảy giờ ba mươi phút"
    assert by_original["🔔"].changed and by_original["🔔"].spoken == ""
    for word in ("xã", "Phúc", "Hòa", "họp", "lúc"):
        assert not by_original[word].changed, word
    assert {token.original for token in result.tokens if token.changed} == {"UBND", "7h30", "🔔"}


# --- the officer's dictionary and extra vocabulary files


def test_overrides_win_over_the_data_files(normalizer: Normalizer) -> None:
    custom = normalizer.with_overrides({"UBND": "chính quyền", "Yagi": "da ghi"})
    assert custom.normalize("UBND xã: bão Yagi") == "chính quyền xã: bão da ghi"
    # The base normalizer is unchanged.
    assert normalizer.normalize("UBND xã: bão Yagi") == "ủy ban nhân dân xã: bão yagi"


def test_lower_case_override_matches_any_case_and_whole_words_only(normalizer: Normalizer) -> None:
    custom = normalizer.with_overrides({"yagi": "da ghi"})
    assert custom.normalize("BÃO YAGI và bão Yagi") == "bão da ghi và bão da ghi"
    assert custom.normalize("Yagihoa") == "yagihoa"


def test_override_terms_may_hold_digits_and_spaces(normalizer: Normalizer) -> None:
    custom = normalizer.with_overrides({"Bão số 3": "cơn bão thứ ba", "A80": "a tám mươi"})
    assert custom.normalize("Bão số 3 và đợt A80") == "cơn bão thứ ba và đợt a tám mươi"


def test_with_overrides_is_cached_and_validated(normalizer: Normalizer) -> None:
    first = normalizer.with_overrides({"HTX": "hợp tác xã kiểu mới"})
    assert normalizer.with_overrides({"HTX": "hợp tác xã kiểu mới"}) is first
    assert normalizer.with_overrides({}) is normalizer
    assert normalizer.with_overrides({"  ": "x", "abc": "  "}) is normalizer
    with pytest.raises(NormalizationError):
        normalizer.with_overrides({"HTX": 3})  # type: ignore[dict-item]


def test_override_readings_are_stored_lower_case_nfc(normalizer: Normalizer) -> None:
    reading = unicodedata.normalize("NFD", "Hợp Tác Xã")
    assert normalizer.with_overrides({"HTX": reading}).normalize("HTX") == "hợp tác xã"


def test_extra_lexicon_file_is_read_after_the_shipped_ones(tmp_path: Path) -> None:
    extra = tmp_path / "xa-phuc-hoa.tsv"
    extra.write_text(
        "# vocabulary of one commune\n"
        "HTX\thợp tác xã kiểu mới\n"
        "NVHT\tnhà văn hóa thôn\n"
        "sào\tsào bắc bộ\tunit\n"
        "zalo\tda lô ô a\tword\n",
        encoding="utf-8",
    )
    custom = Normalizer.from_config(TextnormConfig(lexicon_files=[extra]))
    assert custom.normalize("HTX họp tại NVHT") == "hợp tác xã kiểu mới họp tại nhà văn hóa thôn"
    assert custom.normalize("thu 3 sào, nhắn Zalo") == "thu ba sào bắc bộ, nhắn da lô ô a"
    # Later files win over earlier ones.
    later = tmp_path / "later.tsv"
    later.write_text("HTX\thợp tác xã thôn\n", encoding="utf-8")
    both = Normalizer.from_config(TextnormConfig(lexicon_files=[extra, later]))
    assert both.normalize("HTX") == "hợp tác xã thôn"
    # Overrides still win over every file.
    assert both.with_overrides({"HTX": "tổ hợp tác"}).normalize("HTX") == "tổ hợp tác"


def test_malformed_lexicon_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text("# ok\nHTX hợp tác xã\n", encoding="utf-8")
    with pytest.raises(LexiconError) as caught:
        Lexicon.load([bad])
    assert "bad.tsv:2" in str(caught.value)
    wrong_kind = tmp_path / "kind.tsv"
    wrong_kind.write_text("HTX\thợp tác xã\tverb\n", encoding="utf-8")
    with pytest.raises(LexiconError):
        Lexicon.load([wrong_kind])
    with pytest.raises(LexiconError):
        Lexicon.load([tmp_path / "missing.tsv"])


def test_settings_reject_a_bad_lexicon_file_at_start_up(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text("HTX hợp tác xã\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.tsv:1"):
        TextnormConfig(lexicon_files=[bad])
    with pytest.raises(SettingsError, match="textnorm.lexicon_files"):
        load_settings({"textnorm": {"lexicon_files": [str(tmp_path / "missing.tsv")]}}, environ={})


def test_shipped_data_files_have_the_required_vocabulary(normalizer: Normalizer) -> None:
    abbreviations = normalizer.lexicon.entries["abbr"]
    for term in (
        "UBND",
        "HĐND",
        "MTTQ",
        "HTX",
        "THCS",
        "THPT",
        "BHYT",
        "BHXH",
        "CCCD",
        "ATGT",
        "PCCC",
        "ANTT",
        "KH&CN",
        "TT&TT",
        "NN&PTNT",
        "CĐS",
        "TP.",
    ):
        assert term in abbreviations, term
    units = normalizer.lexicon.entries["unit"]
    for term in ("ha", "kg", "tấn", "km", "km/h", "m", "mm", "m2", "°C", "đ", "VNĐ"):
        assert term in units, term


# --- the command line


def _cli(args: list[str], stdin: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROADCASTER_")}
    env["BROADCASTER_INSTANCE"] = str(cwd / "instance")
    env["PYTHONIOENCODING"] = "utf-8"
    return subprocess.run(
        [sys.executable, "-m", "broadcaster", *args],
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=REPO,
        env=env,
        timeout=120,
        check=False,
    )


def test_cli_stdin_prints_one_spoken_line_per_input_line(tmp_path: Path) -> None:
    lines = [
        "UBND xã Phúc Hòa thông báo",
        "",
        "từ 7h30 ngày 15/3/2024",
        "   ",
        "🔔🔔",
        "gọi số 0912 345 678",
        "",
    ]
    result = _cli(["normalize", "--stdin"], "\n".join(lines) + "\n", tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout.split("\n")
    assert out[-1] == ""  # the output ends with a newline
    out = out[:-1]
    assert len(out) == len(lines)
    assert out == [
        "ủy ban nhân dân xã phúc hòa thông báo",
        "",
        "từ bảy giờ ba mươi phút ngày mười lăm tháng ba năm hai nghìn không trăm hai mươi tư",
        "",
        "",
        "gọi số không chín một hai ba bốn năm sáu bảy tám",
        "",
    ]
    assert "error" in result.stderr  # the emoji-only line is reported, not silently lost


def test_cli_single_text(tmp_path: Path) -> None:
    result = _cli(["normalize", "Quý II/2024"], "", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "quý hai năm hai nghìn không trăm hai mươi tư\n"
    empty = _cli(["normalize", "   "], "", tmp_path)
    assert empty.returncode == 1 and "Văn bản trống" in empty.stderr


# --- robustness


def test_random_input_never_crashes_and_tokens_always_cover_it(normalizer: Normalizer) -> None:
    import random

    pool = list(
        "0123456789/.-,:;h%&@ xX()IVXđĐaăâbcêghiklmnoôơpqrstuưvyÀảãạắẶấầ\n\t°²½kmgT+*#~€$😀\u200b\x07١"
    ) + [
        "UBND",
        "km/h",
        "7h30",
        "15/3/2024",
        "1.250.000",
        "0912 345 678",
        "COVID-19",
        "www.",
        "@gmail.com",
        " thứ ",
        " ngày ",
        " tháng ",
        "https://",
        ".gov.vn",
        "/QĐ-",
        " Quý ",
        "/2024",
        "II",
    ]
    rng = random.Random(20240315)
    readable = 0
    for _ in range(1500):
        text = "".join(rng.choice(pool) for _ in range(rng.randint(1, 40)))
        try:
            result = normalizer.analyze(text)
        except EmptyTextError:
            continue
        readable += 1
        assert "".join(token.original for token in result.tokens) == unicodedata.normalize("NFC", text)
        assert result.text == result.text.strip() and "  " not in result.text
        assert result.text == result.text.lower()
    assert readable > 1000

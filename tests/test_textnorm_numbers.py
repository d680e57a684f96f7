"""Number readings (Northern usage), Roman numerals and Vietnamese syllables."""

from __future__ import annotations

import pytest

from broadcaster.textnorm.numbers import (
    read_day,
    read_decimal,
    read_digits,
    read_integer_string,
    read_month,
    read_number,
    read_ordinal,
    roman_value,
)
from broadcaster.textnorm.syllables import is_syllable, split_unaccented

NUMBERS = [
    (0, "không"),
    (1, "một"),
    (4, "bốn"),
    (5, "năm"),
    (10, "mười"),
    (11, "mười một"),
    (14, "mười bốn"),
    (15, "mười lăm"),
    (20, "hai mươi"),
    (21, "hai mươi mốt"),
    (24, "hai mươi tư"),
    (25, "hai mươi lăm"),
    (55, "năm mươi lăm"),
    (100, "một trăm"),
    (101, "một trăm linh một"),
    (104, "một trăm linh bốn"),
    (105, "một trăm linh năm"),
    (110, "một trăm mười"),
    (115, "một trăm mười lăm"),
    (121, "một trăm hai mươi mốt"),
    (1000, "một nghìn"),
    (1005, "một nghìn không trăm linh năm"),
    (1050, "một nghìn không trăm năm mươi"),
    (1945, "một nghìn chín trăm bốn mươi lăm"),
    (2001, "hai nghìn không trăm linh một"),
    (2024, "hai nghìn không trăm hai mươi tư"),
    (10_000, "mười nghìn"),
    (21_000, "hai mươi mốt nghìn"),
    (100_000, "một trăm nghìn"),
    (1_250_000, "một triệu hai trăm năm mươi nghìn"),
    (2_000_500, "hai triệu năm trăm"),
    (1_000_050, "một triệu không trăm năm mươi"),
    (3_000_000_000, "ba tỷ"),
    (4_500_000_000, "bốn tỷ năm trăm triệu"),
    (1_000_000_000_000, "một nghìn tỷ"),
]


@pytest.mark.parametrize(("value", "reading"), NUMBERS)
def test_read_number(value: int, reading: str) -> None:
    assert read_number(value) == reading


def test_digits_codes_and_decimals() -> None:
    assert read_digits("0912 345") == "không chín một hai ba bốn năm"
    assert read_integer_string("05") == "năm"
    assert read_integer_string("0123") == "không một hai ba"
    assert read_decimal("12", "75") == "mười hai phẩy bảy mươi lăm"
    assert read_decimal("3", "05") == "ba phẩy không năm"
    assert read_decimal("0", "5") == "không phẩy năm"
    assert read_decimal("4", "0", "chấm") == "bốn chấm không"


def test_ordinals_months_and_days() -> None:
    assert [read_ordinal(n) for n in (1, 2, 3, 4, 7, 14)] == ["nhất", "hai", "ba", "tư", "bảy", "mười bốn"]
    assert [read_month(n) for n in (1, 4, 10, 12)] == ["một", "tư", "mười", "mười hai"]
    assert [read_day(n) for n in (1, 5, 10, 11, 24)] == [
        "mùng một",
        "mùng năm",
        "mùng mười",
        "mười một",
        "hai mươi tư",
    ]


@pytest.mark.parametrize(
    ("numeral", "value"),
    [
        ("I", 1),
        ("II", 2),
        ("IV", 4),
        ("IX", 9),
        ("XIII", 13),
        ("XV", 15),
        ("XXV", 25),
        ("XL", 40),
        ("MMXXIV", 2024),
    ],
)
def test_roman_values(numeral: str, value: int) -> None:
    assert roman_value(numeral) == value


@pytest.mark.parametrize("text", ["", "IIII", "VX", "ABC", "iv", "IC"])
def test_malformed_roman_numerals(text: str) -> None:
    assert roman_value(text) is None


def test_syllables_tell_capitalised_words_from_acronyms() -> None:
    for word in ("THÔNG", "BÁO", "XÃ", "NGHIÊNG", "KHUYA", "QUỐC", "GIẾNG", "HUYỆN", "TRƯỜNG"):
        assert is_syllable(word), word
    for word in ("UBND", "VNPT", "HIV", "SMS", "ATM", "THCS"):
        assert not is_syllable(word), word


def test_unaccented_run_together_words_are_split() -> None:
    assert split_unaccented("dichvucong") == ("dich", "vu", "cong")
    assert split_unaccented("phuchoa") == ("phuc", "hoa")
    assert split_unaccented("hanoi") == ("ha", "noi")
    assert split_unaccented("xyz") is None

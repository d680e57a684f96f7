"""Vietnamese readings of numbers, Northern usage.

mốt (21), lăm (15, 25), tư after mươi (24), linh for a zero tens digit (105), "không trăm"
inside a number (2024 = hai nghìn không trăm hai mươi tư), nghìn / triệu / tỷ.
"""

from __future__ import annotations

DIGITS = ("không", "một", "hai", "ba", "bốn", "năm", "sáu", "bảy", "tám", "chín")

_GROUP_NAMES = ("", "nghìn", "triệu")  # groups of three digits below a billion
_BILLION = 10**9


def _triple(n: int, full: bool) -> list[str]:
    """Read 0 < n < 1000; ``full`` reads a zero hundreds digit ("không trăm") inside a number."""
    hundreds, tens, units = n // 100, (n // 10) % 10, n % 10
    words: list[str] = []
    if hundreds or full:
        words += [DIGITS[hundreds], "trăm"]
    if tens == 0:
        if units:
            words += (["linh"] if words else []) + [DIGITS[units]]
    elif tens == 1:
        words.append("mười")
        if units:
            words.append("lăm" if units == 5 else DIGITS[units])
    else:
        words += [DIGITS[tens], "mươi"]
        if units == 1:
            words.append("mốt")
        elif units == 4:
            words.append("tư")
        elif units == 5:
            words.append("lăm")
        elif units:
            words.append(DIGITS[units])
    return words


def _below_billion(n: int, full: bool) -> list[str]:
    words: list[str] = []
    groups = [(n // 10**6) % 1000, (n // 1000) % 1000, n % 1000]
    for index, value in enumerate(groups):
        if value == 0:
            continue
        words += _triple(value, full or bool(words))
        name = _GROUP_NAMES[2 - index]
        if name:
            words.append(name)
    return words


def read_number(n: int) -> str:
    """``1250000`` -> ``một triệu hai trăm năm mươi nghìn``."""
    if n < 0:
        return "âm " + read_number(-n)
    if n == 0:
        return DIGITS[0]
    if n >= _BILLION:
        high, low = divmod(n, _BILLION)
        words = [read_number(high), "tỷ"]
        if low:
            words += _below_billion(low, True)
        return " ".join(words)
    return " ".join(_below_billion(n, False))


def read_digits(digits: str) -> str:
    """``0912`` -> ``không chín một hai``; characters other than digits are skipped."""
    return " ".join(DIGITS[int(ch)] for ch in digits if ch.isdecimal())


def read_integer_string(digits: str) -> str:
    """Read a run of digits the way it is written: a leading zero on a long run means a code."""
    if len(digits) >= 4 and digits.startswith("0"):
        return read_digits(digits)
    if len(digits) > 12:
        return read_digits(digits)
    return read_number(int(digits))


def read_fraction_digits(digits: str) -> str:
    """The part after the decimal comma: ``75`` -> bảy mươi lăm, ``05`` -> không năm."""
    stripped = digits.lstrip("0")
    zeros = len(digits) - len(stripped)
    words = [DIGITS[0]] * zeros
    if stripped:
        words.append(read_number(int(stripped)) if len(stripped) <= 3 else read_digits(stripped))
    return " ".join(words)


def read_decimal(integer: str, fraction: str | None, point: str = "phẩy") -> str:
    """``12``, ``75`` -> ``mười hai phẩy bảy mươi lăm``."""
    words = read_integer_string(integer) if integer else DIGITS[0]
    if fraction:
        words += f" {point} " + read_fraction_digits(fraction)
    return words


def read_ordinal(n: int) -> str:
    """After "thứ": 1 -> nhất, 4 -> tư, otherwise the number."""
    if n == 1:
        return "nhất"
    if n == 4:
        return "tư"
    return read_number(n)


def read_month(n: int) -> str:
    """After "tháng": 4 -> tư (tháng tư), otherwise the number."""
    return "tư" if n == 4 else read_number(n)


def read_day(n: int) -> str:
    """Day of the month: 1-10 take "mùng" (mùng năm), others are plain."""
    return f"mùng {read_number(n)}" if 1 <= n <= 10 else read_number(n)


_ROMAN = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}


def roman_value(text: str) -> int | None:
    """Value of a well-formed Roman numeral (I..MMMCMXCIX), else None."""
    if not text or any(ch not in _ROMAN for ch in text):
        return None
    total = 0
    for index, ch in enumerate(text):
        value = _ROMAN[ch]
        if index + 1 < len(text) and _ROMAN[text[index + 1]] > value:
            total -= value
        else:
            total += value
    if total <= 0 or total >= 4000 or to_roman(total) != text:
        return None
    return total


def to_roman(n: int) -> str:
    parts = []
    for value, numeral in (
        (1000, "M"),
        (900, "CM"),
        (500, "D"),
        (400, "CD"),
        (100, "C"),
        (90, "XC"),
        (50, "L"),
        (40, "XL"),
        (10, "X"),
        (9, "IX"),
        (5, "V"),
        (4, "IV"),
        (1, "I"),
    ):
        while n >= value:
            parts.append(numeral)
            n -= value
    return "".join(parts)

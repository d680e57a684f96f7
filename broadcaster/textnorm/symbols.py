"""Symbols, emoji and currency signs: read them, or flag them; never drop them silently.

* Emoji and pictographs are not read aloud; each run of them is flagged (``flags.py``), except a
  few check marks and arrows used as list bullets.
* A currency sign before an amount ("$10", "€2,5", "US$1,000") is read after it, the way it is
  said: "mười đô la". After an amount ("10€") the lexicon rule reads it from ``units.tsv``.
* Vulgar fractions: "½" -> "một phần hai", "1½" -> "một và một phần hai".
* Any other symbol is read from ``data/symbols.tsv`` (or ``units.tsv`` for a currency sign);
  one that has no reading there is flagged and not read.
"""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING

from broadcaster.textnorm.flags import Flagged, currency_note, emoji_note, symbol_note
from broadcaster.textnorm.numbers import read_fraction_digits, read_number

if TYPE_CHECKING:
    from broadcaster.textnorm.rules import Context

# --- emoji and pictographs
# Misc technical, misc symbols and dingbats, arrows/shapes supplement, and the emoji planes.
_PICTOGRAPHS = "\u2300-\u23ff\u2600-\u27bf\u2b00-\u2bff\U0001f000-\U0001faff"
# What may continue an emoji: variation selectors, joiner, keycap, skin tones, tag characters.
_EMOJI_PARTS = "\ufe0e\ufe0f\u200d\u20e3\U0001f3fb-\U0001f3ff\U000e0020-\U000e007f"
EMOJI = re.compile(f"[{_PICTOGRAPHS}][{_PICTOGRAPHS}{_EMOJI_PARTS}]*")
# Dingbats typed as list bullets: a pause, like "•", not something the officer must check.
_BULLETS = frozenset("✓✔➢➤➔➜➝➞❖✦✧")


def emoji(match: re.Match[str], ctx: Context) -> str:
    text = match.group(0)
    if all(ch in _BULLETS or ch in _EMOJI_PARTS for ch in text):
        return " "
    return Flagged("", emoji_note(text))


# --- currency signs before an amount
_AMOUNT = r"\d{1,3}(?:[.,]\d{3})+(?:[.,]\d{1,2})?|\d+(?:[.,]\d+)?"
_SCALE_WORDS = {
    "nghìn": 10**3,
    "ngàn": 10**3,
    "k": 10**3,
    "triệu": 10**6,
    "tr": 10**6,
    "tỷ": 10**9,
    "tỉ": 10**9,
}
CURRENCY_BEFORE = re.compile(
    rf"(?<![\w$])(US)?([^\w\s.,;:!?()\[\]{{}}\"'%/+*=<>&@#~-])[ \t]?(?P<amount>{_AMOUNT})"
    rf"(?:[ \t]?(?P<scale>nghìn|ngàn|triệu|tỷ|tỉ|k|tr)(?!\w))?(?![\d\w])"
)


def read_amount(amount: str) -> str:
    """An amount written either way: "1.250.000", "1,250,000", "2,5", "2.5", "1,234.56"."""
    separators = re.findall(r"[.,]", amount)
    groups = re.split(r"[.,]", amount)
    if not separators:
        return read_number(int(amount))
    last_is_fraction = len(groups[-1]) != 3 or (len(separators) > 1 and separators[-1] != separators[0])
    if len(separators) == 1 and len(groups[0]) > 3:
        last_is_fraction = True  # "1234.5", "2500,75"
    if last_is_fraction:
        whole = "".join(groups[:-1])
        return f"{read_number(int(whole))} phẩy {read_fraction_digits(groups[-1])}"
    return read_number(int("".join(groups)))


def currency_before(match: re.Match[str], ctx: Context) -> str | None:
    us, sign = match.group(1), match.group(2)
    if unicodedata.category(sign) != "Sc":
        return None
    name = ctx.override(f"{us or ''}{sign}") or ctx.lexicon.get("unit", f"{us or ''}{sign}")
    if name is None and us is None:
        name = ctx.override(sign) or ctx.lexicon.get("unit", sign)
    scale = match.group("scale")
    amount = match.group("amount")
    if scale and scale in ("k", "tr") and re.fullmatch(r"\d+", amount):
        words = read_number(int(amount) * _SCALE_WORDS[scale])
    else:
        words = read_amount(amount)
        if scale:
            words += f" {'nghìn' if scale == 'k' else 'triệu' if scale == 'tr' else scale}"
    if name is None:
        prefix = "" if us is None else "u ét "
        return Flagged(f" {prefix}{words} ", currency_note(sign))
    return f" {words} {name} "


# --- vulgar fractions: ½ ¼ ¾ ⅓ ...
VULGAR_FRACTION = re.compile(r"(?<![\d.,])(?:(\d+)[ \t]?)?([\u00bc-\u00be\u2150-\u215e])")


def _fraction_parts(ch: str) -> tuple[int, int] | None:
    # "<fraction> 0031 2044 0032" for ½: numerator, FRACTION SLASH, denominator.
    parts = unicodedata.decomposition(ch).split()
    if len(parts) < 4 or parts[0] != "<fraction>" or "2044" not in parts:
        return None
    slash = parts.index("2044")
    numerator = "".join(chr(int(p, 16)) for p in parts[1:slash])
    denominator = "".join(chr(int(p, 16)) for p in parts[slash + 1 :])
    if not (numerator.isdecimal() and denominator.isdecimal()):
        return None
    return int(numerator), int(denominator)


def vulgar_fraction(match: re.Match[str], ctx: Context) -> str | None:
    parts = _fraction_parts(match.group(2))
    if parts is None:
        return None
    fraction = f"{read_number(parts[0])} phần {read_number(parts[1])}"
    if match.group(1):
        return f" {read_number(int(match.group(1)))} và {fraction} "
    return f" {fraction} "


# --- superscript digits after a number or a letter: "10³" -> "mười mũ ba"
SUPERSCRIPT = re.compile(r"(?<=[^\W_])[⁰¹²³⁴⁵⁶⁷⁸⁹]+")
_SUPERSCRIPT_DIGITS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹", "0123456789")


def superscript(match: re.Match[str], ctx: Context) -> str:
    return f" mũ {read_number(int(match.group(0).translate(_SUPERSCRIPT_DIGITS)))} "


# --- any other symbol: the vocabularies, else flagged
OTHER_SYMBOL = re.compile(r"[^\w\s.,;:!?]")


def other_symbol(match: re.Match[str], ctx: Context) -> str:
    ch = match.group(0)
    reading = ctx.override(ch) or ctx.lexicon.get("symbol", ch)
    category = unicodedata.category(ch)
    if reading is None and category == "Sc":
        reading = ctx.lexicon.get("unit", ch)
        if reading is None:
            return Flagged("", currency_note(ch))
    if reading is not None:
        return f" {reading} "
    if category in ("Cc", "Cf"):
        return ""  # invisible control and format characters carry nothing to read
    if category == "Co":
        return Flagged("", symbol_note(f"U+{ord(ch):04X}"))  # private use: icon fonts, pasted bullets
    return Flagged("", symbol_note(ch))

"""Informal shorthand of money and durations, and vehicle number plates.

Money, as typed in messages and price notices (the digits after the letter are the next digits
of the amount, so "1tr5" is 1 500 000, "1tr25" 1 250 000, "2tr050" 2 050 000):

* ``1tr5`` -> "một triệu năm trăm nghìn"; ``1ty2`` / ``1tỷ2`` -> "một tỷ hai trăm triệu";
  ``5k5`` -> "năm nghìn năm trăm";
* ``2t3`` -> "hai triệu ba trăm nghìn" only where the text speaks of money ("giá", "lương",
  "/tháng", ...): elsewhere "t" may be "tấn" or part of a code, and the code reading stays.

Plain ``1tr`` and ``500k`` are units (``data/units.tsv``).

Durations: ``3p20s`` -> "ba phút hai mươi giây", ``1h30p20s`` -> "một giờ ba mươi phút hai mươi
giây" (``2h30p`` is a time of day, read by the time rule).

Vehicle plates (``29A-123.45``, ``98B1-234.56``, ``30A-1234``) are read the way police and
radio read them: the province number and the series digit by digit, the series letters by
name, a pause, then the serial digit by digit with "chấm" for the dot: "chín tám bê một, hai ba
bốn chấm năm sáu". The dash is never "đến".
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from broadcaster.textnorm.numbers import read_digits, read_number

if TYPE_CHECKING:
    from broadcaster.textnorm.rules import Context

# --- money
MONEY_SHORTHAND = re.compile(r"(?<![\w.,])(\d{1,3})(tr|t|tỷ|tỉ|ty|k)(\d{1,3})(?!\w|[.,]\d)")
_SCALE = {"tr": 10**6, "t": 10**6, "tỷ": 10**9, "tỉ": 10**9, "ty": 10**9, "k": 10**3}
# Words that show a sum of money is meant, so that "2t3" is 2 300 000 đồng.
_MONEY_CUES = frozenset(
    """giá lương tiền phí hỗ trợ thu chi trả nộp thuê bán mua thưởng phạt tặng mức kinh vay góp
    ủng nhận lãi vốn đồng""".split()
)
_MONEY_AFTER = re.compile(r"[ \t]*(?:/|đồng|đ\b|vnđ|mỗi|một)", re.IGNORECASE)


def _money_context(match: re.Match[str], ctx: Context) -> bool:
    if set(ctx.prev_words(match.start(), 6)) & _MONEY_CUES:
        return True
    return _MONEY_AFTER.match(ctx.after(match.end(), 12)) is not None


def money_shorthand(match: re.Match[str], ctx: Context) -> str | None:
    whole, letter, rest = match.group(1), match.group(2), match.group(3)
    if letter == "t" and not _money_context(match, ctx):
        return None
    scale = _SCALE[letter]
    # The digits after the letter continue the amount: "5" of "1tr5" is 500 thousand.
    value = int(whole) * scale + int(rest.ljust(3, "0")) * (scale // 1000)
    return read_number(value)


# --- durations
DURATION = re.compile(
    r"(?<![\w.,:])(?:(\d{1,2})[hg](\d{1,2})(?:ph|p)(\d{1,2})s|(\d{1,3})(?:ph|p)(\d{1,2})s?)(?!\w|[.,]\d)"
)


def duration(match: re.Match[str], ctx: Context) -> str | None:
    if match.group(1) is not None:
        hours, minutes, seconds = int(match.group(1)), int(match.group(2)), int(match.group(3))
        if minutes > 59 or seconds > 59:
            return None
        words = [read_number(hours), "giờ"]
    else:
        hours, minutes, seconds = 0, int(match.group(4)), int(match.group(5))
        if seconds > 59:
            return None
        words = []
    words += [read_number(minutes), "phút"]
    if seconds:
        words += [read_number(seconds), "giây"]
    return " ".join(words)


# --- vehicle number plates; province codes run from 11 to 99
PLATE = re.compile(
    r"(?<![\w.,/-])(1[1-9]|[2-9]\d)([A-ZĐ]{1,2}\d?)"
    r"(?:[-–][ \t]?(\d{3}\.\d{2}|\d{4,5})|[ \t](\d{3}\.\d{2}))(?!\w|[.,]\d)"
)


def plate(match: re.Match[str], ctx: Context) -> str:
    province, series = match.group(1), match.group(2)
    serial = match.group(3) or match.group(4)
    series_words = " ".join(ctx.letter(ch) for ch in series)
    serial_words = " chấm ".join(read_digits(part) for part in serial.split("."))
    return f"{read_digits(province)} {series_words}, {serial_words}"

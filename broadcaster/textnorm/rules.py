"""The rewriting rules, in the order they run.

Each rule is a compiled regex and a handler. The engine (``normalizer.py``) runs the rules one
after another; each rule sees only the parts of the text that earlier rules left alone, and its
handler returns the spoken form of a match, or None to leave the match to later rules. Handlers
look at the words around a match (``Context``) to decide between readings: "15/3" is a date after
"ngày" and a fraction before "số hộ"; "113" is read digit by digit after "gọi".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from itertools import groupby

from broadcaster.textnorm import shorthand, symbols
from broadcaster.textnorm.flags import Flagged, long_number_note, stray_characters_note, symbol_note
from broadcaster.textnorm.lexicon import Lexicon, alternation
from broadcaster.textnorm.numbers import (
    DIGITS,
    read_day,
    read_decimal,
    read_digits,
    read_fraction_digits,
    read_integer_string,
    read_month,
    read_number,
    read_ordinal,
    roman_value,
)
from broadcaster.textnorm.syllables import is_syllable, split_unaccented, strip_accents

Handler = Callable[[re.Match[str], "Context"], str | None]


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: re.Pattern[str]
    handler: Handler


_WORD = re.compile(r"[^\W_]+")
_LETTERS = re.compile(r"[^\W\d_]+")
_RUNS = re.compile(r"\d+|[^\W\d_]+")

# Words after which a number is a count of something, not a code or a phone number.
COUNT_WORDS = frozenset(
    """hộ người con ha tấn tạ yến kg cây lượt lần ngày tuần tháng năm quý giờ phút giây triệu tỷ tỉ
    nghìn ngàn trăm đồng học trẻ em cháu xã thôn xóm tổ trường đơn cơ hồ suất phần bệnh ca khẩu
    mét km lít héc chiếc cái xe chuyến vé liều mũi đợt buổi vụ điểm em hội đoàn thành đảng
    cán công gia nhân lao phụ cựu tuổi""".split()
)
# Words after "/" that make it read "một" (per): đồng/kg, lượt/ngày.
PER_WORDS = frozenset(
    """người hộ con lượt lần ngày tuần tháng năm quý giờ phút buổi suất xuất ca sào mẫu công cây bao
    chai gói hộp bình chiếc cái em cháu trẻ xe chuyến vé kỳ kì đợt khẩu liều mũi lớp phòng tấn tạ
    yến lít kg ha m2 ký cân học nhân lô thửa chỉ lượng bó quả thùng túi viên lọ mét khối""".split()
)
_MONEY_WORDS = frozenset("đồng đ nghìn ngàn triệu tỷ tỉ usd vnđ vnd".split())
_MAGNITUDES = frozenset("nghìn ngàn triệu tỷ tỉ trăm chục vạn".split())
_NUMBER_WORDS = frozenset(
    "trăm nghìn ngàn vạn triệu tỷ tỉ chục mươi mười vài mấy mỗi một hai ba bốn năm sáu bảy tám chín nửa rưỡi".split()
)
_HOUSE_NUMBER_PREV = frozenset("nhà ngõ ngách hẻm kiệt số".split())
_DATE_PREV = frozenset(
    "ngày từ đến tới hôm sáng chiều tối trưa đêm trước sau vào hạn nay mai lúc mùng nhật hết".split()
)
_WEEKDAY_NAMES = frozenset("hai ba tư năm sáu bảy".split())
_FRACTION_PREV = frozenset("chiếm khoảng gần hơn trên dưới đạt được bằng còn mất quá lệ giảm tăng".split())
# "2/3 số hộ" is a part of a whole (hai phần ba); "17/19 tiêu chí" is a score (mười bảy trên mười chín).
_PART_NEXT = frozenset("số tổng diện dân trong các những thời lượng kinh phần giá khối".split())
_SCORE_NEXT = frozenset(
    "hộ người thôn xã xóm tổ tiêu chỉ đơn học trường lao cán thành hồ nội xe đội câu bài".split()
)
_FRACTION_NEXT = _PART_NEXT | _SCORE_NEXT
# Words before "12/2024" after which it is a number and a year, not a month: "Quý 2/2024",
# "Nghị định 12/2024", "số 15/2024".
_NUMBERED_PREV = frozenset(
    "số quý đợt kỳ kì khóa khoá lần định tư thị văn hoạch quyết luật báo cáo trình dẫn lệnh điện".split()
)
_ROMAN_CONTEXT = frozenset(
    """quý khóa khoá thứ kỳ kì phần chương mục đợt đoạn kỷ kỉ vòng cấp hạng loại hội tập bài khu
    đoàn vực vùng nhóm lục tiết số khoản điều lần năm""".split()
)
_DIGIT_TRIGGERS = (
    "gọi",
    "hotline",
    "tổng đài",
    "dây nóng",
    "điện thoại",
    "sđt",
    "đt",
    "stk",
    "tài khoản",
    "mã",
    "căn cước",
    "cccd",
    "cmnd",
    "định danh",
    "fax",
    "zalo",
    "nhắn tin",
    "soạn tin",
    "quay số",
)
_EMERGENCY_TRIGGERS = (
    *_DIGIT_TRIGGERS,
    "số",
    "báo",
    "liên hệ",
    "cứu",
    "cháy",
    "hỏa",
    "hoả",
    "công an",
    "khẩn",
    "cảnh sát",
)
_EMERGENCY_NUMBERS = frozenset({"111", "112", "113", "114", "115"})
# "Tổng đài bảo vệ trẻ em 111": the trigger of a hotline may stand a few words before it.
_EMERGENCY_WINDOW = 7
_NETWORK_WORDS = frozenset("mạng sóng nghệ bao động internet nối wifi thuê phủ".split())


class Context:
    """The whole text and the vocabularies, for handlers that look around their match."""

    def __init__(self, text: str, lexicon: Lexicon, overrides: Mapping[str, str]) -> None:
        self.text = text
        self.lexicon = lexicon
        self.overrides = overrides
        self._overrides_lower = {k.lower(): v for k, v in overrides.items() if k == k.lower()}

    # --- looking around
    def _line_before(self, pos: int, width: int = 80) -> str:
        chunk = self.text[max(0, pos - width) : pos]
        newline = chunk.rfind("\n")
        return chunk[newline + 1 :] if newline >= 0 else chunk

    def _line_after(self, pos: int, width: int = 80) -> str:
        chunk = self.text[pos : pos + width]
        newline = chunk.find("\n")
        return chunk[:newline] if newline >= 0 else chunk

    def prev_words(self, pos: int, n: int = 3) -> list[str]:
        """The n words before pos on the same line, lower-case, nearest last."""
        return [w.lower() for w in _WORD.findall(self._line_before(pos))[-n:]]

    def prev_word(self, pos: int) -> str:
        words = self.prev_words(pos, 1)
        return words[0] if words else ""

    def adjacent_prev_word(self, pos: int) -> str:
        """The word right before pos with only spaces between, else ''."""
        match = re.search(r"([^\W_]+)[ \t]*$", self._line_before(pos))
        return match.group(1).lower() if match else ""

    def adjacent_next_word(self, pos: int) -> str:
        match = re.match(r"[ \t]*([^\W_]+)", self._line_after(pos))
        return match.group(1).lower() if match else ""

    def raw_prev_word(self, pos: int) -> str:
        match = re.search(r"([^\W_]+)[ \t]*$", self._line_before(pos))
        return match.group(1) if match else ""

    def raw_next_word(self, pos: int) -> str:
        match = re.match(r"[ \t]*([^\W_]+)", self._line_after(pos))
        return match.group(1) if match else ""

    def prev_char(self, pos: int) -> str:
        """The nearest non-space character before pos on the line, else ''."""
        stripped = self._line_before(pos, 20).rstrip(" \t")
        return stripped[-1] if stripped else ""

    def next_char(self, pos: int) -> str:
        stripped = self._line_after(pos, 20).lstrip(" \t")
        return stripped[0] if stripped else ""

    def after(self, pos: int, width: int = 30) -> str:
        return self._line_after(pos, width)

    def prev_has(self, pos: int, phrases: tuple[str, ...], n: int = 4, skip_numbers: bool = False) -> bool:
        """Does one of ``phrases`` stand among the n words before pos? With ``skip_numbers``, numbers
        do not count as words ("gọi 0912 345 678 hoặc 113": the call reaches the 113)."""
        if skip_numbers:
            words = [w.lower() for w in _WORD.findall(self._line_before(pos, 160)) if not w.isdecimal()][-n:]
        else:
            words = self.prev_words(pos, n)
        window = " " + " ".join(words) + " "
        window = window.replace(" kêu gọi ", " ")  # an appeal, not a phone call
        return any(f" {phrase} " in window for phrase in phrases)

    # --- vocabularies
    def override(self, term: str) -> str | None:
        found = self.overrides.get(term)
        return found if found is not None else self._overrides_lower.get(term.lower())

    def letter(self, ch: str) -> str:
        if ch.isdecimal():
            return DIGITS[int(ch)]
        return self.lexicon.get("letter", ch.lower()) or ch.lower()

    def spell(self, word: str) -> str:
        return " ".join(self.letter(ch) for ch in word if not ch.isspace())

    def read_letters(self, run: str, doc: bool = False) -> str:
        """A run of letters inside a code: vocabulary, else a syllable, else spelled.

        In document numbers (``doc``) abbreviations apply (QĐ-UBND); in codes like QL1A or
        BC15 only the ``code`` and ``word`` vocabularies do, so BC15 is spelled, not "báo cáo"."""
        found = self.override(run)
        if found is None and doc:
            found = self.lexicon.get("doc", run) or self.lexicon.get("abbr", run)
        if found is None:
            found = self.lexicon.get("code", run) or self.lexicon.get("word", run.lower())
        if found is not None:
            return found
        if len(run) == 1:
            return self.letter(run)
        if is_syllable(run):
            return run.lower()
        return self.spell(run)

    def compound_abbreviation(self, word: str) -> str | None:
        """An unknown acronym made of two or three known ones: "TTGDNN" = TT + GDNN."""
        abbreviations = self.lexicon.entries["abbr"]
        best: list[list[str] | None] = [None] * (len(word) + 1)
        best[0] = []
        for end in range(2, len(word) + 1):
            for start in range(0, end - 1):
                prev = best[start]
                reading = abbreviations.get(word[start:end])
                if prev is None or reading is None or not word[start:end].isalpha():
                    continue
                if best[end] is None or len(prev) + 1 < len(best[end]):  # type: ignore[arg-type]
                    best[end] = [*prev, reading]
        found = best[len(word)]
        return " ".join(found) if found and 2 <= len(found) <= 3 else None

    @cached_property
    def seen_syllables(self) -> frozenset[str]:
        """Unaccented syllables of this text and of the vocabularies' readings."""
        words = {strip_accents(word.lower()) for word in _LETTERS.findall(self.text)}
        return frozenset(words) | self.lexicon.reading_syllables()

    @cached_property
    def accent_map(self) -> dict[str, str]:
        """Unaccented run-together words of this text -> their accented reading, so that
        "phuchoa" in an address is read like "Phúc Hòa" elsewhere in the announcement."""
        words = [word.lower() for word in _LETTERS.findall(self.text)]
        plain = [strip_accents(word) for word in words]
        found: dict[str, str] = {}
        for i in range(len(words)):
            for n in range(1, min(4, len(words) - i) + 1):
                reading = " ".join(words[i : i + n])
                key = "".join(plain[i : i + n])
                if key != reading:
                    found.setdefault(key, reading)
        return found

    def read_address_part(self, part: str) -> str:
        """One label of a web or e-mail address: "dichvucong" -> "dịch vụ công"."""
        words = []
        for run in _RUNS.findall(part):
            if run.isdecimal():
                words.append(read_digits(run))
                continue
            lower = run.lower()
            found = (
                self.override(run)
                or self.lexicon.get("domain", lower)
                or self.lexicon.get("word", lower)
                or self.lexicon.get("abbr", run.upper())
                or self.accent_map.get(lower)
            )
            words.append(found if found is not None else self._segment_label(lower))
        return " ".join(words)

    def _known_piece(self, piece: str) -> str | None:
        found = (
            self.lexicon.get("domain", piece)
            or self.lexicon.get("word", piece)
            or self.accent_map.get(piece)
            or self._overrides_lower.get(piece)
        )
        if found is None and len(piece) >= 3 and not is_syllable(piece):
            found = self.lexicon.lower_abbr().get(piece)
        return found

    def _segment_label(self, label: str) -> str:
        """Cut a run-together label into known words, syllables and, failing those, letters:
        "ubndphuchoa" -> "ủy ban nhân dân" + "phúc hòa" (from this text) or "phuc hoa"."""
        n = len(label)
        if n > 60:
            return self.spell(label)
        best: list[tuple[float, list[str]] | None] = [None] * (n + 1)
        best[0] = (0.0, [])
        for end in range(1, n + 1):
            for start in range(max(0, end - 20), end):
                prev = best[start]
                if prev is None:
                    continue
                piece = label[start:end]
                reading = self._known_piece(piece)
                cost = 0.9
                if reading is None and end - start <= 7 and split_unaccented(piece) == (piece,):
                    reading = piece
                    # Syllables this text or the vocabularies use are likelier; a vowel-initial
                    # syllable and a ch/nh/ng onset right after a vowel ("phu choa" for "phuc hoa")
                    # are less likely cuts.
                    seen = piece in self.seen_syllables
                    cost = 0.8 if seen else 1.0
                    if piece[0] in "aeiouy":
                        cost += 0.1 if seen else 0.5
                    if start and piece[:2] in ("ch", "nh", "ng") and label[start - 1] in "aeiouy":
                        cost += 0.25
                if reading is None and end - start == 1:
                    reading, cost = self.letter(piece), 3.0
                if reading is None:
                    continue
                total = prev[0] + cost
                current = best[end]
                if current is None or total < current[0]:
                    best[end] = (total, [*prev[1], reading])
        result = best[n]
        return " ".join(result[1]) if result else self.spell(label)


# ---------------------------------------------------------------- patterns and handlers

# Invisible characters carry nothing to read and nothing the officer can see: dropped without a
# flag. Emoji and other visible symbols are flagged instead (symbols.py).
_DROP_CHARS = re.compile(
    "["
    "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"  # control characters (tab, newline, CR kept)
    "\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff\ufe00-\ufe0f"  # invisible format chars
    "\U000e0000-\U000e007f"  # tags
    "]+"
)


def _drop(match: re.Match[str], ctx: Context) -> str:
    return ""


# --- e-mail and web addresses
_EMAIL = re.compile(r"(?<![\w.@])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
# A path never ends in sentence punctuation: "xem tại abc.gov.vn/tin." keeps its final dot.
_URL_PATH = r"[^\s<>\"“”]*[^\s<>\"“”.,;:!?)\]}'’]"
_URL = re.compile(
    rf"(?<![\w.@/])(?:(?i:https?://){_URL_PATH}|(?:(?i:www)\.)?[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
    rf"\.(?i:vn|com|net|org|gov|edu|info|io|int|biz)(?![\w-])(?:/(?:{_URL_PATH})?)?)"
)
_ADDRESS_SEPARATORS = {
    ".": "chấm",
    "_": "gạch dưới",
    "-": "gạch ngang",
    "/": "gạch chéo",
    "+": "cộng",
    "?": "hỏi chấm",
    "=": "bằng",
    "&": "và",
    ":": "hai chấm",
    "%": "phần trăm",
}


def _read_address(address: str, ctx: Context) -> str:
    words = []
    for piece in re.split(r"([._/+?=&:%-])", address):
        if not piece:
            continue
        if piece in _ADDRESS_SEPARATORS:
            words.append(_ADDRESS_SEPARATORS[piece])
        else:
            words.append(ctx.read_address_part(piece))
    return " ".join(words)


def _email(match: re.Match[str], ctx: Context) -> str:
    local, _, domain = match.group(0).partition("@")
    return f"{_read_address(local, ctx)} a còng {_read_address(domain, ctx)}"


def _url(match: re.Match[str], ctx: Context) -> str | None:
    text = match.group(0)
    if not re.search(r"[A-Za-z]", text.split(".")[0]) and not text.lower().startswith("http"):
        return None
    body = re.sub(r"^(?i:https?://)", "", text)
    return _read_address(body.rstrip("/"), ctx)


# --- document numbers: 123/QĐ-UBND, 100/2019/NĐ-CP, 19-NQ/TW, Luật 59/2020/QH14
_CODE_PART = r"[A-ZĐ][A-Za-zĐđ]*\d*(?:&[A-ZĐ][A-Za-zĐđ]*)?"
_DOC_NUMBER = re.compile(
    rf"(?<![\w/.,])(\d{{1,5}})(?:/(\d{{4}}))?/({_CODE_PART}(?:[-–]{_CODE_PART})*)(?![\w&])"
    rf"|(?<![\w/.,])(\d{{1,5}})-({_CODE_PART})/({_CODE_PART})(?![\w&])"
)
_DOC_PREFIXES = {"S": "sở", "B": "bộ", "P": "phòng", "UB": "ủy ban"}


def _read_code_part(part: str, ctx: Context) -> str:
    found = ctx.override(part) or ctx.lexicon.get("doc", part) or ctx.lexicon.get("abbr", part)
    if found:
        return found
    if "&" in part:
        return " và ".join(_read_code_part(p, ctx) for p in part.split("&"))
    runs = _RUNS.findall(part)
    if len(runs) == 1 and len(part) > 1:
        for prefix, reading in _DOC_PREFIXES.items():
            rest = part[len(prefix) :]
            if part.startswith(prefix) and rest:
                inner = ctx.lexicon.get("doc", rest) or ctx.lexicon.get("abbr", rest)
                if inner:
                    return f"{reading} {inner}"
    words = []
    for run in runs:
        words.append(read_number(int(run)) if run.isdecimal() else ctx.read_letters(run, doc=True))
    return " ".join(words)


def _doc_number(match: re.Match[str], ctx: Context) -> str:
    if match.group(1) is not None:
        number, year, code = match.group(1), match.group(2), match.group(3)
        words = [read_integer_string(number)]
        if year:
            words += ["năm", read_number(int(year))]
        words += [_read_code_part(part, ctx) for part in re.split(r"[-–]", code)]
        return " ".join(words)
    number, first, second = match.group(4), match.group(5), match.group(6)
    return " ".join([read_integer_string(number), _read_code_part(first, ctx), _read_code_part(second, ctx)])


# --- phone numbers, digit by digit
_PHONE = re.compile(
    r"(?<![\d.,/])(?:"
    r"\+84[ .-]?(?:\d[ .-]?){8,9}\d"
    r"|\(0\d{1,3}\)[ .-]?(?:\d[ .-]?){6,8}\d"
    r"|0(?:[ .-]?\d){9,10}"
    r"|1[89]00[ .-]?\d{3,4}(?:[ .-]?\d{2,3})?"
    r")(?![\d]|[.,]\d)"
)


def _phone(match: re.Match[str], ctx: Context) -> str | None:
    text = match.group(0)
    if re.search(r"[ .-]{2}", text):
        return None
    words = []
    if text.startswith("+"):
        words.append("cộng")
    words.append(read_digits(text))
    return " ".join(words)


# --- dates
def _valid_day_month(day: int, month: int) -> bool:
    return 1 <= day <= 31 and 1 <= month <= 12


def _day(ctx: Context, pos: int, day: int) -> str:
    """The day of a date; no second "mùng" when the text already says "mùng 5/9"."""
    reading = read_day(day)
    if ctx.prev_word(pos) == "mùng" and reading.startswith("mùng "):
        return reading[len("mùng ") :]
    return reading


_DATE_RANGE = re.compile(
    r"(?<![\d/.,])(\d{1,2})[ \t]?[-–][ \t]?(\d{1,2})/(\d{1,2})(?:/(\d{4}))?(?![\w/]|[.,]\d)"
)


def _date_range(match: re.Match[str], ctx: Context) -> str | None:
    first, second, month = int(match.group(1)), int(match.group(2)), int(match.group(3))
    if not (_valid_day_month(first, month) and _valid_day_month(second, month) and first < second):
        return None
    words = [_day(ctx, match.start(), first), "đến", read_day(second), "tháng", read_month(month)]
    if match.group(4):
        words += ["năm", read_number(int(match.group(4)))]
    return " ".join(words)


_FULL_DATE = re.compile(
    r"(?<![\d/.,])(\d{1,2})(?:([/.-])|[ \t]([/-])[ \t])(\d{1,2})(?:\2|[ \t]\3[ \t])(\d{4})(?![\w/]|[.,]\d)"
)


def _full_date(match: re.Match[str], ctx: Context) -> str | None:
    day, month, year = int(match.group(1)), int(match.group(4)), int(match.group(5))
    if not _valid_day_month(day, month):
        return None
    return f"{_day(ctx, match.start(), day)} tháng {read_month(month)} năm {read_number(year)}"


_ISO_DATE = re.compile(r"(?<![\d/.,-])(\d{4})-(\d{2})-(\d{2})(?![\w/-]|[.,]\d)")


def _iso_date(match: re.Match[str], ctx: Context) -> str | None:
    year, month, day = int(match.group(1)), int(match.group(2)), int(match.group(3))
    if not _valid_day_month(day, month):
        return None
    return f"{_day(ctx, match.start(), day)} tháng {read_month(month)} năm {read_number(year)}"


_MONTH_YEAR = re.compile(r"(?<![\d/.,])(\d{1,3})([/-])(\d{4})(?![\w/]|[.,]\d)")


def _month_year(match: re.Match[str], ctx: Context) -> str | None:
    first, year = int(match.group(1)), int(match.group(3))
    prev = ctx.prev_word(match.start())
    if match.group(2) == "-" and prev != "tháng":
        return None  # 10-2024 is a range unless it follows "tháng"
    if prev == "tháng" and 1 <= first <= 12:
        return f"{read_month(first)} năm {read_number(year)}"
    if prev in _NUMBERED_PREV:
        return f"{read_number(first)} năm {read_number(year)}"
    if 1 <= first <= 12 and 1900 <= year <= 2199:
        return f"tháng {read_month(first)} năm {read_number(year)}"
    return None


# A letter may touch the second number only when it starts a unit: "1/2kg", "3/4m".
_DAY_MONTH = re.compile(r"(?<![\d/.,])(\d{1,3})(?:/| / )(\d{1,3})(?![\d_/]|[.,]\d| /)")
_UNIT_AFTER = re.compile(r"[ \t]?((?:[^\W\d_]|[²³/])+|[%‰°])")


def _unit_after(ctx: Context, pos: int) -> tuple[bool, bool]:
    """(a unit follows pos, letters are glued to pos): "1/2kg" -> (True, True)."""
    found = _UNIT_AFTER.match(ctx.text, pos)
    glued = pos < len(ctx.text) and (ctx.text[pos].isalpha())
    if not found:
        return False, glued
    term = found.group(1)
    is_unit = ctx.lexicon.get("unit", term) is not None and term.lower() not in _MONEY_WORDS
    return is_unit, glued


def _day_month(match: re.Match[str], ctx: Context) -> str | None:
    left, right = match.group(1), match.group(2)
    a, b = int(left), int(right)
    unit_next, glued = _unit_after(ctx, match.end())
    if glued and not unit_next:
        return None  # "15/3ngày": letters that are no unit; left to the later rules
    if unit_next and b and ctx.prev_word(match.start()) not in _DATE_PREV | _HOUSE_NUMBER_PREV:
        return f"{read_number(a)} phần {read_number(b)}"  # "1/2kg", "3/4 m": a part of a unit
    prev_words = ctx.prev_words(match.start(), 2)
    prev = prev_words[-1] if prev_words else ""
    before_prev = prev_words[0] if len(prev_words) == 2 else ""
    adjacent_prev = ctx.adjacent_prev_word(match.start())
    adjacent_next = ctx.adjacent_next_word(match.end())
    valid = len(left) <= 2 and _valid_day_month(a, b)
    date_cue = prev in _DATE_PREV or (prev in _WEEKDAY_NAMES and before_prev == "thứ")
    if a == 24 and b in (7, 24) and prev != "ngày":
        return f"{read_number(a)} trên {read_number(b)}"
    fraction_cue = adjacent_next in _FRACTION_NEXT or adjacent_prev in _FRACTION_PREV
    if prev in _HOUSE_NUMBER_PREV:
        return f"{read_number(a)} trên {read_number(b)}"  # số nhà 15/3
    if valid and (prev in ("ngày", "hôm", "mùng") or (date_cue and not fraction_cue)):
        return f"{_day(ctx, match.start(), a)} tháng {read_month(b)}"
    if fraction_cue or not valid:
        if b == 0:
            return None
        if adjacent_next in _SCORE_NEXT and a <= b:
            return f"{read_number(a)} trên {read_number(b)}"
        return f"{read_number(a)} phần {read_number(b)}"
    return f"{_day(ctx, match.start(), a)} tháng {read_month(b)}"


# "23 1/5": a whole number and a proper fraction ("hai mươi ba và một phần năm"); never after a
# word that makes "1/5" a date or "23" a house number, never a date's day and month.
_MIXED_FRACTION = re.compile(r"(?<![\d/.,])(\d{1,3})[ \t]+(\d)/(\d{1,2})(?![\d_/]|[.,]\d| /)")


def _mixed_fraction(match: re.Match[str], ctx: Context) -> str | None:
    whole, numerator, denominator = (int(group) for group in match.groups())
    if not 0 < numerator < denominator:
        return None
    prev = ctx.prev_word(match.start())
    if prev in _DATE_PREV or prev in _HOUSE_NUMBER_PREV or prev in ("tháng", "thứ", "năm"):
        return None
    unit_next, glued = _unit_after(ctx, match.end())
    if glued and not unit_next:
        return None
    return f"{read_number(whole)} và {read_number(numerator)} phần {read_number(denominator)}"


# "ngày 20-10", "ngày 2-9", "ngày 15.3": a day and a month joined by a dash or a dot, only
# right after "ngày".
_DASH_DATE = re.compile(r"(?<![\d/.,-])(\d{1,2})[-.](\d{1,2})(?![\w/-]|[.,]\d)")


def _dash_date(match: re.Match[str], ctx: Context) -> str | None:
    day, month = int(match.group(1)), int(match.group(2))
    words = ctx.prev_words(match.start(), 6)
    if not words or not _valid_day_month(day, month):
        return None
    if words[-1] == "ngày":
        if len(words) >= 2 and words[-2] in ("các", "những", "hai", "ba"):
            return None  # "các ngày 10-12" is a range of days
    else:
        # "Ngày Nhà giáo Việt Nam 20-11", "Quốc khánh 2-9": a holiday, not "from 20 to 11".
        if match.group(0)[len(match.group(1))] != "-" or not set(words) & _HOLIDAY_CUES:
            return None
        if ctx.adjacent_next_word(match.end()) not in _HOLIDAY_NEXT or words[-1] in _RANGE_PREV:
            return None
    return f"{_day(ctx, match.start(), day)} tháng {read_month(month)}"


_HOLIDAY_CUES = frozenset("ngày khánh lễ tết niệm mừng".split())
# What may follow such a holiday date; anything else ("5-7 đội") keeps the range reading.
_HOLIDAY_NEXT = frozenset(["", *"âm dương năm tại và hằng này tới vừa sắp là với của ở".split()])
_RANGE_PREV = frozenset("từ cấp khoảng tầm thứ lớp lần đợt số".split())


# --- times: 7h, 7h30, 07:30, 17h00, 7g30
# Typed without a space, a time may touch the word before or after it: "lúc7h30", "7h30ngày".
_TIME_GLUED_BEFORE = "".join(f"(?<={word})|" for word in ("lúc", "từ", "vào", "hồi", "đến", "tới"))
_TIME_GLUED_AFTER = "ngày|sáng|chiều|tối|trưa|đêm|hôm|thứ|đến|tới"
_TIME = re.compile(
    rf"(?:{_TIME_GLUED_BEFORE}(?<![\w.,:/]))"
    r"(\d{1,2})(?:(?:[hH]| h)(?: ?(\d{2})(?:[pP]|ph|')?)?|[gG](\d{2})|:(\d{2})(?::(\d{2}))?)"
    rf"(?:(?=(?:{_TIME_GLUED_AFTER})(?!\w))|(?![\w]|[.,:]\d))"
)


def _time(match: re.Match[str], ctx: Context) -> str | None:
    hour = int(match.group(1))
    minute_text = match.group(2) or match.group(3) or match.group(4)
    minute = int(minute_text) if minute_text else 0
    if hour > 24 or minute > 59:
        return None
    words = [read_number(hour), "giờ"]
    if minute:
        words += [read_number(minute), "phút"]
    if match.group(5) and int(match.group(5)):
        words += [read_number(int(match.group(5))), "giây"]
    return " ".join(words)


_ZERO_MINUTES = re.compile(r"(?<![\d.,])00(?:[ \t]+phút)?(?![\w])")


def _zero_minutes(match: re.Match[str], ctx: Context) -> str | None:
    return "" if ctx.prev_word(match.start()) == "giờ" else None


# --- Roman numerals in context: Quý II, Đại hội XIII, khóa XV, lần thứ IV, Quý II/2024
_ROMAN = re.compile(r"(?<![\w])([IVXLC]+|[ivx]+)(?:/(\d{4}))?(?![\w]|/\d)")
# A lower-case numeral ("quý iii", "chương iv") is read only right after one of these words:
# "vi", "xi", "i" are also Vietnamese syllables ("vi phạm", "xi măng").
_LOWER_ROMAN_CONTEXT = frozenset(
    "quý chương điều khoản mục phần đoạn số lục năm thứ khóa khoá kỳ kì lần kỷ kỉ tập".split()
)
# The numerals that are also syllables need an end after them ("lần vi phạm" stays words).
_SYLLABLE_NUMERALS = frozenset("i v x vi xi".split())
_AFTER_SYLLABLE_NUMERAL = frozenset(["", *"năm và hoặc đến tới của này".split()])


def _lower_roman_in_context(match: re.Match[str], ctx: Context) -> bool:
    prev = ctx.adjacent_prev_word(match.start())
    if prev not in _LOWER_ROMAN_CONTEXT:
        return False
    before = ctx.prev_words(match.start(), 2)
    if prev == "lục" and before[:1] != ["phụ"]:
        return False  # "phụ lục ii"
    if prev in ("kỷ", "kỉ") and before[:1] != ["thế"]:
        return False  # "thế kỷ xxi"
    if match.group(1) in _SYLLABLE_NUMERALS:
        return ctx.adjacent_next_word(match.end()) in _AFTER_SYLLABLE_NUMERAL
    return True


def _roman(match: re.Match[str], ctx: Context) -> str | None:
    numeral, year = match.group(1), match.group(2)
    if numeral.islower():
        if not _lower_roman_in_context(match, ctx):
            return None
        numeral = numeral.upper()
    value = roman_value(numeral)
    if value is None:
        return None
    prev = ctx.prev_word(match.start())
    in_context = prev in _ROMAN_CONTEXT or _is_heading(match, ctx)
    if not in_context:
        # Standalone numerals of several letters (headings "II.", "Đại hội XIII") are Roman;
        # single letters and ones with L/C (CV = công văn) need a context word.
        if len(numeral) < 2 or set(numeral) - set("IVX") or ctx.lexicon.get("abbr", numeral):
            return None
        if _is_caps_neighbour(ctx.raw_prev_word(match.start())) and _is_caps_neighbour(
            ctx.raw_next_word(match.end())
        ):
            return None
    reading = read_ordinal(value) if prev == "thứ" else read_number(value)
    if year:
        reading += f" năm {read_number(int(year))}"
    return reading


def _is_heading(match: re.Match[str], ctx: Context) -> bool:
    """ "I. MỤC ĐÍCH" / "V) ...": a numeral alone at the start of a line, before "." or ")"."""
    return not ctx._line_before(match.start()).strip() and ctx.after(match.end(), 2)[:2] in (". ", ") ")


def _is_caps_neighbour(word: str) -> bool:
    return len(word) >= 2 and word.isupper() and not word.isdecimal()


# --- lexicon: abbreviations, units, foreign words
# Signature blocks ("TM. UBND XÃ", "KT. CHỦ TỊCH"): only before a space, never in "TL.741"
# (tỉnh lộ); their readings come from the vocabulary like other abbreviations.
_SIGNATURE_TERMS = frozenset({"TM.", "KT.", "TL.", "TUQ."})
_SIGNATURE = re.compile(r"(?<![\w.])(?:TM|KT|TL|TUQ)\.(?=[ \t])")


def _signature(match: re.Match[str], ctx: Context) -> str | None:
    return ctx.lexicon.get("abbr", match.group(0))


# Abbreviations whose lower-case spelling is an ordinary (English) word.
_NO_LOWER_VARIANT = frozenset({"WHO", "AIDS", "ASEAN"})


def build_lexicon_pattern(lexicon: Lexicon) -> re.Pattern[str]:
    exact = [term for term in lexicon.entries["abbr"] if term not in _SIGNATURE_TERMS]
    exact += list(lexicon.entries["unit"])
    lower_variants = [
        term.lower()
        for term in lexicon.entries["abbr"]
        if len(term) >= 3
        and term.isalpha()
        and not is_syllable(term)
        and term.lower() not in lexicon.entries["word"]
        and term not in _NO_LOWER_VARIANT
    ]
    body = alternation(exact + lower_variants)
    words = alternation(lexicon.entries["word"], ignore_case=True)
    return re.compile(rf"(?<![^\W\d_])(?:{body}|{words})")


# Units that are also words, names or abbreviations of their own ("kv" khu vực, "cc", "hp"): read
# as units only right after a number.
_QUANTITY_ONLY_UNITS = frozenset("tr ph gr kw kv hp inch cc".split())


def _is_ambiguous_unit(term: str) -> bool:
    return len(term) == 1 or is_syllable(term) or term.lower() in _QUANTITY_ONLY_UNITS


def _after_quantity(match: re.Match[str], ctx: Context) -> bool:
    before = ctx.text[max(0, match.start() - 2) : match.start()]
    last = before[-1:]
    if last and (last.isdecimal() or last in "%/"):
        return True
    if len(before) == 2 and last in (" ", "\t") and before[0].isdecimal():
        return True
    return ctx.adjacent_prev_word(match.start()) in _NUMBER_WORDS


# Abbreviations with two common readings: the other reading applies when one of the cue words
# stands among the three words before or after ("BCH Quân sự" = ban chỉ huy, "BCH Đoàn" = ban
# chấp hành; "ĐH, CĐ" = cao đẳng, "CĐ cơ sở" = công đoàn).
_CONTEXT_ABBREVIATIONS: dict[str, tuple[frozenset[str], str]] = {
    "BCH": (frozenset("quân qs pctt tkcn phòng pccc".split()), "ban chỉ huy"),
    "CĐ": (frozenset("đh đại trung tc tccn cao sinh thpt nghề".split()), "cao đẳng"),
    "5K": (frozenset("giá phí tiền bán mua vé trả".split()), "năm nghìn"),  # else the 5K of Bộ Y tế
}


# Road numbers written with a dot: "ĐT.741", "QL.1A" (the dot is no pause, 741 no phone number).
_ROAD_CODE = re.compile(r"(?<![\w.])(QL|TL|ĐT|ĐH|HL)\.(?=\d)")
_ROAD_BEFORE = re.compile(r"(?<![\w.])(?:QL|TL|ĐT|ĐH|HL)\.?$")


def _road_code(match: re.Match[str], ctx: Context) -> str | None:
    return ctx.override(match.group(1)) or ctx.lexicon.get("code", match.group(1))


def _context_abbreviation(term: str, match: re.Match[str], ctx: Context) -> str | None:
    entry = _CONTEXT_ABBREVIATIONS.get(term)
    if entry is None:
        return None
    cues, reading = entry
    around = ctx.prev_words(match.start(), 3) + [
        w.lower() for w in _WORD.findall(ctx.after(match.end(), 40))[:3]
    ]
    return reading if cues & set(around) else None


def _lexicon(match: re.Match[str], ctx: Context) -> str | None:
    term = match.group(0)
    lexicon = ctx.lexicon
    abbr = lexicon.get("abbr", term)
    if abbr is None and term.islower() and not lexicon.get("unit", term):
        abbr = lexicon.lower_abbr().get(term)
    if abbr is not None and lexicon.get("unit", term) and re.search(r"\d[ \t]?$", ctx.text[: match.start()]):
        abbr = None  # "90 CV" is horsepower, not a "công văn"
    if abbr is not None:
        abbr = _context_abbreviation(term, match, ctx) or abbr
        letters = term.rstrip(".")
        if (
            letters.isalpha()
            and is_syllable(letters)
            and (
                _is_caps_neighbour(ctx.raw_prev_word(match.start()))
                or _is_caps_neighbour(ctx.raw_next_word(match.end()))
            )
        ):
            return None  # a word of a headline in capitals ("AN TOÀN"), not an abbreviation
        following = ctx.raw_next_word(match.end())[:1]
        if len(term) == 2 and term.endswith(".") and not (following.isupper() or following.isdecimal()):
            return None  # "X." is "xã" only before a name or a number
        return abbr
    unit = lexicon.get("unit", term)
    if unit is not None:
        if _is_ambiguous_unit(term) and not _after_quantity(match, ctx):
            return None
        if term.lower() == "g" and match.start() > 0 and ctx.text[match.start() - 1].isdecimal():
            if set(ctx.prev_words(match.start(), 4)) & _NETWORK_WORDS:
                return ctx.letter("g")  # mạng 4g
        return unit
    return lexicon.get("word", term.lower())


# --- "2x3m": a multiplication sign between numbers
_TIMES = re.compile(r"(?<=\d)[ \t]?[xX×*][ \t]?(?=\d)")


def _times(match: re.Match[str], ctx: Context) -> str:
    return " nhân "


# --- codes that mix letters and digits: 4G, F0, QL1A, B52
_ALNUM = re.compile(r"(?<![\w])(?<!\d[.,])(?=[^\W_]*\d)(?=[^\W_]*[^\W\d_])[^\W_]+(?![\w])")


def _alnum(match: re.Match[str], ctx: Context) -> str:
    words = []
    for run in _RUNS.findall(match.group(0)):
        if run.isdecimal():
            words.append(read_integer_string(run) if len(run) < 4 else read_digits(run))
        else:
            words.append(ctx.read_letters(run))
    return " ".join(words)


# --- numbers whose reading depends on the word before: thứ 2, tháng 4, ngày 5 tháng 9
_SMALL_NUMBER = re.compile(r"(?<![\d.,])(\d{1,3})(?![\d]|[.,]\d)")


_LIST_AFTER = re.compile(
    r"\b([Tt]hứ|[Tt]háng) \d{1,2}(?:[ \t]*(?:,|và|hoặc)[ \t]*\d{1,2})*[ \t]*(?:,|và|hoặc)[ \t]*$"
)


def _contextual_number(match: re.Match[str], ctx: Context) -> str | None:
    value = int(match.group(1))
    prev = ctx.adjacent_prev_word(match.start())
    listed = _LIST_AFTER.search(ctx._line_before(match.start()))
    if listed and ctx.adjacent_next_word(match.end()) not in COUNT_WORDS:
        prev = listed.group(1).lower()  # "thứ 2, 4, 6": every number of the list is a weekday
    if prev == "thứ":
        return read_ordinal(value)
    if prev == "tháng" and 1 <= value <= 12:
        return read_month(value)
    if prev == "ngày" and ctx.adjacent_next_word(match.end()) == "tháng" and 1 <= value <= 31:
        return read_day(value)
    if prev == "mùng" and 1 <= value <= 31:
        return read_number(value)
    return None


# --- all other numbers
_NUMBER = re.compile(
    r"(?<![\d])(?:"
    r"(?P<th>\d{1,3}(?:\.\d{3})+)(?:,(?P<thf>\d+))?"
    r"|(?P<en>\d{1,3}(?:,\d{3}){2,})"
    r"|(?P<dp>\d+)\.(?P<dpf>\d{1,2})"
    r"|(?P<int>\d+)(?:,(?P<frac>\d+))?"
    r")(?![\d])"
)


# Words before a long bare number that make it an amount of money or a quantity.
_AMOUNT_CUES = (
    "số tiền",
    "tiền",
    "tổng",
    "tổng cộng",
    "tổng số",
    "kinh phí",
    "trị giá",
    "giá",
    "phạt",
    "ngân sách",
    "doanh thu",
    "vốn",
    "thu nhập",
    "lương",
    "hỗ trợ",
    "bồi thường",
    "đầu tư",
    "dân số",
    "sản lượng",
)


def _is_amount(match: re.Match[str], ctx: Context) -> bool:
    after = ctx.after(match.end(), 12)
    glued = re.match(r"[^\W\d_]+|\S", after)
    if glued and (
        glued.group(0).lower() in _MONEY_WORDS
        or unicodedata.category(glued.group(0)[0]) == "Sc"
        or ctx.lexicon.get("unit", glued.group(0)) is not None
    ):
        return True  # "1000000000đ", "2000000000$", "1500000000m2"
    next_word = ctx.adjacent_next_word(match.end())
    if next_word in _MONEY_WORDS or ctx.lexicon.get("unit", next_word) is not None:
        return True
    return ctx.prev_has(match.start(), _AMOUNT_CUES, n=5)


def _after_minus(match: re.Match[str], ctx: Context) -> bool:
    before = ctx.text[max(0, match.start() - 2) : match.start()]
    return before[-1:] in ("-", "−") and not before[:1].isalnum()


def _number(match: re.Match[str], ctx: Context) -> str:
    if match.group("th"):
        words = read_number(int(match.group("th").replace(".", "")))
        if match.group("thf"):
            words += " phẩy " + read_fraction_digits(match.group("thf"))
        return words
    if match.group("en"):
        return read_number(int(match.group("en").replace(",", "")))
    if match.group("dp"):
        following = ctx.after(match.end(), 12).lstrip()
        next_word = ctx.adjacent_next_word(match.end())
        is_decimal = (
            match.group("dp") == "0"  # "0.5": no version or section number starts with 0
            or _after_minus(match, ctx)
            or following[:1] in ("%", "°")
            or next_word in _MAGNITUDES
            or ctx.lexicon.get("unit", next_word) is not None
        )
        return read_decimal(match.group("dp"), match.group("dpf"), "phẩy" if is_decimal else "chấm")
    digits, fraction = match.group("int"), match.group("frac")
    if fraction is None and len(digits) >= 3:
        next_word = ctx.adjacent_next_word(match.end())
        following = ctx.after(match.end(), 3).lstrip()
        counted = next_word in COUNT_WORDS or following[:1] in ("%", "°")
        road = _ROAD_BEFORE.search(ctx.text, max(0, match.start() - 4), match.start())
        if not counted and not road and ctx.prev_has(match.start(), _DIGIT_TRIGGERS):
            return read_digits(digits)
        if (
            not counted
            and digits in _EMERGENCY_NUMBERS
            and ctx.prev_has(match.start(), _EMERGENCY_TRIGGERS, n=_EMERGENCY_WINDOW, skip_numbers=True)
        ):
            return read_digits(digits)
        if len(digits) >= 10:
            # Ten digits and more without separators: a phone, account or ID number unless the
            # words around make it an amount ("1000000000đ", "số tiền 2500000000").
            if not digits.startswith("0") and (counted or _is_amount(match, ctx)):
                return read_number(int(digits))
            if digits.startswith("0"):
                return read_digits(digits)
            return Flagged(read_digits(digits), long_number_note(digits))
    return read_decimal(digits, fraction)


# --- symbols
_SYMBOL = re.compile(
    r"[ \t]*[-–—−][ \t]*|/|&|\+|=|>=|<=|[><≥≤≈~×@#№%‰°$]|\.{2,}|…|[()\[\]{}]|[\"“”„«»'‘’`*_|\\^•·●■□▪►▶→←⇒✓]"
)
_PLAIN_SYMBOLS = {
    "&": " và ",
    "=": " bằng ",
    ">": " lớn hơn ",
    "<": " nhỏ hơn ",
    ">=": " lớn hơn hoặc bằng ",
    "<=": " nhỏ hơn hoặc bằng ",
    "≥": " lớn hơn hoặc bằng ",
    "≤": " nhỏ hơn hoặc bằng ",
    "≈": " xấp xỉ ",
    "×": " nhân ",
    "@": " a còng ",
    "№": " số ",
    "%": " phần trăm ",
    "‰": " phần nghìn ",
    "°": " độ ",
    "$": " đô la ",
    "…": ".",
    "(": ",",
    ")": ",",
    "[": ",",
    "]": ",",
    "{": ",",
    "}": ",",
}


_QUANTITY_END = re.compile(r"\d(?:[hHg]\d*)?[ \t]*(?:([^\W\d_]+|%|‰|°C?|°F|độ C)[ \t]*)?$")
_CHAIN = re.compile(r"\d+(?:-\d+){2,}")
_WEEKDAY_START = re.compile(r"[ \t]*(?:T[2-7]|CN|[Tt]hứ|[Cc]hủ)(?!\w)")


def _is_numeric_end(ctx: Context, pos: int) -> bool:
    """Does the text before pos end like a quantity (15, 7h30, 14h, 50%, 30°C, 60.000đ)?"""
    match = _QUANTITY_END.search(ctx._line_before(pos, 16))
    if not match:
        return False
    unit = match.group(1)
    if unit is None or not unit[0].isalpha():
        return True
    return unit in _MAGNITUDES or ctx.lexicon.get("unit", unit) is not None


def _dash_is_range(match: re.Match[str], ctx: Context) -> bool:
    after = ctx.after(match.end(), 12)
    if ctx.next_char(match.end()).isdecimal():
        if not _is_numeric_end(ctx, match.start()):
            return False
        line_start = match.start() - len(ctx._line_before(match.start()))
        for chain in _CHAIN.finditer(ctx.text, line_start, match.end() + 12):
            if chain.start() <= match.start() < chain.end():
                return False  # NPK 16-16-8
        return ctx.prev_has(match.start(), ("tỷ số", "tỉ số")) is False
    if _WEEKDAY_START.match(after):
        prev = ctx.prev_words(match.start(), 2)
        return bool(prev) and (
            prev[-1] in _WEEKDAY_NAMES
            or prev[-1][:1].isdecimal()
            or prev[-1] == "nhật"
            or re.fullmatch(r"t[2-7]|cn", prev[-1]) is not None  # T2-T6
        )
    return False


# What may stand right before the minus of "-3" (no space): an opening bracket, a colon, "=".
_BEFORE_MINUS = frozenset("([{:=<>≤≥~;,“\"'")
_TEMPERATURE_AFTER = re.compile(r"\d+(?:[.,]\d+)?[ \t]*(?:°|độ)")


def _is_minus(match: re.Match[str], ctx: Context) -> bool:
    """ "-3", "-0,5": a dash glued to a number, after a space or a bracket, that is no range (those
    are tested first) and no part of a code ("COVID-19", "F-16"). "−" (U+2212) is always a minus."""
    text = match.group(0)
    if text.endswith((" ", "\t")) or not ctx.next_char(match.end()).isdecimal():
        return False
    if text.strip(" \t") == "−":
        return True
    if _is_numeric_end(ctx, match.start()):
        return False  # "tỷ số 2 -1", "NPK 16 -16": a number before, and no range: a separator
    return text.startswith((" ", "\t")) or ctx.prev_char(match.start()) in _BEFORE_MINUS


def _is_minus_at_line_start(match: re.Match[str], ctx: Context) -> bool:
    """ "-5 hộ" at the start of a line is a list item; "-3°C" and "−5" are negative numbers."""
    text = match.group(0)
    if text.endswith((" ", "\t")) or not ctx.next_char(match.end()).isdecimal():
        return False
    return text.strip(" \t") == "−" or _TEMPERATURE_AFTER.match(ctx.after(match.end())) is not None


def _symbol(match: re.Match[str], ctx: Context) -> str:
    text = match.group(0)
    core = text.strip(" \t")
    if core in "-–—−" and core:
        line_before = ctx._line_before(match.start()).strip(" \t")
        if not line_before:
            if _is_minus_at_line_start(match, ctx):
                return "âm "
            return ""  # a bullet at the start of a line
        if _dash_is_range(match, ctx):
            return " đến "
        if _is_minus(match, ctx):
            return " âm "
        if text != core:
            return ", "
        return " "
    if core == "/":
        next_word = ctx.adjacent_next_word(match.end())
        prev_word = ctx.raw_prev_word(match.start())
        if (
            next_word in PER_WORDS
            or ctx.lexicon.get("unit", ctx.raw_next_word(match.end()))
            or prev_word.lower() in _MONEY_WORDS
            or (ctx.lexicon.get("unit", prev_word) and not _is_ambiguous_unit(prev_word))
        ):
            if ctx.next_char(match.end()).isdecimal():
                return " trên "  # 80 mg/100 ml: a rate over a quantity
            return " một "  # đồng/hồ sơ, 30.000đ/người, kg/khẩu
        return " "
    if core == "+":
        if not ctx._line_before(match.start()).strip(" \t"):
            return ""
        return " cộng "
    if core == "~":
        return " khoảng " if ctx.next_char(match.end()).isdecimal() else " "
    if core == "#":
        return " số " if ctx.next_char(match.end()).isdecimal() else " "
    if core.startswith(".."):
        return "."
    return _PLAIN_SYMBOLS.get(core, " ")


# --- words left over: capitals that are not syllables are spelled; single consonants named
_CONSONANTS = frozenset("bcdđfghjklmnpqrstvwxzBCDĐFGHJKLMNPQRSTVWXZ")


def _word(match: re.Match[str], ctx: Context) -> str:
    raw = match.group(0)
    if raw.isalpha():
        return _read_word(raw, ctx)
    # Letters mixed with number-like signs that no earlier rule read ("Ⅻ", "①", "ⁿ"): a sign with
    # a whole value is read as that number, anything else is flagged, never dropped silently.
    words: list[str] = []
    unread: list[str] = []
    for is_letter, group in groupby(raw, key=str.isalpha):
        run = "".join(group)
        if is_letter:
            words.append(_read_word(run, ctx))
            continue
        for ch in run:
            value = unicodedata.numeric(ch, -1.0)
            if value >= 0 and value == int(value):
                words.append(read_number(int(value)))
            else:
                unread.append(ch)
    reading = " ".join(words)
    return Flagged(reading, stray_characters_note("".join(unread))) if unread else reading


def _read_word(word: str, ctx: Context) -> str:
    if len(word) == 1:
        return ctx.letter(word) if word in _CONSONANTS else word.lower()
    if word.isupper() and not is_syllable(word):
        return ctx.compound_abbreviation(word) or ctx.spell(word)
    return word.lower()


# --- whatever is left: spaces, sentence punctuation; anything else is flagged, never dropped
_REST = re.compile(r"\s+|[.,;:!?]+|.", re.DOTALL)


def _rest(match: re.Match[str], ctx: Context) -> str:
    text = match.group(0)
    if text.isspace():
        return "\n" if "\n" in text or "\r" in text else " "
    if text[0] in ".,;:!?":
        for mark in "?!.;:":
            if mark in text:
                return mark
        return ","
    if unicodedata.category(text) in ("Cc", "Cf"):
        return ""
    return Flagged("", symbol_note(text))


def build_rules(lexicon: Lexicon, override_pattern: re.Pattern[str] | None) -> list[Rule]:
    """The rules in the order they run. Earlier rules claim text first."""
    rules = []
    if override_pattern is not None:
        rules.append(Rule("override", override_pattern, _override))
    rules += [
        # Emoji before the invisible characters: a variation selector or a joiner belongs to its
        # emoji ("⚠️", "👨‍👩‍👧" are one flag each).
        Rule("emoji", symbols.EMOJI, symbols.emoji),
        Rule("drop", _DROP_CHARS, _drop),
        Rule("email", _EMAIL, _email),
        Rule("url", _URL, _url),
        Rule("vehicle plate", shorthand.PLATE, shorthand.plate),
        Rule("document number", _DOC_NUMBER, _doc_number),
        Rule("phone", _PHONE, _phone),
        Rule("date range", _DATE_RANGE, _date_range),
        Rule("date", _FULL_DATE, _full_date),
        Rule("iso date", _ISO_DATE, _iso_date),
        Rule("month/year", _MONTH_YEAR, _month_year),
        Rule("time", _TIME, _time),
        Rule("duration shorthand", shorthand.DURATION, shorthand.duration),
        Rule("money shorthand", shorthand.MONEY_SHORTHAND, shorthand.money_shorthand),
        Rule("zero minutes", _ZERO_MINUTES, _zero_minutes),
        Rule("mixed fraction", _MIXED_FRACTION, _mixed_fraction),
        Rule("day/month or fraction", _DAY_MONTH, _day_month),
        Rule("day-month", _DASH_DATE, _dash_date),
        Rule("times sign", _TIMES, _times),
        Rule("currency before amount", symbols.CURRENCY_BEFORE, symbols.currency_before),
        Rule("vulgar fraction", symbols.VULGAR_FRACTION, symbols.vulgar_fraction),
        Rule("roman", _ROMAN, _roman),
        Rule("signature", _SIGNATURE, _signature),
        Rule("road code", _ROAD_CODE, _road_code),
        Rule("lexicon", build_lexicon_pattern(lexicon), _lexicon),
        Rule("superscript", symbols.SUPERSCRIPT, symbols.superscript),
        Rule("code", _ALNUM, _alnum),
        Rule("contextual number", _SMALL_NUMBER, _contextual_number),
        Rule("number", _NUMBER, _number),
        Rule("symbol", _SYMBOL, _symbol),
        Rule("word", _LETTERS, _word),
        Rule("other symbol", symbols.OTHER_SYMBOL, symbols.other_symbol),
        Rule("rest", _REST, _rest),
    ]
    return rules


def build_override_pattern(overrides: Mapping[str, str]) -> re.Pattern[str] | None:
    if not overrides:
        return None
    parts = []
    for term in sorted(overrides, key=lambda t: (-len(t), t)):
        body = re.escape(term)
        if term == term.lower():
            body = f"(?i:{body})"
        if re.match(r"\w", term[0]):
            body = r"(?<!\w)" + body
        if re.match(r"\w", term[-1]):
            body += r"(?!\w)"
        parts.append(body)
    return re.compile("|".join(parts))


def _override(match: re.Match[str], ctx: Context) -> str | None:
    return ctx.override(match.group(0))

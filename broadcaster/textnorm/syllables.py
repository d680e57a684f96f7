"""What a Vietnamese syllable looks like, used to tell a word written in capitals
("THÔNG BÁO") from an acronym to spell out ("VNPT"), and to split unaccented
run-together words in web addresses ("dichvucong" -> "dich vu cong")."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# Tone marks: grave, acute, hook above, tilde, dot below. Breve, circumflex and horn stay.
_TONE_MARKS = {"\u0300", "\u0301", "\u0309", "\u0303", "\u0323"}
_ALL_MARKS_TABLE = str.maketrans({"đ": "d", "Đ": "D"})

_ONSETS = ("ngh ng nh ch gh gi kh ph qu th tr b c d đ g h k l m n p r s t v x").split()

_RIMES = """
a ai ao au ay ac ach am an ang anh ap at
ăc ăm ăn ăng ăp ăt
âc âm ân âng âp ât âu ây
e eo ec em en eng ep et
ê êch êm ên êng ênh êp êt êu
i ia iu ich im in inh ip it iêc iêm iên iêng iêp iêt iêu
o oa oac oach oai oam oan oang oanh oao oap oat oay oăc oăm oăn oăng oăt oe oen oeo oet oc oi om on ong op ot ooc oong
ô ôc ôi ôm ôn ông ôp ôt
ơ ơi ơm ơn ơp ơt
u ua uân uâng uât uây ui uc um un ung up ut uê uêch uênh uơ uy uya uych uyên uyêt uynh uyt uyu uôc uôi uôm uôn uông uôt
ư ưa ưc ưi ưm ưn ưng ưt ưu ươc ươi ươm ươn ương ươp ươt ươu
y ych ynh yt yu yêm yên yêng yêt yêu
""".split()


def strip_tones(text: str) -> str:
    """Remove the five tone marks, keep vowel quality marks (â, ê, ô, ơ, ư, ă)."""
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFC", "".join(ch for ch in decomposed if ch not in _TONE_MARKS))


def strip_accents(text: str) -> str:
    """Plain ASCII letters: "Phúc Hòa" -> "Phuc Hoa"."""
    decomposed = unicodedata.normalize("NFD", text.translate(_ALL_MARKS_TABLE))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _alternation(items: list[str]) -> str:
    return "|".join(re.escape(item) for item in sorted(set(items), key=len, reverse=True))


_SYLLABLE = re.compile(f"(?:{_alternation(_ONSETS)})?(?:{_alternation(_RIMES)})")
_ASCII_RIMES = sorted({strip_accents(rime) for rime in _RIMES}, key=len, reverse=True)
_ASCII_ONSETS = sorted({strip_accents(onset) for onset in _ONSETS}, key=len, reverse=True)
_ASCII_SYLLABLE = re.compile(f"(?:{_alternation(_ASCII_ONSETS)})?(?:{_alternation(_ASCII_RIMES)})")


def is_syllable(word: str) -> bool:
    """True for one well-formed Vietnamese syllable, any case, with or without tones."""
    return bool(_SYLLABLE.fullmatch(strip_tones(word.lower())))


def _is_ascii_syllable(word: str) -> bool:
    return bool(_ASCII_SYLLABLE.fullmatch(word))


_SPLIT_ONSETS = ("ch", "nh", "ng")


@lru_cache(maxsize=1024)
def split_unaccented(word: str) -> tuple[str, ...] | None:
    """Split run-together unaccented syllables: "thuedientu" -> ("thue", "dien", "tu").

    Fewest syllables wins; syllables without an initial consonant cost a little more, so
    "hanoi" is "ha noi" rather than "han oi". None when no split exists."""
    word = word.lower()
    n = len(word)
    if n == 0 or n > 40:
        return None
    best: list[tuple[float, tuple[str, ...]] | None] = [None] * (n + 1)
    best[0] = (0.0, ())
    for end in range(1, n + 1):
        for start in range(max(0, end - 7), end):
            prev = best[start]
            piece = word[start:end]
            if prev is None or not _is_ascii_syllable(piece):
                continue
            cost = prev[0] + 1.0 + (0.5 if piece[0] in "aeiouy" else 0.0)
            if start and piece[:2] in _SPLIT_ONSETS and word[start - 1] in "aeiouy":
                # "phuchoa" is "phuc hoa" far more often than "phu choa".
                cost += 0.25
            current = best[end]
            if current is None or cost < current[0]:
                best[end] = (cost, (*prev[1], piece))
    result = best[n]
    return result[1] if result else None

"""Vocabularies of the normalizer, read from data files a deployment can extend.

Format of every file (the shipped ones in ``data/`` and those in ``TextnormConfig.lexicon_files``)::

    # comment
    term<TAB>reading[<TAB>kind]

``kind`` is one of :data:`KINDS` (default ``abbr``). Files are read in order, shipped files
first; a later line for the same (kind, term) wins. Readings are stored lower-case NFC.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from broadcaster.textnorm.errors import NormalizationError

_LOGGER = logging.getLogger(__name__)

DATA_DIR = Path(__file__).with_name("data")
# Shipped files in reading order.
SHIPPED_FILES = (
    "abbreviations.tsv",
    "docs.tsv",
    "codes.tsv",
    "units.tsv",
    "words.tsv",
    "domains.tsv",
    "letters.tsv",
    "symbols.tsv",
)

KINDS = ("abbr", "word", "unit", "doc", "code", "domain", "letter", "symbol")


class LexiconError(NormalizationError):
    """A vocabulary file is unreadable or malformed."""


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def clean_reading(reading: str) -> str:
    """Readings are lower-case NFC with single spaces."""
    return " ".join(_nfc(reading).lower().split())


@dataclass
class Lexicon:
    """Term -> reading, per kind. ``entries[kind][term]``; ``word`` and ``domain`` keys are lower-case."""

    entries: dict[str, dict[str, str]] = field(default_factory=lambda: {kind: {} for kind in KINDS})
    _lower_cache: dict[str, str] | None = field(default=None, repr=False, compare=False)
    _syllable_cache: frozenset[str] | None = field(default=None, repr=False, compare=False)

    def add(self, term: str, reading: str, kind: str = "abbr") -> None:
        if kind not in KINDS:
            raise LexiconError(f"Loại mục từ không hợp lệ: {kind!r} (unknown lexicon kind {kind!r})")
        term = _nfc(term).strip()
        if not term:
            raise LexiconError("Mục từ trống (empty lexicon term)")
        if kind in ("word", "domain", "letter"):
            term = term.lower()
        self.entries[kind][term] = clean_reading(reading)
        self._lower_cache = None
        self._syllable_cache = None

    def get(self, kind: str, term: str) -> str | None:
        return self.entries[kind].get(term)

    def reading_syllables(self) -> frozenset[str]:
        """Every syllable the readings use, without accents: evidence for splitting addresses."""
        if self._syllable_cache is None:
            from broadcaster.textnorm.syllables import strip_accents

            found: set[str] = set()
            for entries in self.entries.values():
                for reading in entries.values():
                    found.update(strip_accents(reading).split())
            self._syllable_cache = frozenset(found)
        return self._syllable_cache

    def lower_abbr(self) -> dict[str, str]:
        """Lower-case spellings of abbreviations ("ubnd" -> UBND's reading), first entry wins."""
        if self._lower_cache is None:
            found: dict[str, str] = {}
            for term, reading in self.entries["abbr"].items():
                found.setdefault(term.lower(), reading)
            self._lower_cache = found
        return self._lower_cache

    def load_file(self, path: Path) -> int:
        """Read one TSV file; return how many entries it held."""
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise LexiconError(
                f"Không đọc được tệp từ điển {path}: {exc} (cannot read lexicon file {path})"
            ) from exc
        count = 0
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.rstrip("\r")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) < 2 or not parts[0].strip() or not parts[1].strip():
                raise LexiconError(
                    f"{path}:{number}: cần 'từ<TAB>cách đọc' (expected 'term<TAB>reading'): {line!r}"
                )
            kind = parts[2].strip() if len(parts) > 2 and parts[2].strip() else "abbr"
            try:
                self.add(parts[0], parts[1], kind)
            except LexiconError as exc:
                raise LexiconError(f"{path}:{number}: {exc}") from exc
            count += 1
        _LOGGER.debug("lexicon %s: %s entries", path, count)
        return count

    @classmethod
    def load(cls, extra_files: Iterable[Path] = ()) -> Lexicon:
        lexicon = cls()
        for name in SHIPPED_FILES:
            lexicon.load_file(DATA_DIR / name)
        for path in extra_files:
            lexicon.load_file(Path(path))
        return lexicon


def clean_overrides(entries: Mapping[str, str]) -> dict[str, str]:
    """Officer's dictionary (web "Từ điển"): NFC terms, lower-case readings; empty rows skipped."""
    cleaned: dict[str, str] = {}
    for term, reading in entries.items():
        if not isinstance(term, str) or not isinstance(reading, str):
            raise NormalizationError(
                "Từ điển phải gồm các cặp chuỗi (the lexicon must map strings to strings)"
            )
        term = " ".join(_nfc(term).split())
        if term and reading.strip():
            cleaned[term] = clean_reading(reading)
    return cleaned


def alternation(terms: Iterable[str], ignore_case: bool = False) -> str:
    """Regex alternation, longest first, each term bounded on the right when it ends in a word
    character (so "m" does not match inside "mới")."""
    parts = []
    for term in sorted(set(terms), key=lambda t: (-len(t), t)):
        body = re.escape(term)
        if ignore_case:
            body = f"(?i:{body})"
        if re.match(r"\w", term[-1]):
            body += r"(?!\w)"
        parts.append(body)
    return "|".join(parts)

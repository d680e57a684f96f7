"""Which reading of a term an engine uses: the officers' lexicon with per-engine (and per-voice)
entries and phonetic hints, resolved for the engine that actually reads the text.

An entry applies to every engine (``engine == ""``), to one engine (``engine="espeak-ng"``) or to
one voice of one engine (``engine="google-cloud", voice="vi-VN-Wavenet-A"``). For a given engine
and voice the most specific entry of each term wins. Because the engine chain can fall back to
another engine, the speech service normalizes the text once per engine it tries
(:class:`SpokenForms`), so a fallback to espeak-ng reads espeak-ng's entries, not the cloud
engine's.

A *hint* tells an engine how to pronounce the reading. Its alphabet follows the entry's scope:
an entry for espeak-ng takes espeak-ng's own phoneme notation (read as ``[[...]]``; espeak-ng
ignores SSML ``<phoneme>``), every other entry takes IPA, which the SSML engines (Google Cloud,
Azure) receive as ``<phoneme alphabet="ipa" ph="...">``. Engines without SSML read the reading.

Pure: no database, no engine; ``broadcaster.lexicon`` builds :class:`Readings` from its rows.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

ALL_ENGINES = ""  # the scope of an entry that applies to every engine
ESPEAK_ENGINE = "espeak-ng"
IPA = "ipa"
ESPEAK_PHONEMES = "espeak"
# Longest hint: a word or a short phrase in phonemes; longer is a mistake (or an attack on SSML).
MAX_HINT_CHARS = 200
# Characters a hint never needs and that would break out of SSML or espeak-ng's [[ ]] input.
_HINT_FORBIDDEN = re.compile(r"[<>&\"\[\]\\{}\x00-\x1f\x7f-\x9f]")


def alphabet_of(engine: str) -> str:
    """The alphabet of a hint on an entry scoped to ``engine`` (see the module docstring)."""
    return ESPEAK_PHONEMES if engine == ESPEAK_ENGINE else IPA


def hint_error(hint: str, engine: str = ALL_ENGINES) -> str | None:
    """Why ``hint`` cannot be used (Vietnamese, for the officer), or None when it is fine."""
    if not hint:
        return None
    if len(hint) > MAX_HINT_CHARS:
        return f"Gợi ý phát âm dài tối đa {MAX_HINT_CHARS} ký tự."
    if _HINT_FORBIDDEN.search(hint):
        return 'Gợi ý phát âm không được chứa các ký tự < > & " [ ] { } \\ hoặc xuống dòng.'
    if alphabet_of(engine) == ESPEAK_PHONEMES and not hint.isascii():
        return "Gợi ý phát âm cho giọng máy dự phòng viết bằng ký hiệu âm của giọng máy (chữ không dấu)."
    return None


def clean_hint(hint: str | None) -> str:
    """NFC, single spaces; "" for none."""
    return " ".join(unicodedata.normalize("NFC", hint or "").split())


@dataclass(frozen=True)
class Reading:
    """One entry: ``term`` reads ``reading`` on ``engine``/``voice`` ("" = all), with ``hint``."""

    term: str
    reading: str
    engine: str = ALL_ENGINES
    voice: str = ""
    hint: str = ""

    @property
    def specificity(self) -> int:
        return (2 if self.voice else 0) + (1 if self.engine else 0)


class Readings(Mapping[str, str]):
    """The officers' lexicon as rendering uses it. As a mapping it is ``{term: reading}`` of the
    entries for every engine (what the text preview shows); :meth:`for_engine` and :meth:`hints`
    resolve the entries of one engine and voice."""

    def __init__(self, entries: Iterable[Reading] = ()) -> None:
        self._entries = tuple(entries)
        self._general = {e.term: e.reading for e in self._entries if not e.engine and not e.voice}

    @classmethod
    def plain(cls, mapping: Mapping[str, str]) -> Readings:
        """Readings for every engine from a ``{term: reading}`` mapping."""
        return cls(Reading(term, reading) for term, reading in mapping.items())

    def __getitem__(self, term: str) -> str:
        return self._general[term]

    def __iter__(self) -> Iterator[str]:
        return iter(self._general)

    def __len__(self) -> int:
        return len(self._general)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __repr__(self) -> str:
        return f"Readings({list(self._entries)!r})"

    @property
    def entries(self) -> tuple[Reading, ...]:
        return self._entries

    @property
    def scoped(self) -> bool:
        """Whether any entry is scoped to an engine or carries a hint (else every engine reads alike)."""
        return any(e.engine or e.voice or e.hint for e in self._entries)

    def resolve(self, engine: str, voice: str = "") -> dict[str, Reading]:
        """Per term, the most specific entry that applies to ``engine`` reading with ``voice``."""
        best: dict[str, Reading] = {}
        for entry in self._entries:
            if entry.engine and entry.engine != engine:
                continue
            if entry.voice and entry.voice != voice:
                continue
            current = best.get(entry.term)
            if current is None or entry.specificity > current.specificity:
                best[entry.term] = entry
        return best

    def for_engine(self, engine: str, voice: str = "") -> dict[str, str]:
        """``{term: reading}`` as ``engine`` with ``voice`` reads it."""
        return {term: e.reading for term, e in self.resolve(engine, voice).items()}

    def hints(self, engine: str, voice: str, alphabet: str) -> dict[str, str]:
        """``{spoken reading: hint}`` of the entries ``engine`` resolves to whose hint is in
        ``alphabet``. The key is the reading as the normalizer writes it (lower case, single
        spaces), which is what the engine finds in the spoken text."""
        out: dict[str, str] = {}
        for entry in self.resolve(engine, voice).values():
            if entry.hint and alphabet_of(entry.engine) == alphabet:
                out[spoken_reading(entry.reading)] = entry.hint
        return out


def spoken_reading(reading: str) -> str:
    """A reading as it appears in the normalized text (see ``textnorm.lexicon.clean_reading``)."""
    return " ".join(unicodedata.normalize("NFC", reading).lower().split())


def readings_for(lexicon: Mapping[str, str] | None, engine: str, voice: str) -> dict[str, str]:
    """The ``{term: reading}`` overrides ``engine`` with ``voice`` uses (a plain mapping applies
    to every engine)."""
    if isinstance(lexicon, Readings):
        return lexicon.for_engine(engine, voice)
    return dict(lexicon or {})


def hints_for(lexicon: Mapping[str, str] | None, engine: Any, voice: str) -> dict[str, str]:
    """The hints ``engine`` can use (its ``phoneme_alphabet``; none for an engine without one)."""
    alphabet = getattr(engine, "phoneme_alphabet", None)
    if not alphabet or not isinstance(lexicon, Readings):
        return {}
    return lexicon.hints(engine.name, voice, alphabet)


@dataclass(frozen=True)
class Spoken:
    """The text one engine reads: the normalized text, its pieces and the hints it can use."""

    text: str
    pieces: list[Any]
    hints: dict[str, str]


class SpokenForms:
    """The spoken form of one text per engine and voice, each normalized once with that engine's
    readings (engines with the same readings share it). ``fixed``: an officer-edited spoken text,
    which the lexicon no longer changes (hints still apply)."""

    def __init__(
        self,
        normalize: Callable[[Mapping[str, str]], str],
        split: Callable[[str], list[Any]],
        lexicon: Mapping[str, str] | None,
        fixed: str | None = None,
    ) -> None:
        self._normalize = normalize
        self._split = split
        self.lexicon = lexicon
        self._fixed = fixed
        self._texts: dict[tuple[tuple[str, str], ...], str] = {}
        self._pieces: dict[str, list[Any]] = {}

    def general(self) -> str:
        """The spoken text with the readings for every engine (raises the normalizer's error)."""
        return self._text(dict(self.lexicon or {}))

    def _text(self, overrides: Mapping[str, str]) -> str:
        if self._fixed is not None:
            return self._fixed
        key = tuple(sorted(overrides.items()))
        if key not in self._texts:
            self._texts[key] = self._normalize(overrides)
        return self._texts[key]

    def of(self, engine: Any, voice: str) -> Spoken:
        text = self._text(readings_for(self.lexicon, engine.name, voice))
        if text not in self._pieces:
            self._pieces[text] = self._split(text)
        return Spoken(text, self._pieces[text], hints_for(self.lexicon, engine, voice))


__all__ = [
    "ALL_ENGINES",
    "ESPEAK_ENGINE",
    "IPA",
    "Reading",
    "Readings",
    "Spoken",
    "SpokenForms",
    "alphabet_of",
    "clean_hint",
    "hint_error",
    "hints_for",
    "readings_for",
    "spoken_reading",
]

"""Vietnamese announcement text -> the text a TTS engine reads aloud correctly.

The engine keeps the input as a list of spans. Each rule (``rules.py``, in order) rewrites the
parts of the text no earlier rule has claimed; the last rules claim whatever is left (words,
spaces, punctuation), so the spans always cover the whole input. The spans become the
``Token`` list of ``analyze()``, which the web preview uses to highlight what was rewritten;
a token the normalizer is not sure of (an unknown symbol, an emoji, a long bare number) is
``flagged`` with a Vietnamese ``note`` for the officer (``flags.py``).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from broadcaster.textnorm.config import TextnormConfig
from broadcaster.textnorm.errors import EmptyTextError, NormalizationError, TextTooLongError
from broadcaster.textnorm.flags import note_of
from broadcaster.textnorm.lexicon import Lexicon, clean_overrides
from broadcaster.textnorm.rules import Context, Rule, build_override_pattern, build_rules

_LOGGER = logging.getLogger(__name__)

# The cache of with_overrides(): officers edit the dictionary rarely, previews call often.
_OVERRIDE_CACHE_SIZE = 32


@dataclass(frozen=True)
class Token:
    """One piece of the input and how it is read."""

    original: str
    spoken: str
    changed: bool  # True when the normalizer rewrote it (for highlighting in the web preview)
    # True when the normalizer is not sure of the reading, or did not read the piece aloud at all
    # (an emoji, an unknown symbol): the preview asks the officer to check it.
    flagged: bool = False
    note: str = ""  # why it is flagged, in Vietnamese for the officer; "" when not flagged


@dataclass(frozen=True)
class Normalized:
    text: str  # the full spoken text (same as normalize())
    tokens: tuple[Token, ...]  # cover the whole (NFC) input in order

    @property
    def flags(self) -> tuple[Token, ...]:
        """The tokens the officer should check, in text order."""
        return tuple(token for token in self.tokens if token.flagged)


_SPACES = re.compile(r"[ \t]+")
_NEWLINES = re.compile(r" *\n[\s]*")
_SPACE_BEFORE_PUNCT = re.compile(r" +([.,;:!?])")
_COMMA_BEFORE_PUNCT = re.compile(r",(?: *,)*(?= *[.;:!?])|(?<=[.;:!?]) *,(?: *,)*")
_REPEATED_PUNCT = re.compile(r"([.,;:!?])(?: *\1)+")
_SPACE_AFTER_PUNCT = re.compile(r"([.,;:!?])(?=[^\s.,;:!?])")
_LEADING_PUNCT = re.compile(r"^[ ,.;:]+", re.MULTILINE)
_TRAILING_COMMA = re.compile(r"[ ,]+$", re.MULTILINE)


def _finish(text: str) -> str:
    """Collapse whitespace and tidy punctuation; line breaks stay as paragraph breaks."""
    text = _SPACES.sub(" ", text)
    text = _NEWLINES.sub("\n", text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _COMMA_BEFORE_PUNCT.sub("", text)
    text = _REPEATED_PUNCT.sub(r"\1", text)
    text = _SPACE_AFTER_PUNCT.sub(r"\1 ", text)
    text = _SPACES.sub(" ", text)
    text = _LEADING_PUNCT.sub("", text)
    text = _TRAILING_COMMA.sub("", text)
    lines = [line.strip() for line in text.split("\n")]
    return "\n".join(line for line in lines if line).lower()


def _tidy(spoken: str) -> str:
    """A token's reading without the padding rules add around it; spacing tokens stay as they are."""
    return spoken if spoken.isspace() else " ".join(spoken.split())


def _same_reading(original: str, spoken: str) -> bool:
    return " ".join(original.lower().split()) == " ".join(spoken.split())


def _token(original: str, spoken: str) -> Token:
    note = note_of(spoken)
    return Token(
        original,
        _tidy(spoken),
        not _same_reading(original, spoken),
        flagged=note is not None,
        note=note or "",
    )


class Normalizer:
    """Rules plus vocabularies. Build one with :meth:`from_config`; it is immutable and thread-safe."""

    def __init__(
        self,
        lexicon: Lexicon | None = None,
        max_chars: int = 20_000,
        overrides: Mapping[str, str] | None = None,
    ) -> None:
        self._lexicon = lexicon if lexicon is not None else Lexicon.load()
        self._max_chars = max_chars
        self._overrides = dict(overrides or {})
        self._rules: list[Rule] = build_rules(lexicon, build_override_pattern(self._overrides))
        self._with_overrides = lru_cache(maxsize=_OVERRIDE_CACHE_SIZE)(self._build_with_overrides)

    @classmethod
    def from_config(cls, config: TextnormConfig | None = None) -> Normalizer:
        """Shipped vocabularies plus ``config.lexicon_files`` (later files win)."""
        config = config or TextnormConfig()
        return cls(Lexicon.load(config.lexicon_files), max_chars=config.max_chars)

    @property
    def max_chars(self) -> int:
        return self._max_chars

    @property
    def lexicon(self) -> Lexicon:
        return self._lexicon

    def with_overrides(self, entries: Mapping[str, str]) -> Normalizer:
        """A normalizer where the officer's dictionary (term -> reading) wins over the data files.

        Terms written in lower case match any case; others match exactly. Cheap: results are cached."""
        cleaned = clean_overrides(entries)
        if not cleaned:
            return self if not self._overrides else self._with_overrides(())
        return self._with_overrides(tuple(sorted(cleaned.items())))

    def _build_with_overrides(self, items: tuple[tuple[str, str], ...]) -> Normalizer:
        return Normalizer(self._lexicon, self._max_chars, dict(items))

    def normalize(self, text: str) -> str:
        """The spoken form of ``text``; raises EmptyTextError or TextTooLongError on bad input."""
        return self.analyze(text).text

    def analyze(self, text: str) -> Normalized:
        """The spoken text and the tokens it came from."""
        source = self._validate(text)
        context = Context(source, self._lexicon, self._overrides)
        spans = self._run(source, context)
        tokens = tuple(_token(source[start:end], spoken) for start, end, spoken in spans)
        spoken_text = _finish(" ".join(token.spoken for token in tokens))
        if not any(ch.isalnum() for ch in spoken_text):
            raise EmptyTextError("Văn bản không có nội dung đọc được (no readable text)")
        return Normalized(spoken_text, tokens)

    def _validate(self, text: str) -> str:
        if not isinstance(text, str):
            raise NormalizationError(
                f"Văn bản phải là chuỗi ký tự, không phải {type(text).__name__} (text must be a string)"
            )
        text = unicodedata.normalize("NFC", text)
        if not text.strip():
            raise EmptyTextError("Văn bản trống (empty text)")
        if len(text) > self._max_chars:
            raise TextTooLongError(len(text), self._max_chars)
        return text

    def _run(self, text: str, context: Context) -> list[tuple[int, int, str]]:
        # (start, end, spoken); spoken None means no rule has claimed the span yet.
        spans: list[tuple[int, int, str | None]] = [(0, len(text), None)]
        for rule in self._rules:
            claimed: list[tuple[int, int, str | None]] = []
            for start, end, spoken in spans:
                if spoken is not None:
                    claimed.append((start, end, spoken))
                    continue
                cursor = start
                for match in rule.pattern.finditer(text, start, end):
                    if match.end() == match.start():
                        continue
                    reading = rule.handler(match, context)
                    if reading is None:
                        continue
                    if match.start() > cursor:
                        claimed.append((cursor, match.start(), None))
                    claimed.append((match.start(), match.end(), reading))
                    cursor = match.end()
                if cursor < end:
                    claimed.append((cursor, end, None))
            spans = claimed
        # A flagged empty reading is falsy but must keep its note: test for None, not truth.
        return [(start, end, "" if spoken is None else spoken) for start, end, spoken in spans]


@lru_cache(maxsize=1)
def default_normalizer() -> Normalizer:
    """The shipped vocabularies and default limits, built once."""
    return Normalizer.from_config()


def normalize(text: str) -> str:
    """Module-level convenience with the default normalizer."""
    return default_normalizer().normalize(text)

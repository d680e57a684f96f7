"""The textnorm API in the simplest way: overrides (and built-in readings) replace the terms they
name, everything else is kept, then lower-cased like the real normalizer. ``analyze`` returns the
real ``Normalized``/``Token`` dataclasses, so the web preview sees the real shapes."""

from __future__ import annotations

import re

from broadcaster.textnorm.normalizer import Normalized, Token


class FakeNormalizer:
    """``builtins``: readings the fake knows without overrides (e.g. {"UBND": "ủy ban nhân dân"})."""

    def __init__(
        self, overrides: dict[str, str] | None = None, builtins: dict[str, str] | None = None
    ) -> None:
        self.overrides = dict(overrides or {})
        self.builtins = dict(builtins or {})
        self.calls = 0

    def with_overrides(self, mapping: dict[str, str]) -> FakeNormalizer:
        return FakeNormalizer({**self.overrides, **mapping}, self.builtins)

    def analyze(self, text: str) -> Normalized:
        self.calls += 1
        words = {**self.builtins, **self.overrides}
        terms = sorted(words, key=len, reverse=True)
        pattern = re.compile("|".join([*(re.escape(t) for t in terms), r"\s+", r"\S+"]))
        tokens = []
        for match in pattern.finditer(text):
            piece = match.group(0)
            spoken = words.get(piece, piece)
            tokens.append(Token(piece, spoken.lower(), spoken != piece))
        return Normalized("".join(t.spoken for t in tokens), tuple(tokens))

    def normalize(self, text: str) -> str:
        return self.analyze(text).text

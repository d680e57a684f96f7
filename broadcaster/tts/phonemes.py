"""Phonetic hints in the text an engine receives: where a hinted reading occurs in a piece, and
how each engine is told its pronunciation.

``hints`` maps a reading as it appears in the normalized text (lower case, single spaces) to its
hint (``broadcaster.pronunciation``). The SSML engines get ``<phoneme alphabet="ipa" ph="...">``
around the reading (Google Cloud: ``input.ssml``; Azure: inside its ``<voice>``), espeak-ng gets
its own ``[[...]]`` phoneme input in place of the reading. Everything else is escaped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from xml.sax.saxutils import escape, quoteattr


def _pattern(hints: Mapping[str, str]) -> re.Pattern[str] | None:
    readings = sorted((r for r in hints if r.strip()), key=lambda r: (-len(r), r))
    if not readings:
        return None
    # Whole words only: the reading "an" must not mark the "an" inside "ban".
    body = "|".join(r"\s+".join(re.escape(word) for word in reading.split()) for reading in readings)
    return re.compile(rf"(?<!\w)(?:{body})(?!\w)", re.IGNORECASE)


def split_marked(text: str, hints: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """``text`` cut into ``(part, hint)``: ``hint`` is set on each occurrence of a hinted reading,
    None on the text between them."""
    pattern = _pattern(hints)
    if pattern is None:
        return [(text, None)] if text else []
    lowered = {" ".join(k.lower().split()): v for k, v in hints.items()}
    out: list[tuple[str, str | None]] = []
    pos = 0
    for match in pattern.finditer(text):
        if match.start() > pos:
            out.append((text[pos : match.start()], None))
        out.append((match.group(0), lowered.get(" ".join(match.group(0).lower().split()))))
        pos = match.end()
    if pos < len(text):
        out.append((text[pos:], None))
    return out


def ssml_body(text: str, hints: Mapping[str, str] | None = None) -> str:
    """``text`` as SSML content: escaped, each hinted reading inside an IPA ``<phoneme>``."""
    parts = []
    for part, hint in split_marked(text, hints or {}):
        if hint:
            parts.append(f'<phoneme alphabet="ipa" ph={quoteattr(hint)}>{escape(part)}</phoneme>')
        else:
            parts.append(escape(part))
    return "".join(parts)


def has_marks(text: str, hints: Mapping[str, str] | None) -> bool:
    """Whether any hinted reading occurs in ``text``."""
    return any(hint for _, hint in split_marked(text, hints or {}))


def espeak_text(text: str, hints: Mapping[str, str] | None = None) -> str:
    """``text`` for espeak-ng's standard input: each hinted reading replaced by ``[[hint]]``
    (espeak-ng's phoneme input); square brackets elsewhere become spaces so that only a hint is
    ever read as phonemes."""
    parts = []
    for part, hint in split_marked(text, hints or {}):
        parts.append(f"[[{hint}]]" if hint else part.replace("[", " ").replace("]", " "))
    return "".join(parts)


__all__ = ["espeak_text", "has_marks", "split_marked", "ssml_body"]

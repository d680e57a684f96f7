"""Cut normalized text into the pieces that are synthesized one by one, with the pause after each.

The normalizer keeps sentence punctuation (``. , ; : ! ?``) and newlines (paragraph breaks).
Synthesizing piece by piece and joining with our own silences gives the same, predictable
pauses with every engine (engines disagree wildly on how long a comma is).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class Pause(enum.IntEnum):
    """The pause after a piece; a larger value wins when marks pile up (``",\\n"``)."""

    NONE = 0
    CLAUSE = 1  # , ; :
    SENTENCE = 2  # . ! ? …
    PARAGRAPH = 3  # a line break


@dataclass(frozen=True)
class Piece:
    text: str  # what the engine reads, with its closing mark kept for intonation
    pause: Pause


# A run of punctuation and line breaks. A comma or dot between two digits (3,5 or 1.250 in text
# that skipped normalization) is part of the number, not a boundary.
_MARK = r"(?:[;:!?…\n]|[,.](?!\d)|(?<!\d)[,.])"
_BOUNDARY_RE = re.compile(rf"{_MARK}(?:[ \t]*{_MARK})*[ \t]*")
_SPEAKABLE_RE = re.compile(r"\w", re.UNICODE)
_CLOSERS = {",": Pause.CLAUSE, ";": Pause.CLAUSE, ":": Pause.CLAUSE,
            ".": Pause.SENTENCE, "!": Pause.SENTENCE, "?": Pause.SENTENCE, "…": Pause.SENTENCE,
            "\n": Pause.PARAGRAPH}  # fmt: skip


def split_pieces(text: str) -> list[Piece]:
    """``"a, b. c\\n d"`` -> ``[a, (clause)] [b. (sentence)] [c (paragraph)] [d (none)]``.

    Pieces with nothing to say (only marks) merge their pause into the previous piece. The last
    piece has no pause after it.
    """
    pieces: list[Piece] = []
    pos = 0
    for match in _BOUNDARY_RE.finditer(text):
        body = text[pos : match.start()].strip()
        marks = match.group().strip(" \t")
        pause = max((_CLOSERS.get(ch, Pause.NONE) for ch in marks), default=Pause.NONE)
        _add(pieces, body, marks.replace("\n", ""), pause)
        pos = match.end()
    _add(pieces, text[pos:].strip(), "", Pause.NONE)
    if pieces:
        last = pieces[-1]
        pieces[-1] = Piece(last.text, Pause.NONE)
    return pieces


def _add(pieces: list[Piece], body: str, marks: str, pause: Pause) -> None:
    body = " ".join(body.split())
    if _SPEAKABLE_RE.search(body):
        # Keep the last mark only (".", "?" ...): engines use it for intonation.
        pieces.append(Piece(body + marks[-1:], pause))
    elif pieces and pause > pieces[-1].pause:
        pieces[-1] = Piece(pieces[-1].text, pause)

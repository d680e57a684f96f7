"""Readings the normalizer is not sure of, and the notes that tell the officer why.

A rule handler returns a plain ``str`` when it is confident. When it is not (an unknown symbol,
an emoji, a currency sign it has no name for, a long number with no cue to tell an amount from
a code) it returns a :class:`Flagged` reading instead: still a ``str``, so the engine treats it
like any reading, but carrying a note. ``Normalizer.analyze()`` turns it into a ``Token`` with
``flagged=True`` and the note, so the web preview can ask the officer to check that piece.
Nothing is ever dropped without a flag: an empty flagged reading means "not read aloud".

Notes are shown to officers: Vietnamese, no jargon.
"""

from __future__ import annotations


class Flagged(str):
    """A reading with a note for the officer (Vietnamese)."""

    note: str

    def __new__(cls, reading: str, note: str) -> Flagged:
        obj = super().__new__(cls, reading)
        obj.note = note
        return obj


def note_of(reading: str) -> str | None:
    """The note of a flagged reading, None for a confident one."""
    return reading.note if isinstance(reading, Flagged) else None


def emoji_note(emoji: str) -> str:
    return f"Biểu tượng «{emoji}» không được đọc thành lời."


def symbol_note(symbol: str) -> str:
    return f"Ký hiệu «{symbol}» chưa có cách đọc nên bị bỏ qua; hãy viết bằng chữ nếu cần đọc."


def currency_note(symbol: str) -> str:
    return (
        f"Ký hiệu tiền tệ «{symbol}» chưa có cách đọc nên bị bỏ qua; "
        "hãy viết tên đơn vị tiền (ví dụ: đô la, ơ rô)."
    )


def long_number_note(digits: str) -> str:
    return (
        f"Số «{digits}» được đọc từng chữ số. Nếu đây là số tiền hay số lượng, "
        "hãy viết có dấu chấm phân cách (ví dụ 1.000.000.000) hoặc thêm đơn vị (đồng)."
    )


def stray_characters_note(characters: str) -> str:
    return f"Ký tự «{characters}» trong từ không được đọc."


def ambiguous_note(term: str, reading: str, alternative: str) -> str:
    return f"«{term}» được đọc là “{reading}”; nếu là {alternative}, hãy viết rõ bằng chữ."

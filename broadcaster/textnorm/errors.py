"""Errors of the text normalizer. Messages are shown to officers: Vietnamese first, English after."""

from __future__ import annotations


class NormalizationError(ValueError):
    """The text cannot be turned into speech; the message says why, in Vietnamese and English."""


class EmptyTextError(NormalizationError):
    """Empty, whitespace-only, or nothing left to read once symbols and emoji are dropped."""


class TextTooLongError(NormalizationError):
    """Longer than the configured limit (``TextnormConfig.max_chars``)."""

    def __init__(self, length: int, limit: int) -> None:
        super().__init__(
            f"Văn bản quá dài: {length} ký tự, tối đa {limit} ký tự "
            f"(text too long: {length} characters, limit {limit})"
        )
        self.length = length
        self.limit = limit

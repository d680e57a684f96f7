"""Errors of the broadcast lifecycle."""

from __future__ import annotations


class BroadcastError(Exception):
    """A request that cannot be honoured; the message is meant for the officer or the API client
    (Vietnamese). ``field`` names the field at fault when there is one; ``code`` is ``invalid``,
    ``not_found``, ``conflict`` or ``unavailable``."""

    def __init__(self, message: str, *, field: str | None = None, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code


__all__ = ["BroadcastError"]

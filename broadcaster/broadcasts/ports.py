"""The collaborators of the broadcast lifecycle, as small protocols.

The real implementations are ``broadcaster.speech.SpeechService`` (with its
``broadcaster.audio.store.AudioStore``) and ``broadcaster.fleet.Fleet``; ``tests/fakes/`` has one
fake of each, held to the same shapes by contract tests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from speakers.protocol import Event


@runtime_checkable
class AudioStorePort(Protocol):
    """The content-addressed audio store: what the broadcast lifecycle reads and pins."""

    def has(self, key: str) -> bool: ...

    def meta(self, key: str) -> dict[str, Any] | None: ...

    def read_bytes(self, key: str) -> bytes: ...

    def pin(self, key: str, owner: str = "") -> None: ...

    def unpin(self, key: str, owner: str = "") -> None: ...


class RenderedAudio(Protocol):
    key: str
    engine: str
    duration_s: float
    normalized_text: str


@runtime_checkable
class SpeechPort(Protocol):
    """Text to stored broadcast audio. ``render`` is slow (called on worker threads) and raises
    ``broadcaster.speech.SpeechError`` with a Vietnamese message when it cannot."""

    @property
    def store(self) -> AudioStorePort: ...

    def render(
        self,
        text: str,
        *,
        engine: str | None = None,
        voice: str | None = None,
        repeat: int = 1,
        chime: bool = True,
        lexicon: Mapping[str, str] | None = None,
    ) -> RenderedAudio: ...

    def engines(self) -> list[dict[str, Any]]: ...


@runtime_checkable
class FleetPort(Protocol):
    """Which clusters are online, and their receipts as they arrive."""

    def online_ids(self) -> set[str]: ...

    def add_event_listener(self, callback: Callable[[str, Event], None]) -> None: ...

    def add_online_listener(self, callback: Callable[[str, bool], None]) -> None: ...


def pin_owner(broadcast_id: int) -> str:
    """The name under which a broadcast pins its audio in the store until it ends."""
    return f"broadcast:{broadcast_id}"


__all__ = ["AudioStorePort", "FleetPort", "RenderedAudio", "SpeechPort", "pin_owner"]

"""The node's hardware seams (Player, Amplifier) for the agent's unit tests: they record what they
were asked and can be told to fail, so the agent's failure paths can be checked without a sound
card or GPIO."""

from __future__ import annotations

import asyncio
import time
from typing import Any


class FakeAmplifier:
    """An Amplifier that records every switch as ``(monotonic time, on)``; ``fail`` raises."""

    name = "fake"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.switches: list[tuple[float, bool]] = []
        self._on = False

    @property
    def is_on(self) -> bool:
        return self._on

    async def set(self, on: bool) -> None:
        from speakers.amplifier import AmplifierError

        if self.fail:
            raise AmplifierError("relay does not answer")
        self.switches.append((time.monotonic(), on))
        self._on = on

    async def close(self) -> None:
        self._on = False


class FakePlayer:
    """A Player that plays nothing for the item's duration. ``fail_prepare`` / ``fail_play``
    (messages) make it raise PlayerError; ``played`` lists broadcast ids in start order."""

    name = "fake"

    def __init__(self, fail_prepare: str | None = None, fail_play: str | None = None) -> None:
        self.fail_prepare = fail_prepare
        self.fail_play = fail_play
        self.prepared: list[str] = []
        self.played: list[str] = []
        self.released: list[str] = []
        self.streams: list[dict[str, Any]] = []
        self.streamed: list[dict[str, Any]] = []

    async def prepare(self, item: Any) -> None:
        from speakers.player import PlayerError

        self.prepared.append(item.broadcast_id)
        if self.fail_prepare:
            raise PlayerError(self.fail_prepare)

    async def play(self, item: Any) -> None:
        from speakers.player import PlayerError

        self.played.append(item.broadcast_id)
        if self.fail_play:
            raise PlayerError(self.fail_play)
        await asyncio.sleep(item.duration_s)

    async def release(self, item: Any) -> None:
        self.released.append(item.broadcast_id)

    def stream_sink(self, meta: dict[str, Any], volume: int) -> Any:
        """Live streams: the null player's sink, recording into ``streamed`` (what it would sound)."""
        from speakers.player import NullStreamSink

        self.streams.append(meta)
        return NullStreamSink(self.streamed, {**meta, "volume": volume})

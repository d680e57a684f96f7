"""Batching worker queues: one wait, then everything already queued (one pass, one commit)."""

from __future__ import annotations

import queue
from typing import TypeVar

T = TypeVar("T")


def drain(q: queue.Queue[T | None], timeout: float | None, limit: int) -> tuple[list[T], bool]:
    """Wait up to ``timeout`` seconds for one item, then take what is already queued, up to
    ``limit`` items. ``None`` in the queue is the stop sentinel: the second value tells whether it
    was seen (items taken before it are still returned)."""
    items: list[T] = []
    try:
        item = q.get(timeout=timeout)
        while item is not None:
            items.append(item)
            if len(items) >= limit:
                return items, False
            item = q.get_nowait()
        return items, True
    except queue.Empty:
        return items, False

"""The batching helper shared by the dispatcher and the fleet writer."""

from __future__ import annotations

import queue

from broadcaster.queues import drain


def test_takes_everything_already_queued_up_to_the_limit() -> None:
    q: queue.Queue[int | None] = queue.Queue()
    for i in range(5):
        q.put(i)
    assert drain(q, 0.01, 3) == ([0, 1, 2], False)
    assert drain(q, 0.01, 3) == ([3, 4], False)


def test_empty_queue_times_out_with_nothing() -> None:
    q: queue.Queue[int | None] = queue.Queue()
    assert drain(q, 0.01, 10) == ([], False)


def test_stop_sentinel_keeps_the_items_before_it() -> None:
    q: queue.Queue[int | None] = queue.Queue()
    for item in (1, 2, None, 3):
        q.put(item)
    assert drain(q, 0.01, 10) == ([1, 2], True)
    q2: queue.Queue[int | None] = queue.Queue()
    q2.put(None)
    assert drain(q2, 0.01, 10) == ([], True)

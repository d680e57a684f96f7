"""Time requests are answered on the network thread, but not without limit (issue 13, item 14): a
token bucket per node answers what a healthy node needs and drops, counts and logs the rest."""

from __future__ import annotations

from typing import Any

from broadcaster.fleet.ingest import TIME_BURST, TIME_REFILL_PER_S, Ingest
from broadcaster.transport.memory import MemoryBroker, MemoryTransport
from speakers import protocol as proto


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Answers:
    """What the nodes received, once the broker delivered everything published so far."""

    def __init__(self, broker: MemoryBroker, received: list[tuple[str, Any]]) -> None:
        self.broker = broker
        self.received = received

    def all(self) -> list[tuple[str, Any]]:
        assert self.broker.flush()
        return list(self.received)


def _ingest() -> tuple[Ingest, Answers, Clock]:
    """An Ingest on the in-memory broker; ``answers`` reads what reached the nodes so far."""
    broker = MemoryBroker()
    transport = MemoryTransport(broker)
    received: list[tuple[str, Any]] = []
    listener = MemoryTransport(broker)
    listener.subscribe(
        "loa/speakers/+/cmd", lambda topic, payload: received.append((topic, proto.decode_command(payload)))
    )
    listener.start()
    transport.start()
    clock = Clock()
    ingest = Ingest(transport, lambda *_: None, monotonic=clock)
    return ingest, Answers(broker, received), clock


def ask(ingest: Ingest, speaker: str, seq: int) -> None:
    payload = proto.TimeRequest(seq=seq, t_node=1.0).encode()
    ingest.handle(f"loa/speakers/{speaker}/time", payload)


def test_a_runaway_node_gets_a_bounded_number_of_answers() -> None:
    ingest, answers, clock = _ingest()
    for seq in range(1000):  # a thousand requests at one instant
        ask(ingest, "loa-01", seq)
    assert len(answers.all()) == TIME_BURST
    metrics = ingest.metrics()
    assert metrics["time_dropped"] == 1000 - TIME_BURST
    assert metrics["time_dropped_by_speaker"] == {"loa-01": 1000 - TIME_BURST}
    assert metrics["messages"]["time"] == 1000  # every request is counted as received
    # Time refills the bucket at its rate, never above the burst.
    clock.now += 10 / TIME_REFILL_PER_S
    for seq in range(50):
        ask(ingest, "loa-01", 2000 + seq)
    assert len(answers.all()) == 2 * TIME_BURST


def test_one_node_flooding_does_not_cost_another_its_answers() -> None:
    ingest, answers, clock = _ingest()
    for seq in range(500):
        ask(ingest, "loa-01", seq)
    for seq in range(5):  # a healthy burst from another node
        ask(ingest, "loa-02", seq)
    assert [a.seq for topic, a in answers.all() if topic.endswith("loa-02/cmd")] == [0, 1, 2, 3, 4]


def test_a_healthy_node_is_never_refused() -> None:
    ingest, answers, clock = _ingest()
    for burst in range(20):  # a burst at each (re)connect, bursts 30 s apart: a flapping link
        for seq in range(5):
            ask(ingest, "loa-01", burst * 10 + seq)
        clock.now += 30.0
    assert len(answers.all()) == 100 and ingest.metrics()["time_dropped"] == 0

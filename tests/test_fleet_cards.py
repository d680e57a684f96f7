"""The dashboard's cluster cards follow the freshest word (issue 13, item 5): a receipt that came
after the last health report says what plays now, so a card does not show the amplifier off while
the cluster plays, nor "Đang phát" for seconds after a stop, waiting for the next health report."""

from __future__ import annotations

from pathlib import Path

import pytest

from speakers import protocol as proto
from tests.fixtures_controller import wait_until
from tests.test_fleet import Harness


@pytest.fixture
def harness(tmp_path: Path):  # type: ignore[no-untyped-def]
    h = Harness(tmp_path, health_interval_s=30)
    yield h
    h.close()


def _health(playing: str | None, amplifier_on: bool) -> bytes:
    return proto.Health(ts=1.0, uptime_s=5.0, volume=70, amplifier_on=amplifier_on, playing=playing).encode()


def _event(state: str, broadcast_id: str = "12") -> bytes:
    return proto.Event(broadcast_id=broadcast_id, state=state, ts=2.0).encode()


def _card_becomes(h: Harness, what: str, check) -> dict:  # type: ignore[no-untyped-def]
    """The raw publish travels through the broker before the fleet queues it: wait for the card."""
    wait_until(lambda: check(h.fleet.speaker("loa-01")), what=what)
    return h.fleet.speaker("loa-01")  # type: ignore[return-value]


def test_a_receipt_after_the_health_report_wins(harness: Harness) -> None:
    h = harness
    h.nodes["loa-01"].connect()
    wait_until(lambda: h.fleet.is_online("loa-01"), what="online")
    h.raw("loa/speakers/loa-01/health", _health(None, amplifier_on=False))
    _card_becomes(h, "amplifier off", lambda c: c["playing"] is None and c["amplifier_on"] is False)
    h.raw("loa/speakers/loa-01/events", _event("playing"))  # it started: the amplifier went on first
    card = _card_becomes(h, "playing 12", lambda c: c["playing"] is not None)
    assert card["playing"]["broadcast_id"] == 12
    assert card["amplifier_on"] is True
    h.raw("loa/speakers/loa-01/health", _health("12", amplifier_on=True))
    _card_becomes(h, "health seen", lambda c: c["health"] is not None and c["health"].get("playing") == "12")
    h.raw("loa/speakers/loa-01/events", _event("stopped"))  # stopped after that health report
    # not "Đang phát" until the next health report
    _card_becomes(h, "stopped", lambda c: c["playing"] is None)
    # A later health report is the freshest word again.
    h.raw("loa/speakers/loa-01/health", _health(None, amplifier_on=False))
    _card_becomes(h, "off again", lambda c: c["playing"] is None and c["amplifier_on"] is False)

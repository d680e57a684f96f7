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


def test_a_receipt_after_the_health_report_wins(harness: Harness) -> None:
    h = harness
    h.nodes["loa-01"].connect()
    wait_until(lambda: h.fleet.is_online("loa-01"), what="online")
    h.raw("loa/speakers/loa-01/health", _health(None, amplifier_on=False))
    h.fleet.flush()
    card = h.fleet.speaker("loa-01")
    assert card["playing"] is None and card["amplifier_on"] is False
    h.raw("loa/speakers/loa-01/events", _event("playing"))  # it started: the amplifier went on first
    h.fleet.flush()
    card = h.fleet.speaker("loa-01")
    assert card["playing"]["broadcast_id"] == 12
    assert card["amplifier_on"] is True
    h.raw("loa/speakers/loa-01/health", _health("12", amplifier_on=True))
    h.fleet.flush()
    h.raw("loa/speakers/loa-01/events", _event("stopped"))  # stopped after that health report
    h.fleet.flush()
    card = h.fleet.speaker("loa-01")
    assert card["playing"] is None  # not "Đang phát" until the next health report
    # A later health report is the freshest word again.
    h.raw("loa/speakers/loa-01/health", _health(None, amplifier_on=False))
    h.fleet.flush()
    card = h.fleet.speaker("loa-01")
    assert card["playing"] is None and card["amplifier_on"] is False

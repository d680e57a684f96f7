"""``build_federation(settings, ...)``: the federation of one controller, its CAP feeds added."""

from __future__ import annotations

from typing import Any

from broadcaster.federation.cap.feed import CapFeed
from broadcaster.federation.service import Federation


def build_federation(settings: Any, *, sessions: Any, broadcasts: Any, speech: Any, fleet: Any) -> Federation:
    config = settings.federation
    federation = Federation(
        config,
        sessions=sessions,
        broadcasts=broadcasts,
        speech=speech,
        fleet=fleet,
        timezone=settings.timezone,
        name=settings.alerts.instance_name,
    )
    for source in config.cap.sources:
        federation.add_adapter(CapFeed(source, config.cap, federation.intake))
    return federation


__all__ = ["build_federation"]

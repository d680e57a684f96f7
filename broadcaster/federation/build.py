"""``build_federation(settings, ...)``: the federation of one controller, its CAP feeds added."""

from __future__ import annotations

from typing import Any

from broadcaster.federation.cap.feed import CapFeed
from broadcaster.federation.service import Federation


def build_federation(
    settings: Any, *, sessions: Any, broadcasts: Any, speech: Any, fleet: Any, alerts: Any = None
) -> Federation:
    """``alerts``: the alert notifier; an emergency from above is also sent through its channels."""
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
    if alerts is not None and hasattr(alerts, "announce"):
        place = settings.alerts.instance_name or "Loa xã"

        def tell(info: dict[str, Any]) -> None:
            sender = info.get("sender") or "cấp trên"
            subject = f"[{place}] Đang phát tin KHẨN CẤP từ {sender}"
            text = f"{subject}: «{info.get('title') or ''}». Tin đang phát trên tất cả cụm loa."
            alerts.announce(subject, text, {"kind": "upstream_emergency", **info})

        federation.intake.on_emergency.append(tell)
    return federation


__all__ = ["build_federation"]

"""The fleet (FleetPort, and the read API the web and the REST API use) without MQTT.

``snapshot()`` lists the registry's clusters in the real ``Fleet.snapshot()`` shape, merged with
``live[speaker_id]`` (a test sets ``online``, ``playing``, ``volume``, ``amplifier_on``, ``alerts``,
``health``, ``health_at`` there). ``set_online(id, True)`` also tells the online listeners, and
``receipt(id, event)`` the event listeners, as the real fleet does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.models import Speaker
from speakers.protocol import Event


class FakeFleet:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self.live: dict[str, dict[str, Any]] = {}
        self.fail: str | None = None  # snapshot() raises (the fleet's database is locked)
        self._online_listeners: list[Callable[[str, bool], None]] = []
        self._event_listeners: list[Callable[[str, Event], None]] = []
        self._lock = threading.Lock()

    # -- FleetPort

    def online_ids(self) -> set[str]:
        with self._lock:
            return {sid for sid, live in self.live.items() if live.get("online")}

    def add_online_listener(self, callback: Callable[[str, bool], None]) -> None:
        self._online_listeners.append(callback)

    def add_event_listener(self, callback: Callable[[str, Event], None]) -> None:
        self._event_listeners.append(callback)

    def registry_changed(self, *_: Any) -> None:
        """Registry hook; the fake reads the registry at every snapshot anyway."""

    # -- what a test does

    def set_online(self, speaker_id: str, online: bool = True) -> None:
        with self._lock:
            self.live.setdefault(speaker_id, {})["online"] = online
        for callback in list(self._online_listeners):
            callback(speaker_id, online)

    def receipt(self, speaker_id: str, event: Event) -> None:
        for callback in list(self._event_listeners):
            callback(speaker_id, event)

    # -- read API

    def snapshot(self) -> list[dict[str, Any]]:
        if self.fail:
            raise RuntimeError(self.fail)
        with self.sessions() as session:
            rows = [
                (s.id, s.name, s.zone_id, s.enabled)
                for s in session.scalars(select(Speaker).order_by(Speaker.id))
            ]
        with self._lock:
            live = {sid: dict(values) for sid, values in self.live.items()}
        out = []
        for sid, name, zone, enabled in rows:
            item: dict[str, Any] = {
                "id": sid,
                "name": name,
                "zone": zone,
                "enabled": enabled,
                "online": False,
                "stale": False,
                "last_seen": None,
                "health": None,
                "health_at": None,
                "playing": None,
                "volume": None,
                "amplifier_on": None,
                "alerts": [],
                "malformed": 0,
            }
            item.update(live.get(sid, {}))
            out.append(item)
        return out

    def speaker(self, speaker_id: str) -> dict[str, Any] | None:
        return next((s for s in self.snapshot() if s["id"] == speaker_id), None)

    def alerts(self, active_only: bool = True) -> list[dict[str, Any]]:
        return []

    def metrics(self) -> dict[str, Any]:
        return {"speakers_online": len(self.online_ids())}

"""The fleet's live board: what is known right now about every cluster, and the cards read from it.

The fleet worker (``live.py``) is the only writer: it records each status, health report and receipt
on the board's :class:`LiveState` entries and asks it for stale clusters. Readers (the dashboard, the
API, the broadcast lifecycle) take snapshots, speaker cards and online sets from any thread: the
board's lock guards the live state. Names and zones come from the registry rows, re-read at most
every ``_REGISTRY_TTL_S`` seconds (or at once after a registry change).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.fleet.alerting import ALERT_MESSAGES, AlertOp, LiveState, evaluate
from broadcaster.fleet.config import FleetConfig
from broadcaster.fleet.ingest import Ingest
from broadcaster.models import Speaker, Zone

_LOGGER = logging.getLogger(__name__)

# Registry rows (name, zone) are re-read at most this often for snapshots.
_REGISTRY_TTL_S = 2.0

RegistryRow = tuple[str, str | None, bool]  # (name, zone, enabled)


def iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat()


class LiveBoard:
    """Live state per cluster, the cached registry rows, and the read side built on them."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        ingest: Ingest,
        titles: Callable[[str], str | None] | None = None,
    ) -> None:
        """``ingest`` counts malformed messages per cluster; ``titles``: broadcast id -> title."""
        self.sessions = sessions
        self.ingest = ingest
        self.titles = titles
        self.lock = threading.RLock()
        self.live: dict[str, LiveState] = {}
        # When each cluster last said it started or stopped playing: the dashboard shows whichever
        # is fresher, this receipt or the latest health report (which comes only every 10-30 s).
        self.play_receipt_at: dict[str, float] = {}
        self._registry: dict[str, RegistryRow] = {}
        self._zone_names: dict[str, str] = {}
        self._registry_at = -1e9

    # ------------------------------------------------------------------ read API

    def snapshot(self) -> list[dict[str, Any]]:
        registry = self.registry_rows(force=True)
        with self.lock:
            return [self._speaker_dict(sid, row) for sid, row in sorted(registry.items())]

    def speaker(self, speaker_id: str) -> dict[str, Any] | None:
        row = self.registry_rows(force=True).get(speaker_id)
        if row is None:
            return None
        with self.lock:
            return self._speaker_dict(speaker_id, row)

    def is_online(self, speaker_id: str) -> bool:
        with self.lock:
            live = self.live.get(speaker_id)
            return live is not None and live.online()

    def online_ids(self) -> set[str]:
        with self.lock:
            return {sid for sid, live in self.live.items() if live.online()}

    def round_trips_s(self) -> dict[str, float]:
        with self.lock:
            found: dict[str, float] = {}
            for sid, live in self.live.items():
                rtt = (live.health or {}).get("clock_rtt_ms") if live.online() else None
                if isinstance(rtt, int | float) and 0 <= rtt < 60_000:
                    found[sid] = rtt / 1000
            return found

    def counts(self) -> tuple[int, int]:
        """(clusters heard of, clusters online)."""
        with self.lock:
            return len(self.live), sum(1 for live in self.live.values() if live.online())

    # ------------------------------------------------------------------ registry

    def registry_changed(self) -> None:
        """Re-read names and zones at the next look."""
        self._registry_at = -1e9

    def registry_rows(self, force: bool = False) -> dict[str, RegistryRow]:
        if force or time.monotonic() - self._registry_at > _REGISTRY_TTL_S:
            with self.sessions() as session:
                rows = session.execute(
                    select(Speaker.id, Speaker.name, Speaker.zone_id, Speaker.enabled)
                ).all()
                zones = session.execute(select(Zone.id, Zone.name)).all()
            self._registry = {r.id: (r.name, r.zone_id, r.enabled) for r in rows}
            self._zone_names = {z.id: z.name for z in zones}
            self._registry_at = time.monotonic()
        return self._registry

    def cached_registry(self) -> dict[str, RegistryRow]:
        """The rows as last read (when the database cannot be read now)."""
        return self._registry

    def zone_name(self, zone: str | None) -> str | None:
        return self._zone_names.get(zone or "")

    # ------------------------------------------------------------------ worker side

    def check_staleness(
        self, now: float, started_at: float, config: FleetConfig
    ) -> tuple[list[AlertOp], list[tuple[str, bool]]]:
        """Clusters silent for too long go offline (``stale``); registered clusters never heard of
        since start-up get the ``offline`` alert. Returns the alert changes and online changes."""
        ops: list[AlertOp] = []
        changes: list[tuple[str, bool]] = []
        limit = config.stale_after_s
        with self.lock:
            for speaker, live in self.live.items():
                if live.stale or not live.status_online:
                    continue
                fresh = max(x for x in (live.health_at, live.status_at, live.last_seen, 0.0) if x is not None)
                if now - fresh > limit:
                    live.stale = True
                    live.playing = None
                    ops.extend(evaluate(speaker, live, config))
                    changes.append((speaker, False))
        if now - started_at > limit:
            registry = self.registry_rows()
            with self.lock:
                for speaker, (_, _, enabled) in registry.items():
                    if not enabled or speaker in self.live:
                        continue
                    live = self.live.setdefault(speaker, LiveState())
                    live.alerts["offline"] = (None, ALERT_MESSAGES["never"])
                    ops.append((speaker, "offline", ALERT_MESSAGES["never"], True))
        return ops, changes

    # ------------------------------------------------------------------ cards

    def _speaker_dict(self, speaker: str, row: RegistryRow) -> dict[str, Any]:
        name, zone, enabled = row
        live = self.live.get(speaker) or LiveState()
        health = dict(live.health) if live.health is not None else None
        amplifier_on = health.get("amplifier_on") if health else None
        receipt_at = self.play_receipt_at.get(speaker)
        if health is not None and (receipt_at is None or (live.health_at or 0.0) > receipt_at):
            playing_id = health.get("playing")  # the health report is the freshest word
        else:
            # A receipt came after the last health report: it says what plays now. The node switches
            # its amplifier on before it plays, so a playing cluster's amplifier is on.
            playing_id = live.playing
            if live.playing and live.online():
                amplifier_on = True
        playing = None
        if playing_id and live.online():
            title = None
            if self.titles is not None:
                try:
                    title = self.titles(playing_id)
                except Exception:
                    _LOGGER.exception("title lookup failed")
            playing = {"broadcast_id": _int_or_str(playing_id), "title": title}
        return {
            "id": speaker,
            "name": name,
            "zone": zone,
            "enabled": enabled,
            "online": live.online(),
            "stale": live.stale,
            "last_seen": iso(live.last_seen),
            "health": health,
            "health_at": iso(live.health_at),
            "playing": playing,
            "volume": health.get("volume") if health else None,
            "amplifier_on": amplifier_on,
            "alerts": [{"kind": k, "message": m} for k, (_, m) in sorted(live.alerts.items())],
            "malformed": self.ingest.malformed_by_speaker.get(speaker, 0),
        }


def _int_or_str(value: str) -> int | str:
    """The broadcast a node reports: ``"12"`` and re-airings ``"12-r1"`` (see broadcasts) -> 12."""
    try:
        return int(value.partition("-r")[0])
    except (TypeError, ValueError):
        return value

"""Play and stop commands on the wire: one publish per whole zone, one per cluster otherwise.

A zone publish carries ``targets`` (the members meant) and serves every member at once; it is used
when the zone was targeted as a whole and at least two of its members get the same attempt.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

from broadcaster.broadcasts.state import Airing, wire_id
from broadcaster.fleet.targets import ZoneMap
from broadcaster.transport import Transport
from speakers.protocol import PlayCommand, StopCommand, StreamCommand

# A stop that could not be delivered within a minute is pointless: the item has ended anyway.
STOP_EXPIRY_S = 60


class CommandSender:
    """Publishes commands through the transport; counts what it sent."""

    def __init__(self, transport: Transport, clock: Callable[[], float], volume: int | None = None) -> None:
        self.transport = transport
        self.clock = clock
        self.volume = volume
        self.plays_published = 0

    def play(self, airing: Airing, group: Iterable[str], start: float, zones: ZoneMap) -> None:
        """Send the airing's current attempt on ``group`` to start at ``start``."""
        topics = self.transport.topics
        by_zone: dict[tuple[str, int], list[str]] = {}
        for speaker in group:
            key = (zones.zone_of(speaker) or "", airing.attempts.setdefault(speaker, 0))
            by_zone.setdefault(key, []).append(speaker)
        expiry = max(1.0, airing.valid_until - self.clock())
        for (zone, attempt), members in sorted(by_zone.items()):
            assert airing.audio is not None
            base = PlayCommand(
                broadcast_id=wire_id(airing.id, attempt),
                audio=airing.audio,
                start_at=start,
                tier=airing.tier.value,  # type: ignore[arg-type]
                volume=self.volume,
                valid_until=airing.valid_until,
                title=airing.title,
                slot=airing.slot,
            )
            if zone and zone in airing.whole_zones and len(members) >= 2:
                command = dataclasses.replace(base, targets=tuple(sorted(members)))
                self.transport.publish(topics.zone_cmd(zone), command.encode(), qos=1, expiry_s=expiry)
                self.plays_published += 1
                continue
            payload = base.encode()
            for speaker in members:
                self.transport.publish(topics.cmd(speaker), payload, qos=1, expiry_s=expiry)
                self.plays_published += 1

    def stream(
        self, airing: Airing, group: Iterable[str], start: float, zones: ZoneMap, *, lone: bool = False
    ) -> None:
        """Send a stream item (docs/protocol.md section 12) on ``group`` to start at ``start``
        (``lone``: one publish per cluster, e.g. a cluster that came back)."""
        assert airing.stream is not None
        topics = self.transport.topics
        by_zone: dict[tuple[str, int], list[str]] = {}
        for speaker in group:
            zone = "" if lone else (zones.zone_of(speaker) or "")
            by_zone.setdefault((zone, airing.attempts.setdefault(speaker, 0)), []).append(speaker)
        expiry = max(1.0, (airing.end_at or airing.valid_until) - self.clock())
        for (zone, attempt), members in sorted(by_zone.items()):
            base = StreamCommand(
                broadcast_id=wire_id(airing.id, attempt),
                stream=airing.stream,
                start_at=start,
                end_at=airing.end_at,
                tier=airing.tier.value,  # type: ignore[arg-type]
                volume=self.volume,
                title=airing.title,
                # A streamed emergency ends with its last frame, as live speech does.
                kind="relay" if airing.kind == "relay" else "live",
            )
            if zone and zone in airing.whole_zones and len(members) >= 2:
                command = dataclasses.replace(base, targets=tuple(sorted(members)))
                self.transport.publish(topics.zone_cmd(zone), command.encode(), qos=1, expiry_s=expiry)
                self.plays_published += 1
                continue
            payload = base.encode()
            for speaker in members:
                self.transport.publish(topics.cmd(speaker), payload, qos=1, expiry_s=expiry)
                self.plays_published += 1

    def stop(self, airing: Airing, speakers: Iterable[str], reason: str, zones: ZoneMap) -> None:
        """Stop the airing's current attempt on ``speakers`` (one zone publish where a whole zone
        stops with one attempt)."""
        topics = self.transport.topics
        remaining = set(speakers)
        for zone, members in sorted(zones.members.items()):
            attempts = {airing.attempts.get(s, 0) for s in members}
            if (
                len(members) >= 2
                and members <= remaining
                and zone in airing.whole_zones
                and len(attempts) == 1
            ):
                stop = StopCommand(broadcast_id=wire_id(airing.id, attempts.pop()), reason=reason)
                self.transport.publish(topics.zone_cmd(zone), stop.encode(), qos=1, expiry_s=STOP_EXPIRY_S)
                remaining -= members
        for speaker in sorted(remaining):
            stop = StopCommand(
                broadcast_id=wire_id(airing.id, airing.attempts.get(speaker, 0)), reason=reason
            )
            self.transport.publish(topics.cmd(speaker), stop.encode(), qos=1, expiry_s=STOP_EXPIRY_S)

    def stop_everything(self, reason: str, zones: ZoneMap) -> None:
        """A stop of whatever plays, to every zone and to every cluster without a zone."""
        topics = self.transport.topics
        stop = StopCommand(broadcast_id=None, reason=reason).encode()
        for zone in sorted(zones.members):
            self.transport.publish(topics.zone_cmd(zone), stop, qos=1, expiry_s=STOP_EXPIRY_S)
        for speaker, zone in sorted(zones.speaker_zone.items()):
            if zone is None:
                self.transport.publish(topics.cmd(speaker), stop, qos=1, expiry_s=STOP_EXPIRY_S)


__all__ = ["STOP_EXPIRY_S", "CommandSender"]

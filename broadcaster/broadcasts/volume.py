"""Volume commands: one QoS 1 ``volume`` command per whole zone, one per cluster otherwise."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.broadcasts.errors import BroadcastError
from broadcaster.broadcasts.ledger import Ledger
from broadcaster.fleet.targets import TargetError, resolve
from broadcaster.models import Speaker
from broadcaster.transport import Transport, TransportError
from speakers.protocol import VolumeCommand

# A volume command still queued for an offline cluster is dropped by the broker after this long: a
# node coming back a day later should not jump to a volume somebody set (and maybe undid) meanwhile.
VOLUME_EXPIRY_S = 3600


def set_volume(
    sessions: sessionmaker[Session],
    transport: Transport,
    ledger: Ledger,
    targets: Sequence[str],
    volume: int,
    *,
    by: str | None,
    clock: Callable[[], float],
) -> list[str]:
    """Set the volume (0..100) of the clusters named by ``targets`` (resolved like a broadcast's;
    disabled clusters are left out). A whole zone gets one command on the zone topic when every
    registered member of it is meant and enabled. The decision is written to the log with who
    asked. Returns the ids of the clusters addressed, sorted. Raises BroadcastError on a bad volume
    or target, or when the command could not be handed to the broker. Runs in the caller's thread:
    nothing here is slow."""
    if isinstance(volume, bool) or not isinstance(volume, int) or not 0 <= volume <= 100:
        raise BroadcastError(f"Âm lượng phải là số nguyên từ 0 đến 100 (nhận {volume!r}).", field="volume")
    with sessions() as session:
        try:
            resolution = resolve(session, list(targets))
        except TargetError as exc:
            raise BroadcastError(exc.message, field="targets") from exc
        registered: dict[str, list[tuple[str, bool]]] = {}
        for sid, zone, enabled in session.execute(select(Speaker.id, Speaker.zone_id, Speaker.enabled)):
            if zone is not None:
                registered.setdefault(zone, []).append((sid, enabled))
    speakers = list(resolution.speakers)
    payload = VolumeCommand(volume=volume).encode()
    topics = transport.topics
    by_zone: list[str] = []
    remaining = set(speakers)
    for zone in sorted(resolution.whole_zones):
        members = registered.get(zone, [])
        if members and all(enabled for _, enabled in members):
            by_zone.append(zone)
            remaining -= {sid for sid, _ in members}
    try:
        for zone in by_zone:
            transport.publish(topics.zone_cmd(zone), payload, qos=1, expiry_s=VOLUME_EXPIRY_S)
        for speaker in sorted(remaining):
            transport.publish(topics.cmd(speaker), payload, qos=1, expiry_s=VOLUME_EXPIRY_S)
    except TransportError as exc:
        raise BroadcastError(f"Không gửi được lệnh âm lượng tới cụm loa: {exc}", code="unavailable") from exc
    where = ", ".join(targets)
    text = f"Đặt âm lượng {volume}% cho {len(speakers)} cụm loa ({where})" + (f" bởi {by}" if by else "")
    with sessions.begin() as session:
        only = speakers[0] if len(speakers) == 1 else None
        ledger.log(session, "volume", text, None, only, now=clock())
    return speakers


__all__ = ["VOLUME_EXPIRY_S", "set_volume"]

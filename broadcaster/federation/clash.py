"""A priority bulletin from above meets the commune's own priority item: what clashes, and the
copy of the commune's item that is put back behind the bulletin when "upstream first" is chosen.

The decision is taken before submitting (``intake``), never inside arbitration: arbitration serves
one tier by arrival, so the order is set by which item is submitted first.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from broadcaster.domain import Announcement, AudioKey, Source, Tier
from broadcaster.fleet.targets import TargetError, resolve
from broadcaster.models import Announcement as AnnouncementRow
from broadcaster.models import Broadcast, BroadcastState, Delivery

# The commune's own priority item "is queued or playing" in these states.
BUSY = (BroadcastState.RENDERING.value, BroadcastState.SENDING.value, BroadcastState.PLAYING.value)
# Why the commune's own item was taken off the air (the decision log and its page).
PUT_BACK = "hoãn để phát tin ưu tiên của cấp trên trước, phát lại ngay sau"


def own_priority_clashes(session: Session, targets: list[str]) -> list[int]:
    """Ids of the level's own priority broadcasts, queued or playing, on a cluster ``targets`` reach."""
    busy = list(
        session.scalars(
            select(Broadcast.id)
            .join(AnnouncementRow, AnnouncementRow.id == Broadcast.announcement_id)
            .where(
                Broadcast.tier == Tier.PRIORITY.value,
                Broadcast.state.in_(BUSY),
                AnnouncementRow.source != Source.UPSTREAM.value,
            )
        )
    )
    if not busy:
        return []
    try:
        mine = resolve(session, targets).speakers
    except TargetError:
        return []
    query = select(Delivery.broadcast_id).where(
        Delivery.broadcast_id.in_(busy), Delivery.speaker_id.in_(mine)
    )
    return sorted(set(session.scalars(query)))


def copy_of(session: Session, broadcast_id: int) -> Announcement | None:
    """The announcement of a broadcast not yet finished, to submit it again; None if finished."""
    bc = session.get(Broadcast, broadcast_id)
    if bc is None or BroadcastState(bc.state).finished:
        return None
    a = bc.announcement
    return Announcement(
        text=a.text,
        tier=Tier(bc.tier),
        targets=tuple(bc.targets or ["all"]),
        title=a.title,
        repeat=a.repeat,
        engine=a.engine,
        voice=a.voice,
        author=a.author,
        source=Source(a.source) if a.source in Source._value2member_map_ else Source.WEB,
        # An uploaded recording keeps its audio; a text is rendered again (a cache hit).
        audio_key=AudioKey(a.audio_key) if a.audio_key and not a.normalized_text else None,
    )


__all__ = ["BUSY", "PUT_BACK", "copy_of", "own_priority_clashes"]

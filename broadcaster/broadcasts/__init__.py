"""The broadcast lifecycle: targets, priority tiers, arbitration, delivery receipts, the decision log.

Start with ``service.py`` (the public face, ``BroadcastManager``, and the flow of one broadcast; its
docstring lists every module). It delegates new broadcasts to ``submissions.py`` and the stream
hub's news to ``stream_events.py``; the one dispatcher thread (``dispatcher.py``) changes the
airings through ``lifecycle.py``, which applies arbitration's decisions with ``decisions.py``. The
policy is in ``arbitration.py``; ``ledger.py`` is the only writer of the rows.
"""

from broadcaster.broadcasts.config import BroadcastsConfig
from broadcaster.broadcasts.errors import BroadcastError
from broadcaster.broadcasts.service import BroadcastManager
from broadcaster.broadcasts.state import parse_wire_id, wire_id
from broadcaster.broadcasts.validation import AnnouncementInvalid, AnnouncementValidator, Draft, Limits

__all__ = [
    "AnnouncementInvalid",
    "AnnouncementValidator",
    "BroadcastError",
    "BroadcastManager",
    "BroadcastsConfig",
    "Draft",
    "Limits",
    "parse_wire_id",
    "wire_id",
]

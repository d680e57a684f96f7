"""The broadcast lifecycle: targets, priority tiers, arbitration, delivery receipts, the decision log.

Start with ``service.py`` (the public face and the flow of one broadcast); the policy is in
``arbitration.py``.
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

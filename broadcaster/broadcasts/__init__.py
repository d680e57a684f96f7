"""The broadcast lifecycle: targets, priority tiers, arbitration, delivery receipts, the decision log.

See ``manager.py`` for the arbitration policy (preemption, re-queueing, quiet hours, catch-up).
"""

from broadcaster.broadcasts.config import BroadcastsConfig
from broadcaster.broadcasts.manager import BroadcastError, BroadcastManager

__all__ = ["BroadcastError", "BroadcastManager", "BroadcastsConfig"]

"""The fleet: the speaker registry (``registry.py``), the live state of every cluster from its
status and health messages, offline detection and alerts (``live.py``), and the router through
which every node message enters the controller (``ingest.py``)."""

from broadcaster.fleet.config import FleetConfig
from broadcaster.fleet.live import Fleet

__all__ = ["Fleet", "FleetConfig"]

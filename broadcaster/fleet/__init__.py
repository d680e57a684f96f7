"""The fleet: the speaker registry (``registry.py``), the worker that keeps the live state of every
cluster from its status and health messages and detects offline clusters (``live.py``), the live
board read by the dashboard and the API (``board.py``), the alert rows and listeners
(``alertbook.py``, rules in ``alerting.py``), and the router through which every node message
enters the controller (``ingest.py``)."""

from broadcaster.fleet.config import FleetConfig
from broadcaster.fleet.live import Fleet

__all__ = ["Fleet", "FleetConfig"]

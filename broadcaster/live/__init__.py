"""Relay channels and live speech: pull a source once, condition it, frame it in time.

- ``config``: the ``live`` settings; ``channels``: the admin-defined relay channels (table and CRUD);
- ``probe``: a first look at a relay URL (clear errors); ``conditioner``: the ffmpeg command lines;
- ``framer``: PCM -> timed frames (sans I/O); ``pump``: one thread per source (ffmpeg, stalls,
  retries, live feed); ``hub``: one pump per source shared by the airings, frames published.

The wire format is docs/protocol.md section 12; nodes play it with ``speakers/stream.py``.
"""

from broadcaster.live.config import LiveConfig
from broadcaster.live.hub import HubListener, StreamHub, StreamInfo
from broadcaster.live.probe import SourceError, check_url

__all__ = ["HubListener", "LiveConfig", "SourceError", "StreamHub", "StreamInfo", "check_url"]

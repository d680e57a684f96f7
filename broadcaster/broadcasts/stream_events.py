"""The stream hub's news about an airing's stream, handed to the dispatcher.

:class:`StreamEvents` is the hub's listener (``broadcaster.live.hub.HubListener``): a relay's or a
live item's source is ready, failed, had a gap, or ended. It is called on the hub's threads, so it
never waits on the dispatcher: each piece of news is posted to it and applied by
:class:`~broadcaster.broadcasts.lifecycle.Lifecycle` in its next batch. When a live item ends,
what was said is converted and kept in the audio store here (it takes a moment, on the hub's
thread), then linked from its broadcast on the dispatcher's.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy.orm import Session

from broadcaster.broadcasts.dispatcher import Dispatcher
from broadcaster.broadcasts.lifecycle import Lifecycle
from broadcaster.broadcasts.ports import SpeechPort
from broadcaster.broadcasts.streams import remove_file
from broadcaster.live.hub import StreamInfo
from broadcaster.models import Broadcast

_LOGGER = logging.getLogger(__name__)

# A recording shorter than this (seconds) is a click, not speech: not kept.
_MIN_RECORDING_S = 0.2
# The size of a WAV header, not audio.
_WAV_HEADER = 44


class StreamEvents:
    """See the module docstring. ``sample_rate``: the hub's recordings' (16-bit mono)."""

    def __init__(
        self, *, dispatcher: Dispatcher, lifecycle: Lifecycle, speech: SpeechPort, sample_rate: int
    ) -> None:
        self.dispatcher = dispatcher
        self.lifecycle = lifecycle
        self.speech = speech
        self.sample_rate = sample_rate

    def stream_ready(self, broadcast_id: int, info: StreamInfo) -> None:
        self.dispatcher.post(lambda session: self.lifecycle.stream_ready(session, broadcast_id, info))

    def stream_failed(self, broadcast_id: int, reason: str) -> None:
        self.dispatcher.post(lambda session: self.lifecycle.stream_failed(session, broadcast_id, reason))

    def stream_gap(self, broadcast_id: int, message: str) -> None:
        self.dispatcher.post(lambda session: self.lifecycle.streams.gap(session, broadcast_id, message))

    def stream_ended(self, broadcast_id: int, end_at: float, recording: Path | None) -> None:
        self.dispatcher.post(
            lambda session: self.lifecycle.stream_ended(session, broadcast_id, end_at, recording)
        )
        if recording is not None:
            self._keep_recording(broadcast_id, recording)

    def _keep_recording(self, broadcast_id: int, recording: Path) -> None:
        """What was said, into the audio store (hub thread: the conversion takes a moment)."""
        try:
            data = recording.read_bytes()
            seconds = max(0.0, (len(data) - _WAV_HEADER) / 2 / self.sample_rate)
            if seconds < _MIN_RECORDING_S:
                return
            importer = getattr(self.speech, "import_recording", None)
            if importer is None:
                return
            result = importer(data, f"truc-tiep-{broadcast_id}.wav", chime=False)
        except Exception:
            _LOGGER.warning("live %s: the recording could not be kept", broadcast_id, exc_info=True)
            return
        finally:
            remove_file(recording)

        def keep(session: Session) -> None:
            bc = session.get(Broadcast, broadcast_id)
            if bc is not None:
                self.lifecycle.streams.keep_recording(session, bc, result.key, seconds)

        self.dispatcher.post(keep)


__all__ = ["StreamEvents"]

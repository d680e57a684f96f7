"""The speech service: text in, broadcast-ready MP3 in the store out. The seam the rest of the
controller uses (web form, REST API, scheduled bulletins, broadcasts); import it from here.

- ``service.py``: ``SpeechService``, the face: text checks and normalization, the render with
  engine fallback and the store lookups; it delegates to the modules below.
- ``program.py``: the sound: render settings (part of every audio key), pauses, chime, repeats,
  mastering; ``RENDER_VERSION``.
- ``engines.py``: the engines as the officer sees them (labels, voices, skipped or not, usage) and
  which engine an engine/voice choice means.
- ``recordings.py``: an officer's own recording imported as broadcast audio.
- ``errors.py``: ``SpeechError`` and ``RenderResult``, what the service answers.

The streamed render of emergencies is ``broadcaster/speech_stream.py``.
"""

from broadcaster.speech.engines import ENGINE_LABELS_VI, EngineCatalog
from broadcaster.speech.errors import (
    ALL_ENGINES_FAILED_VI,
    NOTHING_TO_READ_VI,
    RenderResult,
    SpeechError,
    normalization_message_vi,
)
from broadcaster.speech.program import RENDER_VERSION, Program, audio_key
from broadcaster.speech.recordings import RECORDING_ENGINE, RecordingImporter
from broadcaster.speech.service import DEFAULT_MAX_CHARS, SpeechService, TextNormalizer

__all__ = [
    "ALL_ENGINES_FAILED_VI",
    "DEFAULT_MAX_CHARS",
    "ENGINE_LABELS_VI",
    "NOTHING_TO_READ_VI",
    "RECORDING_ENGINE",
    "RENDER_VERSION",
    "EngineCatalog",
    "Program",
    "RecordingImporter",
    "RenderResult",
    "SpeechError",
    "SpeechService",
    "TextNormalizer",
    "audio_key",
    "normalization_message_vi",
]

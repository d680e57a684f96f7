"""The TTS engines offered by the web form: ``SpeechService.engines()`` as the form shows them."""

from __future__ import annotations

import logging
from typing import Any

_LOGGER = logging.getLogger(__name__)


def engine_choices(speech: Any) -> list[dict[str, Any]]:
    """Engines and their voices as ``[{"name", "label", "voices": [{"id", "label"}], "available"}]``;
    empty when the speech service cannot describe itself (the form still works with the default)."""
    try:
        engines = speech.engines()
    except Exception:
        _LOGGER.exception("speech.engines() failed")
        return []
    return [
        {
            "name": item["name"],
            "label": item.get("label") or item["name"],
            "voices": [{"id": v, "label": v} for v in item.get("voices") or ()],
            "available": bool(item.get("available", True)),
        }
        for item in engines
    ]

"""The TTS engines offered by the web form and accepted by the API: one reading of
``SpeechService.engines()`` for both, whatever shape it returns (names, dicts or objects)."""

from __future__ import annotations

import logging
from typing import Any

_LOGGER = logging.getLogger(__name__)


def _getter(item: Any) -> Any:
    return item.get if isinstance(item, dict) else (lambda k, d=None: getattr(item, k, d))


def engine_choices(speech: Any) -> list[dict[str, Any]]:
    """Engines and their voices as ``[{"name", "label", "voices": [{"id", "label"}], "available"}]``;
    empty when the speech service cannot describe itself (the form still works with the default)."""
    if speech is None:
        return []
    try:
        raw = speech.engines()
    except Exception:
        _LOGGER.exception("speech.engines() failed")
        return []
    if isinstance(raw, dict):
        raw = [{"name": k, **(v if isinstance(v, dict) else {"voices": v})} for k, v in raw.items()]
    out: list[dict[str, Any]] = []
    for item in raw or ():
        if isinstance(item, str):
            out.append({"name": item, "label": item, "voices": [], "available": True})
            continue
        get = _getter(item)
        name = get("name") or get("id")
        if not name:
            continue
        voices = []
        for v in get("voices", None) or ():
            if isinstance(v, str):
                voices.append({"id": v, "label": v})
                continue
            vget = _getter(v)
            vid = vget("id") or vget("name")
            if vid:
                voices.append({"id": str(vid), "label": str(vget("label") or vget("description") or vid)})
        available = get("available", True)
        out.append(
            {
                "name": str(name),
                "label": str(get("label") or get("description") or name),
                "voices": voices,
                "available": bool(True if available is None else available),
            }
        )
    return out


def unknown_engine(speech: Any, engine: str | None) -> list[str] | None:
    """None when ``engine`` is empty, known, or nothing can be checked (no engine list); else the
    sorted names that are accepted, for the error message."""
    if not engine:
        return None
    names = {e["name"] for e in engine_choices(speech)}
    if not names or engine in names:
        return None
    return sorted(names)

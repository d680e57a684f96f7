"""The speech engines as the officer's pages show them: ``SpeechService.engines()`` turned into the
compose form's choices (voices grouped by accent, with gender, as the engines describe them), the
dashboard's notice about engines set aside, and the settings page's character counts."""

from __future__ import annotations

import logging
from typing import Any

_LOGGER = logging.getLogger(__name__)

# Accents in the order the picker lists them (``broadcaster.tts.base.Region`` values).
REGIONS = (("bac", "Giọng miền Bắc"), ("trung", "Giọng miền Trung"), ("nam", "Giọng miền Nam"))
# Why an engine is set aside that is no news to an officer: it is simply not installed here.
_QUIET_KINDS = frozenset({"not_installed"})


def _engines(speech: Any) -> list[dict[str, Any]]:
    try:
        return list(speech.engines())
    except Exception:
        _LOGGER.exception("speech.engines() failed")
        return []


def engine_choices(speech: Any) -> list[dict[str, Any]]:
    """Engines and their voices as ``[{"name", "label", "voices": [{"id", "label"}], "available"}]``;
    empty when the speech service cannot describe itself (the form still works with the default)."""
    out = []
    for item in _engines(speech):
        info = {v["name"]: v for v in item.get("voice_info") or ()}
        out.append(
            {
                "name": item["name"],
                "label": item.get("label") or item["name"],
                "voices": [
                    {"id": v, "label": (info.get(v) or {}).get("label_vi") or v}
                    for v in item.get("voices") or ()
                ],
                "available": bool(item.get("available", True)),
            }
        )
    return out


def voice_groups(speech: Any) -> list[dict[str, Any]]:
    """The voice picker's groups: voices the engines describe, by accent ("Giọng miền Bắc"...),
    each labelled with name, gender, accent and provider; then one group per engine that does not
    describe its voices. Each voice: ``{"id", "engine", "label", "region", "gender"}``."""
    by_region: dict[str, list[dict[str, Any]]] = {key: [] for key, _ in REGIONS}
    others: list[dict[str, Any]] = []
    for item in _engines(speech):
        if not item.get("available", True):
            continue
        described = {v["name"]: v for v in item.get("voice_info") or ()}
        plain = []
        for voice in item.get("voices") or ():
            info = described.get(voice)
            if info is not None and info.get("region") in by_region:
                by_region[info["region"]].append(
                    {
                        "id": voice,
                        "engine": item["name"],
                        "label": info.get("label_vi") or voice,
                        "region": info.get("region"),
                        "gender": info.get("gender"),
                    }
                )
            else:
                plain.append(
                    {"id": voice, "engine": item["name"], "label": voice, "region": None, "gender": None}
                )
        if plain:
            others.append({"label": item.get("label") or item["name"], "voices": plain})
    groups = [{"label": label, "voices": by_region[key]} for key, label in REGIONS if by_region[key]]
    return groups + others


def engine_notices(speech: Any) -> list[str]:
    """One Vietnamese sentence per engine set aside for now (quota spent, wrong key, too many
    requests, daily cap...), for the dashboard; nothing for an engine simply not installed."""
    try:
        statuses = list(speech.engine_status())
    except Exception:
        _LOGGER.exception("speech.engine_status() failed")
        return []
    notices = []
    for status in statuses:
        if not status.get("skipped") or status.get("kind") in _QUIET_KINDS:
            continue
        label = status.get("label_vi") or status.get("name")
        reason = (status.get("reason_vi") or "").rstrip(".")
        until = status.get("until_vi")
        text = f"Giọng đọc «{label}» tạm thời không dùng"
        text += f" đến {until}" if until else ""
        text += f": {reason[:1].lower() + reason[1:]}" if reason else ""
        notices.append(text + ". Bản tin vẫn được đọc bằng giọng khác.")
    return notices


def usage_rows(speech: Any) -> list[dict[str, Any]]:
    """Characters sent today and this month per paid engine, with the daily cap (settings page)."""
    try:
        rows = list(speech.usage())
    except Exception:
        _LOGGER.exception("speech.usage() failed")
        return []
    return [row.to_dict() if hasattr(row, "to_dict") else dict(row) for row in rows]

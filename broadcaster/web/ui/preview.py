"""The compose preview's text: what will be read aloud, shown so it is easy to proofread.

The normalizer lower-cases what it reads; the preview maps its tokens back to the officer's text
instead: a word read as written shows as written (capitals kept), a rewritten piece shows its
spoken form (capitalized when the original was) with the original as a tooltip, and what the
normalizer could not read with confidence (an emoji, an unknown symbol or currency) is flagged,
with the normalizer's note. No routes here; ``compose`` calls these."""

from __future__ import annotations

from typing import Any

from flask import current_app

from broadcaster.web.ui import services

NORMALIZER_KEY = "loa_normalizer"


def base_normalizer() -> Any:
    found = services()
    existing = getattr(found, "normalizer", None)
    if existing is not None:
        return existing
    cached = current_app.extensions.get(NORMALIZER_KEY)
    if cached is None:
        from broadcaster.textnorm import Normalizer

        cached = Normalizer.from_config(found.settings.textnorm)
        current_app.extensions[NORMALIZER_KEY] = cached
    return cached


def _capitalized_like(spoken: str, original: str) -> str:
    """``spoken`` with a capital first letter when ``original`` starts with one ("UBND" -> "Ủy ban
    nhân dân"), so a rewritten piece reads naturally at the start of a sentence or as a name."""
    if spoken and original[:1].isupper():
        return spoken[0].upper() + spoken[1:]
    return spoken


def _segment(token: Any) -> dict[str, Any]:
    original, spoken = str(token.original), str(token.spoken)
    changed = bool(token.changed)
    note = str(getattr(token, "note", "") or "") if getattr(token, "flagged", False) else ""
    if not changed:
        return {"text": original, "original": None, "note": note or None}
    shown = _capitalized_like(spoken, original) if spoken.strip() else original
    return {
        "text": shown,
        "original": original if shown != original else None,
        "note": note or None,
    }


# No space is put before these when a rewritten piece touches them ("bảy giờ." not "bảy giờ .").
_CLOSING = set(".,;:!?)]}»\u201d…%")  # \u201d: a closing curly quote in pasted text
_OPENING = set("([{«\u201c")


def _spaced(segments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A space between a rewritten piece and a word it touches: "<script>" is read "nhỏ hơn script
    lớn hơn", and shown so, not "nhỏ hơnscriptlớn hơn"."""
    out: list[dict[str, Any]] = []
    for seg in segments:
        if out:
            left, right = out[-1], seg
            rewritten = left["original"] is not None or right["original"] is not None
            a, b = left["text"][-1:], right["text"][:1]
            if (
                rewritten
                and a
                and b
                and not a.isspace()
                and not b.isspace()
                and b not in _CLOSING
                and a not in _OPENING
            ):
                if left["original"] is None and left["note"] is None:
                    left["text"] += " "
                elif right["original"] is None and right["note"] is None:
                    seg = {**right, "text": " " + right["text"]}
                else:
                    out.append({"text": " ", "original": None, "note": None})
        out.append(seg)
    return out


def preview_segments(text: str, overrides: dict[str, str]) -> tuple[str, list[dict[str, Any]]]:
    """The spoken text and the pieces to show: ``{"text", "original", "note"}`` where ``original``
    is set on a rewritten piece and ``note`` on one the officer should check."""
    normalizer = base_normalizer()
    if overrides:
        normalizer = normalizer.with_overrides(overrides)
    result = normalizer.analyze(text)
    spoken_text = str(result.text)
    tokens = list(getattr(result, "tokens", ()) or ())
    if not tokens:
        return spoken_text, [{"text": spoken_text, "original": None, "note": None}]
    merged: list[dict[str, Any]] = []
    for seg in _spaced([_segment(t) for t in tokens]):
        plain = seg["original"] is None and seg["note"] is None
        if plain and merged and merged[-1]["original"] is None and merged[-1]["note"] is None:
            merged[-1]["text"] += seg["text"]  # neighbouring plain pieces: fewer DOM nodes
        elif seg["text"]:
            merged.append(seg)
    return spoken_text, merged


__all__ = ["NORMALIZER_KEY", "base_normalizer", "preview_segments"]

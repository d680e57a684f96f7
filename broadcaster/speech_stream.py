"""Streamed rendering: an emergency starts playing as soon as its first part is ready.

A normal render waits for every sentence (and the mastering) before anything can air: with a cloud
engine that takes 800 ms a request, a ten-sentence emergency would wait seconds. Streamed, the
program goes to a *sink* (the stream hub's feed of the emergency's live stream, see
``broadcaster/broadcasts/streams.py``) piece by piece, in order, as it is made:

1. the opening chime at once (no synthesis needed), at a fixed level;
2. each sentence as soon as it and the ones before it are synthesized (the engine's parallel calls,
   ``EngineChain.call_ordered``), trimmed and followed by its pause;
3. the repeats (the same clips again, with the connector) and the closing chime; then the sink is
   closed (the stream's last frame).

Only then is the whole program assembled from the same clips, mastered and stored under the key a
normal render would have, so the log can play it and the next airing of the same text is a cache
hit (no stream at all). An engine that fails on a piece hands the rest to the next engine in the
order; a program of two engines is stored under its own key. A render already stored is returned
at once, the sink untouched.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from broadcaster.audio import render
from broadcaster.audio.loudness import AudioError
from broadcaster.domain import AudioKey
from broadcaster.tts import EngineUnavailable, TtsError

if TYPE_CHECKING:
    from broadcaster.pronunciation import SpokenForms
    from broadcaster.speech import RenderResult, SpeechService

_LOGGER = logging.getLogger(__name__)


class ProgramSink(Protocol):
    """Where a streamed program goes. ``rate``: the PCM rate it takes (s16le mono)."""

    rate: int

    def open(self) -> None: ...

    def write(self, pcm: bytes) -> None: ...

    def close(self) -> None: ...


def render_streamed(
    service: SpeechService,
    text: str,
    *,
    sink: ProgramSink,
    engine: str | None = None,
    voice: str | None = None,
    repeat: int = 1,
    chime: bool = True,
    lexicon: Mapping[str, str] | None = None,
) -> RenderResult:
    """See the module docstring. Raises SpeechError (the sink closed) when no engine can read a piece."""
    from broadcaster.speech import SpeechError

    text = service.check_text(text)
    if not isinstance(repeat, int) or not 1 <= repeat <= service.audio.max_repeat:
        raise SpeechError(
            f"Số lần đọc phải từ 1 đến {service.audio.max_repeat}.",
            f"repeat must be between 1 and {service.audio.max_repeat}",
        )
    forms = service.spoken_forms(text, lexicon)
    requested = service.requested_engine(engine, voice)
    settings = service.render_settings(repeat=repeat, chime=chime)
    found = service.cached(text, forms, requested, voice, settings)
    if found is not None:
        return found

    a = service.audio
    rate = sink.rate
    sink.open()
    try:
        if chime:
            sink.write(render.stream_chime(rate, True, a.chime_gap_ms))
        parts, used, connector, spoken = _stream_pieces(service, forms, requested, voice, sink, repeat)
        if repeat > 1:
            body = [render.stream_piece(clip, pause, rate) for clip, pause in parts]
            for _ in range(repeat - 1):
                sink.write(render.stream_piece(None, a.repeat_gap_ms, rate))
                if connector is not None:
                    sink.write(render.stream_piece(connector, a.repeat_gap_ms, rate))
                for pcm in body:
                    sink.write(pcm)
        if chime:
            sink.write(render.stream_chime(rate, False, a.chime_gap_ms))
    finally:
        sink.close()

    first = service.chain.engine(used[0])
    first_voice = service.voice_for(first, requested, voice)
    if len(used) == 1:
        key = service.key_for(first, first_voice, spoken, settings, forms.of(first, first_voice).hints)
    else:  # engines took over from each other: this exact program, under a key of its own
        payload: dict[str, Any] = {"engines": used, "text": spoken, "settings": settings}
        texts = [
            forms.of(e, service.voice_for(e, requested, voice)).text for e in map(service.chain.engine, used)
        ]
        if any(t != spoken for t in texts):  # per-engine lexicon entries: each engine's own text
            payload["texts"] = texts
        blob = json.dumps(payload, ensure_ascii=False)
        key = AudioKey(hashlib.sha256(blob.encode("utf-8")).hexdigest())
    name = used[0] if len(used) == 1 else "+".join(used)

    def build() -> tuple[bytes, dict[str, Any]]:
        return service.program.assemble(
            name, first_voice, text, spoken, parts, connector, repeat=repeat, chime=chime, settings=settings
        )

    try:
        _, meta, hit = service.store.get_or_create(key, build)
    except AudioError as exc:
        raise SpeechError(
            "Không lưu được âm thanh.", f"mastering the streamed program failed: {exc}"
        ) from exc
    return service.program.result(key, meta, text, spoken, hit=hit)


def _stream_pieces(
    service: SpeechService,
    forms: SpokenForms,
    requested: str | None,
    voice: str | None,
    sink: ProgramSink,
    repeat: int,
) -> tuple[list[tuple[Any, int]], list[str], Any, str]:
    """Synthesize the pieces in order into ``sink``; returns (clip, pause) per piece, the engines
    used in order, the repeat connector's clip (None without repeats) and the spoken text of the
    first engine used. An engine taking over reads the rest with its own lexicon entries when its
    text has the same pieces (a reading with punctuation may split it differently: then it reads
    the first engine's text)."""
    from broadcaster.speech import SpeechError

    chain = service.chain
    remaining: list[Any] = []
    first_spoken = ""
    parts: list[tuple[Any, int]] = []
    used: list[str] = []
    reasons: dict[str, str] = {}
    for eng in chain.plan(requested):
        eng_voice = service.voice_for(eng, requested, voice) or None
        spoken = forms.of(eng, eng_voice or "")
        if not parts and not used:
            remaining, first_spoken = list(spoken.pieces), spoken.text
        elif len(spoken.pieces) == len(parts) + len(remaining):
            remaining = list(spoken.pieces[len(parts) :])
        try:
            texts = [piece.text for piece in remaining]
            for clip in chain.call_ordered(eng, texts, eng_voice, spoken.hints or None):
                piece = remaining[0]
                pause = service.program.pause_ms(piece.pause)
                pcm = render.stream_piece(clip, pause, sink.rate)  # AudioError: the engine's bytes
                remaining.pop(0)
                parts.append((clip, pause))
                if eng.name not in used:
                    used.append(eng.name)
                sink.write(pcm)
        except TtsError as exc:
            reasons[eng.name] = str(exc)
            if isinstance(exc, EngineUnavailable):
                _LOGGER.warning("TTS engine %s unavailable: %s", eng.name, exc)
            else:
                chain.trip(eng.name, str(exc), exc)
            continue
        except AudioError as exc:
            _LOGGER.warning("streaming with %s failed: %s", eng.name, exc)
            reasons[eng.name] = f"rendering failed: {exc}"
            continue
        if chain.cooling(eng.name):
            chain.reset(eng.name)
        if not remaining:
            break
    if remaining:
        detail = "; ".join(f"{name}: {why}" for name, why in reasons.items()) or "no engine available"
        raise SpeechError(
            f"Không tạo được âm thanh: mọi bộ đọc đều lỗi ({detail}).",
            f"every TTS engine failed: {detail}",
            reasons,
        )
    connector = None
    connector_text = service.program.connector_text()
    if repeat > 1 and connector_text:
        last = chain.engine(used[-1])
        try:
            connector = chain.call(last, connector_text, service.voice_for(last, requested, voice) or None)
        except TtsError as exc:
            _LOGGER.warning("repeat connector not synthesized: %s", exc)
    return parts, used, connector, first_spoken


__all__ = ["ProgramSink", "render_streamed"]

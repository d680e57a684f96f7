"""``SpeechService``: text in, broadcast-ready MP3 in the store out.

``render`` normalizes the text, looks the result up in the store for each engine in order (a
hit on an earlier engine wins), and on a miss synthesizes piece by piece with the first engine
that works, assembles pauses, chime and repeats, masters loudness, and stores the MP3. It is
synchronous and thread-safe: callers run it in a worker, never on the MQTT thread.

The service owns the text (checking, normalizing, the spoken form per engine) and the render with
fallback; it delegates the sound (``program.Program``), the engine descriptions and the officer's
engine/voice choice (``engines.EngineCatalog``) and imported recordings
(``recordings.RecordingImporter``), keeping their methods on its face for its callers.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from broadcaster.audio.config import AudioConfig
from broadcaster.audio.loudness import AudioError
from broadcaster.audio.script import split_pieces
from broadcaster.audio.store import AudioStore
from broadcaster.domain import AudioKey, nfc
from broadcaster.pronunciation import Spoken, SpokenForms
from broadcaster.speech.engines import EngineCatalog
from broadcaster.speech.errors import (
    ALL_ENGINES_FAILED_VI,
    NOTHING_TO_READ_VI,
    RenderResult,
    SpeechError,
    normalization_message_vi,
)
from broadcaster.speech.program import Program, audio_key
from broadcaster.speech.recordings import RecordingImporter
from broadcaster.tts import EngineChain, EngineUnavailable, TtsEngine, TtsError, build_chain
from broadcaster.tts.usage import UsageCounter, UsageRow

if TYPE_CHECKING:
    from broadcaster.settings import Settings
    from broadcaster.speech_stream import ProgramSink

_LOGGER = logging.getLogger(__name__)

# The longest announcement text by default (``textnorm.max_chars`` in the settings overrides it).
DEFAULT_MAX_CHARS = 20_000

_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class TextNormalizer(Protocol):
    """What the service needs of ``broadcaster.textnorm.Normalizer`` (and of the test fake)."""

    def normalize(self, text: str) -> str: ...

    def with_overrides(self, entries: dict[str, str]) -> TextNormalizer: ...


def _normalization_errors() -> tuple[type[BaseException], ...]:
    try:
        from broadcaster.textnorm import NormalizationError
    except ImportError:
        try:
            from broadcaster.textnorm.errors import NormalizationError
        except ImportError:  # no normalizer package: only injected normalizers
            return ()
    return (NormalizationError,)


def _vi_int(number: int) -> str:
    """20000 -> "20.000" (Vietnamese thousands separator)."""
    return f"{number:,}".replace(",", ".")


class SpeechService:
    """Normalize, synthesize with fallback, render, master and store. Thread-safe."""

    def __init__(
        self,
        chain: EngineChain,
        store: AudioStore,
        audio: AudioConfig | None = None,
        *,
        normalizer: TextNormalizer | None = None,
        normalizer_factory: Callable[[], TextNormalizer] | None = None,
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> None:
        """``normalizer`` has ``normalize(text) -> str`` and ``with_overrides(mapping)``; without
        one, ``normalizer_factory`` builds it on first use."""
        self.chain = chain
        self.store = store
        self.audio = audio or AudioConfig()
        self.max_chars = max_chars
        self.program = Program(store, self.audio)
        self.catalog = EngineCatalog(chain)
        self.recordings = RecordingImporter(self.program)
        self._normalizer = normalizer
        self._normalizer_factory = normalizer_factory
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, *, usage: UsageCounter | None = None) -> SpeechService:
        """The service of ``settings``. ``usage`` counts characters sent to the cloud engines;
        without one, a counter on ``settings.db_url`` is made on first use when a cloud engine is
        in the order (pass the controller's ``SqlUsageCounter(sessions)`` to share its pool)."""
        from broadcaster.tts.config import CLOUD_ENGINES
        from broadcaster.tts.usage import LazySqlUsageCounter

        textnorm = settings.textnorm
        if usage is None and set(settings.tts.order) & set(CLOUD_ENGINES):
            usage = LazySqlUsageCounter(settings.db_url)

        def factory() -> TextNormalizer:
            from broadcaster.textnorm import Normalizer

            return Normalizer.from_config(textnorm)

        store = AudioStore(settings.cache_dir, settings.audio.cache_max_bytes)
        return cls(
            build_chain(settings.tts, usage=usage, timezone=settings.timezone),
            store,
            settings.audio,
            normalizer_factory=factory,
            max_chars=textnorm.max_chars,
        )

    # --- text --------------------------------------------------------------------------------

    def _get_normalizer(self) -> TextNormalizer:
        with self._lock:
            if self._normalizer is None:
                if self._normalizer_factory is None:
                    raise SpeechError(
                        "Chưa cấu hình bộ chuẩn hóa văn bản.", "no text normalizer is configured"
                    )
                self._normalizer = self._normalizer_factory()
            return self._normalizer

    def check_text(self, text: str) -> str:
        """NFC text, or SpeechError when it is empty or over the limit."""
        if not isinstance(text, str):
            raise SpeechError("Nội dung thông báo không hợp lệ.", "the text must be a string")
        text = nfc(text)
        if not text.strip():
            raise SpeechError("Nội dung thông báo đang trống.", "the announcement text is empty")
        if len(text) > self.max_chars:
            raise SpeechError(
                f"Nội dung quá dài: {_vi_int(len(text))} ký tự, tối đa {_vi_int(self.max_chars)} ký tự.",
                f"the text has {len(text)} characters, over the limit of {self.max_chars}",
            )
        return text

    def normalize(self, text: str, lexicon: Mapping[str, str] | None = None) -> str:
        """The spoken form the officer can review before airing (SpeechError on bad input)."""
        text = self.check_text(text)
        normalizer = self._get_normalizer()
        try:
            if lexicon:
                normalizer = normalizer.with_overrides(dict(lexicon))
            spoken = normalizer.normalize(text)
        except _normalization_errors() as exc:
            raise SpeechError(normalization_message_vi(exc), f"text normalization failed: {exc}") from exc
        spoken = nfc(spoken)
        if not spoken.strip():
            raise SpeechError(NOTHING_TO_READ_VI, "nothing speakable in the text")
        return spoken

    # --- engines (``engines.EngineCatalog``) ------------------------------------------------

    def engines(self) -> list[dict[str, Any]]:
        """For the web form: every configured engine in order, whether it works here now, its
        voices and whether it is skipped, until when and why (``EngineCatalog.describe``)."""
        return self.catalog.describe()

    def engine_status(self) -> list[dict[str, Any]]:
        """Per engine: skipped or not, until when and why, for the dashboard notice."""
        return self.catalog.status()

    def usage(self) -> list[UsageRow]:
        """Characters sent today and this month per cloud engine, with the daily caps (settings page)."""
        return self.catalog.usage()

    def requested_engine(self, engine: str | None, voice: str | None) -> str | None:
        """The engine to try first for ``engine``/``voice`` (SpeechError when unknown)."""
        return self.catalog.requested(engine, voice)

    def voice_for(self, eng: TtsEngine, requested: str | None, voice: str | None) -> str:
        """The voice ``eng`` reads with: the one asked for when it is the requested engine, else
        its default."""
        return self.catalog.voice_for(eng, requested, voice)

    # --- the sound (``program.Program``) ------------------------------------------------------

    def render_settings(self, *, repeat: int, chime: bool) -> dict[str, Any]:
        """Everything besides engine, voice and text that changes the rendered sound."""
        return self.program.settings(repeat=repeat, chime=chime)

    def key_for(
        self,
        engine: TtsEngine,
        voice: str,
        normalized: str,
        settings: dict[str, Any],
        hints: Mapping[str, str] | None = None,
    ) -> AudioKey:
        """The audio key; phonetic ``hints`` the engine uses count only when there are any, so a
        render without hints keeps its key."""
        options = getattr(engine, "options", None)
        payload = {
            "engine": engine.name,
            "voice": voice,
            "text": normalized,
            "settings": settings,
            "engine_options": options() if callable(options) else {},
        }
        if hints:
            payload["phoneme_hints"] = dict(sorted(hints.items()))
        return audio_key(payload)

    # --- rendering ---------------------------------------------------------------------------

    def render(
        self,
        text: str,
        *,
        engine: str | None = None,
        voice: str | None = None,
        repeat: int = 1,
        chime: bool = True,
        lexicon: Mapping[str, str] | None = None,
        normalized: str | None = None,
        strict: bool = False,
    ) -> RenderResult:
        """Render ``text`` (or the officer-edited spoken form ``normalized``) to broadcast audio.

        ``engine`` is tried first, then the rest of the configured order (``strict=True``: only
        it). ``voice`` belongs to ``engine``; given alone, it picks the engine that offers it.
        Raises SpeechError on bad input or when every engine failed (with each one's reason).
        """
        text = self.check_text(text)
        if not isinstance(repeat, int) or not 1 <= repeat <= self.audio.max_repeat:
            raise SpeechError(
                f"Số lần đọc phải từ 1 đến {self.audio.max_repeat}.",
                f"repeat must be between 1 and {self.audio.max_repeat}",
            )
        forms = self.spoken_forms(text, lexicon, normalized)
        requested = self.requested_engine(engine, voice)
        settings = self.render_settings(repeat=repeat, chime=chime)

        # 1. A stored render by any engine, in order, wins: no synthesis at all.
        found = self.cached(text, forms, requested, voice, settings, strict=strict)
        if found is not None:
            return found

        # 2. Synthesize with the first engine that works, each with its own lexicon entries.
        reasons: dict[str, str] = {}
        tried = set()
        for eng in self.chain.plan(requested):
            if strict and eng.name != requested:
                continue
            tried.add(eng.name)
            eng_voice = self.voice_for(eng, requested, voice)
            spoken = forms.of(eng, eng_voice)
            key = self.key_for(eng, eng_voice, spoken.text, settings, spoken.hints)
            try:
                path, meta, hit = self.store.get_or_create(
                    key,
                    lambda eng=eng, eng_voice=eng_voice, spoken=spoken: self._build(
                        eng, eng_voice, text, spoken, repeat=repeat, chime=chime, settings=settings
                    ),
                )
            except TtsError as exc:
                reasons[eng.name] = str(exc)
                if not isinstance(exc, EngineUnavailable):
                    self.chain.trip(eng.name, str(exc), exc)
                else:
                    _LOGGER.warning("TTS engine %s unavailable: %s", eng.name, exc)
                continue
            except AudioError as exc:  # rendering (ffmpeg) trouble: report, try the next engine
                _LOGGER.warning("rendering with %s failed: %s", eng.name, exc)
                reasons[eng.name] = f"rendering failed: {exc}"
                continue
            if self.chain.cooling(eng.name):
                self.chain.reset(eng.name)
            return self.program.result(key, meta, text, spoken.text, hit=hit)
        for eng in self.chain.ordered(requested):
            if eng.name not in tried and not (strict and eng.name != requested):
                reasons.setdefault(eng.name, "not available here")
        detail = "; ".join(f"{name}: {why}" for name, why in reasons.items())
        _LOGGER.warning("every TTS engine failed: %s", detail)  # the technician's detail, in English
        raise SpeechError(ALL_ENGINES_FAILED_VI, f"every TTS engine failed: {detail}", reasons)

    def spoken_forms(
        self, text: str, lexicon: Mapping[str, str] | None, normalized: str | None = None
    ) -> SpokenForms:
        """The spoken text per engine (its own lexicon entries, ``broadcaster.pronunciation``), or
        the officer-edited ``normalized``. Checks the text at once: SpeechError on bad input."""
        fixed = None
        if normalized is not None:
            fixed = _CONTROL_RE.sub(" ", nfc(normalized))
            if not fixed.strip():
                raise SpeechError("Nội dung đọc đang trống.", "the spoken text is empty")
        forms = SpokenForms(lambda overrides: self.normalize(text, overrides), split_pieces, lexicon, fixed)
        if not split_pieces(forms.general()):
            raise SpeechError(NOTHING_TO_READ_VI, "nothing speakable in the text")
        return forms

    def cached(
        self,
        text: str,
        forms: SpokenForms,
        requested: str | None,
        voice: str | None,
        settings: dict[str, Any],
        *,
        strict: bool = False,
    ) -> RenderResult | None:
        """A stored render of the text by any engine, in order (the first found wins), or None."""
        for eng in self.chain.ordered(requested):
            if strict and eng.name != requested:
                continue
            eng_voice = self.voice_for(eng, requested, voice)
            spoken = forms.of(eng, eng_voice)
            key = self.key_for(eng, eng_voice, spoken.text, settings, spoken.hints)
            meta = self.store.meta(key) if self.store.has(key) else None
            if meta is not None:
                self.store.touch(key)
                return self.program.result(key, meta, text, spoken.text, hit=True)
        return None

    def render_streamed(
        self,
        text: str,
        *,
        sink: ProgramSink,
        engine: str | None = None,
        voice: str | None = None,
        repeat: int = 1,
        chime: bool = True,
        lexicon: Mapping[str, str] | None = None,
    ) -> RenderResult:
        """``render``, streaming the program to ``sink`` as it is synthesized (see
        ``broadcaster/speech_stream.py``); a stored render is returned without streaming."""
        from broadcaster.speech_stream import render_streamed

        return render_streamed(
            self, text, sink=sink, engine=engine, voice=voice, repeat=repeat, chime=chime, lexicon=lexicon
        )

    def _build(
        self,
        engine: TtsEngine,
        voice: str,
        text: str,
        spoken: Spoken,
        *,
        repeat: int,
        chime: bool,
        settings: dict[str, Any],
    ) -> tuple[bytes, dict[str, Any]]:
        pieces = spoken.pieces
        _LOGGER.info("synthesizing %d piece(s) with %s (%s)", len(pieces), engine.name, voice)
        # Pieces are synthesized in parallel where the engine allows it (``max_parallel``): a slow
        # cloud engine costs about one request's time for a short bulletin, not one per sentence.
        texts = [piece.text for piece in pieces]
        clips = self.chain.call_many(engine, texts, voice or None, spoken.hints or None)
        parts = [
            (clip, self.program.pause_ms(piece.pause)) for clip, piece in zip(clips, pieces, strict=True)
        ]
        connector = None
        connector_text = self.program.connector_text()
        if repeat > 1 and connector_text:
            connector = self.chain.call(engine, connector_text, voice or None)
        return self.program.assemble(
            engine.name,
            voice,
            text,
            spoken.text,
            parts,
            connector,
            repeat=repeat,
            chime=chime,
            settings=settings,
        )

    # --- recordings (``recordings.RecordingImporter``) --------------------------------------

    def import_recording(self, data: bytes, filename: str, *, chime: bool = True) -> RenderResult:
        """An officer's recording (MP3, WAV, M4A, OGG, AMR...) made broadcast-ready: validated,
        trimmed, optionally framed by the chime, loudness-normalized, stored; engine "recording"."""
        return self.recordings.import_recording(data, filename, chime=chime)


__all__ = ["DEFAULT_MAX_CHARS", "SpeechService", "TextNormalizer"]

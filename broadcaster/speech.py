"""The speech service: text in, broadcast-ready MP3 in the store out. The seam the rest of the
controller uses (web form, REST API, scheduled bulletins, broadcasts).

``render`` normalizes the text, looks the result up in the store for each engine in order (a
hit on an earlier engine wins), and on a miss synthesizes piece by piece with the first engine
that works, assembles pauses, chime and repeats, masters loudness, and stores the MP3. It is
synchronous and thread-safe: callers run it in a worker, never on the MQTT thread.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broadcaster.audio.config import AudioConfig
from broadcaster.audio.loudness import AudioError
from broadcaster.audio.script import Pause, split_pieces
from broadcaster.audio.store import AudioStore
from broadcaster.domain import AudioKey, nfc
from broadcaster.pronunciation import Spoken, SpokenForms
from broadcaster.tts import EngineChain, EngineUnavailable, TtsEngine, TtsError, build_chain
from broadcaster.tts.base import voice_info_of
from broadcaster.tts.usage import UsageCounter, UsageRow

if TYPE_CHECKING:
    from broadcaster.settings import Settings

_LOGGER = logging.getLogger(__name__)

# Bump when rendering changes in a way that changes the sound, so old cache entries are not reused.
RENDER_VERSION = 1
RECORDING_ENGINE = "recording"
DEFAULT_MAX_CHARS = 20_000

ENGINE_LABELS_VI = {
    "gtts": "Google (cần Internet)",
    "piper": "Piper (ngoại tuyến)",
    "espeak-ng": "Giọng máy dự phòng (ngoại tuyến)",
    "fpt": "FPT.AI (cần Internet, trả phí)",
    "viettel": "Viettel AI (cần Internet, trả phí)",
    "zalo": "Zalo AI (cần Internet, trả phí)",
    "google-cloud": "Google Cloud (cần Internet, trả phí)",
    "azure": "Microsoft Azure (cần Internet, trả phí)",
    RECORDING_ENGINE: "Bản ghi âm",
}

_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# The normalizer's messages are "Vietnamese (English)": the officer gets the Vietnamese part only.
_ENGLISH_TAIL = re.compile(r"\s*\([\x20-\x7e]*\)\s*$")
NOTHING_TO_READ_VI = (
    "Nội dung không có chữ nào đọc được (chỉ có biểu tượng, ký hiệu hoặc khoảng trắng). "
    "Vui lòng viết nội dung bằng chữ."
)
# Every engine failed: the officer reads what to do; which engine said what goes to the log.
ALL_ENGINES_FAILED_VI = (
    "không giọng đọc nào dùng được lúc này. Vui lòng thử lại sau ít phút; nếu vẫn lỗi, hãy báo cho "
    "quản trị viên."
)


def normalization_message_vi(exc: BaseException) -> str:
    """The officer's (Vietnamese) reason of a normalizer error, without its English part."""
    if type(exc).__name__ == "EmptyTextError":
        return NOTHING_TO_READ_VI
    text = _ENGLISH_TAIL.sub("", str(exc)).strip()
    return text or NOTHING_TO_READ_VI


class SpeechError(Exception):
    """Why an announcement cannot be turned into audio, for the officer (Vietnamese) and the log
    (English): ``str(exc)`` gives both, ``exc.message_vi`` and ``exc.message_en`` each one.
    ``exc.reasons`` maps engine name -> failure reason when every engine failed."""

    def __init__(self, message_vi: str, message_en: str, reasons: Mapping[str, str] | None = None) -> None:
        self.message_vi = message_vi
        self.message_en = message_en
        self.reasons = dict(reasons or {})
        super().__init__(f"{message_vi} ({message_en})")


@dataclass(frozen=True)
class RenderResult:
    key: str  # AudioKey: sha256 of (engine, voice, normalized text, render settings)
    path: Path  # the mp3 in the store
    text: str
    normalized_text: str
    engine: str  # engine actually used
    voice: str
    duration_s: float
    loudness_lufs: float
    true_peak_dbtp: float
    cache_hit: bool
    sha256: str = ""  # of the MP3 bytes: the audio id on the wire
    size: int = 0

    def copy_to(self, dest: Path) -> None:
        """Copy the MP3 to ``dest`` atomically (temporary file in the same folder, then rename)."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out, open(self.path, "rb") as src:
                shutil.copyfileobj(src, out)
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


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


def _key(payload: dict[str, Any]) -> AudioKey:
    blob = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return AudioKey(hashlib.sha256(blob.encode("utf-8")).hexdigest())


class SpeechService:
    """Normalize, synthesize with fallback, render, master and store. Thread-safe."""

    def __init__(
        self,
        chain: EngineChain,
        store: AudioStore,
        audio: AudioConfig | None = None,
        *,
        normalizer: Any | None = None,
        normalizer_factory: Callable[[], Any] | None = None,
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> None:
        """``normalizer`` has ``normalize(text) -> str`` and ``with_overrides(mapping)``; without
        one, ``normalizer_factory`` builds it on first use."""
        self.chain = chain
        self.store = store
        self.audio = audio or AudioConfig()
        self.max_chars = max_chars
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

        def factory() -> Any:
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

    def _get_normalizer(self) -> Any:
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

    # --- engines -----------------------------------------------------------------------------

    def engines(self) -> list[dict[str, Any]]:
        """For the web form: every configured engine in order, whether it works here now.
        ``voice_info`` describes the voices (accent, gender, Vietnamese label) when the engine
        does; ``status`` says whether it is skipped, until when and why (Vietnamese)."""
        out = []
        statuses = {s.name: s.to_dict() for s in self.chain.status()}
        for engine in self.chain.engines():
            try:
                available = bool(engine.available())
                voices = list(engine.voices()) if available else []
                default = engine.default_voice() if available else ""
                info = voice_info_of(engine) if available else None
            except Exception:  # a broken probe must not break the form
                _LOGGER.exception("engine %s failed to describe itself", engine.name)
                available, voices, default, info = False, [], "", None
            out.append(
                {
                    "name": engine.name,
                    "label": ENGINE_LABELS_VI.get(engine.name, engine.name),
                    "available": available,
                    "voices": voices,
                    "default_voice": default,
                    "cooling_down": self.chain.cooling(engine.name),
                    "voice_info": [v.to_dict() for v in info or ()],
                    "status": statuses.get(engine.name),
                }
            )
        return out

    def engine_status(self) -> list[dict[str, Any]]:
        """Per engine: skipped or not, until when and why, for the dashboard notice."""
        return [s.to_dict() for s in self.chain.status()]

    def usage(self) -> list[UsageRow]:
        """Characters sent today and this month per cloud engine, with the daily caps (settings page)."""
        return self.chain.usage_report()

    def render_settings(self, *, repeat: int, chime: bool) -> dict[str, Any]:
        """Everything besides engine, voice and text that changes the rendered sound."""
        a = self.audio
        settings: dict[str, Any] = {
            "v": RENDER_VERSION,
            "sample_rate": a.sample_rate,
            "bitrate_kbps": a.bitrate_kbps,
            "target_lufs": a.target_lufs,
            "true_peak_dbtp": a.true_peak_dbtp,
            "highpass_hz": a.highpass_hz,
            "pauses_ms": [a.clause_pause_ms, a.sentence_pause_ms, a.paragraph_pause_ms, a.edge_silence_ms],
            "chime": bool(chime),
            "repeat": repeat,
        }
        if chime:
            settings["chime_gap_ms"] = a.chime_gap_ms
        if repeat > 1:
            settings["repeat_connector"] = self._connector_text()
            settings["repeat_gap_ms"] = a.repeat_gap_ms
        return settings

    def _connector_text(self) -> str:
        return " ".join(nfc(self.audio.repeat_connector).lower().split())

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
        return _key(payload)

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
        requested = self._requested_engine(engine, voice)
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
            return self._result(key, meta, text, spoken.text, hit=hit)
        for eng in self.chain.ordered(requested):
            if eng.name not in tried and not (strict and eng.name != requested):
                reasons.setdefault(eng.name, "not available here")
        detail = "; ".join(f"{name}: {why}" for name, why in reasons.items())
        _LOGGER.warning("every TTS engine failed: %s", detail)  # the technician's detail, in English
        raise SpeechError(ALL_ENGINES_FAILED_VI, f"every TTS engine failed: {detail}", reasons)

    def voice_for(self, eng: TtsEngine, requested: str | None, voice: str | None) -> str:
        """The voice ``eng`` reads with: the one asked for when it is the requested engine, else
        its default."""
        if voice is not None and eng.name == requested:
            return voice
        try:
            return eng.default_voice()
        except Exception:
            return ""

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
                return self._result(key, meta, text, spoken.text, hit=True)
        return None

    def render_streamed(
        self,
        text: str,
        *,
        sink: Any,
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

    def requested_engine(self, engine: str | None, voice: str | None) -> str | None:
        """The engine to try first for ``engine``/``voice`` (SpeechError when unknown)."""
        return self._requested_engine(engine, voice)

    def _requested_engine(self, engine: str | None, voice: str | None) -> str | None:
        if engine is not None:
            if engine not in self.chain:
                names = ", ".join(self.chain.order)
                raise SpeechError(
                    f"Không có giọng đọc «{ENGINE_LABELS_VI.get(engine, engine)}» trên máy chủ này. "
                    "Vui lòng chọn giọng khác.",
                    f"unknown engine {engine!r}; configured: {names}",
                )
            if voice is not None and voice not in self.chain.engine(engine).voices():
                raise SpeechError(
                    f"Giọng đọc «{ENGINE_LABELS_VI.get(engine, engine)}» không có kiểu giọng «{voice}».",
                    f"engine {engine} has no voice {voice!r}",
                )
            return engine
        if voice is not None:
            for eng in self.chain.engines():
                try:
                    if voice in eng.voices():
                        return eng.name
                except Exception:
                    continue
            raise SpeechError(f"Không có kiểu giọng «{voice}».", f"no engine offers voice {voice!r}")
        return None

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
        parts = [(clip, self.pause_ms(piece.pause)) for clip, piece in zip(clips, pieces, strict=True)]
        connector = None
        if repeat > 1 and self._connector_text():
            connector = self.chain.call(engine, self._connector_text(), voice or None)
        return self.assemble(
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

    def pause_ms(self, pause: Pause) -> int:
        a = self.audio
        return {
            Pause.NONE: 0,
            Pause.CLAUSE: a.clause_pause_ms,
            Pause.SENTENCE: a.sentence_pause_ms,
            Pause.PARAGRAPH: a.paragraph_pause_ms,
        }[pause]

    def assemble(
        self,
        engine_name: str,
        voice: str,
        text: str,
        spoken: str,
        parts: list[tuple[Any, int]],
        connector_clip: Any,
        *,
        repeat: int,
        chime: bool,
        settings: dict[str, Any],
    ) -> tuple[bytes, dict[str, Any]]:
        """Synthesized pieces (clip, pause after it) to the mastered MP3 and its store metadata."""
        from broadcaster.audio import render

        a = self.audio
        body = render.speech_track(parts)
        connector = render.speech_track([(connector_clip, 0)]) if connector_clip is not None else None
        program = render.program(body, a, repeat=repeat, connector=connector, chime=chime)
        mastered = render.master_track(program, a)
        meta = {
            "text": text,
            "normalized_text": spoken,
            "engine": engine_name,
            "voice": voice,
            "duration_s": round(mastered.duration_s, 3),
            "loudness_lufs": mastered.loudness.integrated_lufs,
            "true_peak_dbtp": mastered.loudness.true_peak_dbtp,
            "settings": settings,
        }
        return mastered.mp3, meta

    def result(self, key: str, meta: dict[str, Any], text: str, spoken: str, *, hit: bool) -> RenderResult:
        return self._result(key, meta, text, spoken, hit=hit)

    def _result(self, key: str, meta: dict[str, Any], text: str, spoken: str, *, hit: bool) -> RenderResult:
        return RenderResult(
            key=key,
            path=self.store.path(key),
            text=text,
            normalized_text=spoken,
            engine=str(meta.get("engine", "")),
            voice=str(meta.get("voice", "")),
            duration_s=float(meta.get("duration_s", 0.0)),
            loudness_lufs=float(meta.get("loudness_lufs", 0.0)),
            true_peak_dbtp=float(meta.get("true_peak_dbtp", 0.0)),
            cache_hit=hit,
            sha256=str(meta.get("sha256", "")),
            size=int(meta.get("size", 0)),
        )

    # --- recordings --------------------------------------------------------------------------

    def import_recording(self, data: bytes, filename: str, *, chime: bool = True) -> RenderResult:
        """An officer's recording (MP3, WAV, M4A, OGG, AMR...) made broadcast-ready: validated,
        trimmed, optionally framed by the chime, loudness-normalized, stored; engine "recording"."""
        from broadcaster.audio import render

        a = self.audio
        name = nfc(Path(str(filename or "")).name)[:200] or "ghi-am"
        if not data:
            raise SpeechError("Tệp ghi âm trống.", "the uploaded file is empty")
        if len(data) > a.max_upload_bytes:
            limit_mb = a.max_upload_bytes / 1024**2
            raise SpeechError(
                f"Tệp ghi âm quá lớn (tối đa {limit_mb:.0f} MB).",
                f"the upload is over {a.max_upload_bytes} bytes",
            )
        settings = self.render_settings(repeat=1, chime=chime)
        source_sha = hashlib.sha256(data).hexdigest()
        key = _key({"engine": RECORDING_ENGINE, "source_sha256": source_sha, "settings": settings})

        def build() -> tuple[bytes, dict[str, Any]]:
            try:
                track = render.recording_track(data, max_s=a.max_recording_s)
            except render.RecordingRejected as exc:
                raise SpeechError(
                    _REJECT_VI[exc.code].format(max_min=a.max_recording_s / 60), str(exc)
                ) from exc
            program = render.program(track, a, chime=chime)
            mastered = render.master_track(program, a)
            return mastered.mp3, {
                "text": name,
                "normalized_text": "",
                "engine": RECORDING_ENGINE,
                "voice": "",
                "duration_s": round(mastered.duration_s, 3),
                "loudness_lufs": mastered.loudness.integrated_lufs,
                "true_peak_dbtp": mastered.loudness.true_peak_dbtp,
                "source_sha256": source_sha,
                "source_name": name,
                "settings": settings,
            }

        try:
            path, meta, hit = self.store.get_or_create(key, build)
        except AudioError as exc:
            raise SpeechError("Không xử lý được tệp ghi âm.", f"cannot process the recording: {exc}") from exc
        return self._result(key, meta, name, "", hit=hit)


_REJECT_VI = {
    "not_audio": "Tệp tải lên không phải là âm thanh đọc được (MP3, WAV, M4A, OGG...).",
    "too_long": "Bản ghi âm quá dài (tối đa {max_min:.0f} phút).",
    "too_short": "Bản ghi âm quá ngắn (dưới nửa giây).",
    "silent": "Bản ghi âm không có tiếng (chỉ có im lặng).",
}

"""An officer's own recording (uploaded or recorded in the browser) made broadcast-ready, the way
a synthesized announcement is: validated, trimmed, optionally framed by the chime,
loudness-normalized and stored, under the pseudo-engine ``"recording"``. The audio key depends on
the uploaded bytes and the render settings, so the same file uploaded twice is a cache hit."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from broadcaster.audio.loudness import AudioError
from broadcaster.domain import nfc
from broadcaster.speech.errors import RenderResult, SpeechError
from broadcaster.speech.program import Program, audio_key

RECORDING_ENGINE = "recording"
# Stored as the announcement's text when the upload has no usable file name ("ghi âm": recording).
DEFAULT_NAME = "ghi-am"
# Longest stored file name: names are shown in the log, a path of any length is not useful there.
MAX_NAME_CHARS = 200

# Why ``render.recording_track`` refused the file, by its ``RecordingRejected.code``.
_REJECT_VI = {
    "not_audio": "Tệp tải lên không phải là âm thanh đọc được (MP3, WAV, M4A, OGG...).",
    "too_long": "Bản ghi âm quá dài (tối đa {max_min:.0f} phút).",
    "too_short": "Bản ghi âm quá ngắn (dưới nửa giây).",
    "silent": "Bản ghi âm không có tiếng (chỉ có im lặng).",
}


class RecordingImporter:
    """Imports recordings into ``program``'s store with its audio settings. Thread-safe (the store
    serializes work on one key)."""

    def __init__(self, program: Program) -> None:
        self.program = program

    def import_recording(self, data: bytes, filename: str, *, chime: bool = True) -> RenderResult:
        """An officer's recording (MP3, WAV, M4A, OGG, AMR...) made broadcast-ready: validated,
        trimmed, optionally framed by the chime, loudness-normalized, stored; engine "recording".
        Raises SpeechError (Vietnamese reason) on an empty, too large, too long, silent or
        unreadable file; nothing is stored then."""
        from broadcaster.audio import render

        a = self.program.audio
        name = nfc(Path(str(filename or "")).name)[:MAX_NAME_CHARS] or DEFAULT_NAME
        if not data:
            raise SpeechError("Tệp ghi âm trống.", "the uploaded file is empty")
        if len(data) > a.max_upload_bytes:
            limit_mb = a.max_upload_bytes / 1024**2
            raise SpeechError(
                f"Tệp ghi âm quá lớn (tối đa {limit_mb:.0f} MB).",
                f"the upload is over {a.max_upload_bytes} bytes",
            )
        settings = self.program.settings(repeat=1, chime=chime)
        source_sha = hashlib.sha256(data).hexdigest()
        key = audio_key({"engine": RECORDING_ENGINE, "source_sha256": source_sha, "settings": settings})

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
            _, meta, hit = self.program.store.get_or_create(key, build)
        except AudioError as exc:
            raise SpeechError("Không xử lý được tệp ghi âm.", f"cannot process the recording: {exc}") from exc
        return self.program.result(key, meta, name, "", hit=hit)


__all__ = ["RECORDING_ENGINE", "RecordingImporter"]

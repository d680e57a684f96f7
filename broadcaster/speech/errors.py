"""What the speech service answers: ``SpeechError`` (why an announcement cannot become audio, in
Vietnamese for the officer and English for the log) and ``RenderResult`` (a stored render)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

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


__all__ = [
    "ALL_ENGINES_FAILED_VI",
    "NOTHING_TO_READ_VI",
    "RenderResult",
    "SpeechError",
    "normalization_message_vi",
]

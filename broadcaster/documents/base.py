"""What reading a document gives back (text, words to check), its errors, and plain-text helpers.

Stdlib only: the parent (the controller) and the reading child process both import it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

SUPPORTED_HINT = "Chỉ nhận tệp .docx, .pdf, .txt hoặc ảnh chụp văn bản (.jpg, .png)."
SCANNED_PDF_MESSAGE = "Tệp PDF không có lớp chữ (có thể là bản scan): cần nhận dạng chữ từ ảnh trang giấy."
NO_TEXT_MESSAGE = "Không tìm thấy chữ nào trong tệp."
IMAGE_BROKEN_MESSAGE = "Tệp ảnh bị hỏng hoặc không phải ảnh .jpg/.png, không đọc được."
NO_TEXT_IN_SCAN_MESSAGE = (
    "Không nhận ra chữ nào trên ảnh. Vui lòng chụp hoặc scan lại rõ hơn "
    "(đủ sáng, không nghiêng nhiều, chữ rõ nét)."
)


class DocumentError(Exception):
    """The document cannot be read; the message is for the officer (Vietnamese)."""


class NeedsOcr(DocumentError):
    """The document is a scan or a photo: its text needs recognition (slow, run it on a worker)."""

    def __init__(self, message: str = SCANNED_PDF_MESSAGE) -> None:
        super().__init__(message)


@dataclass(frozen=True)
class UncertainWord:
    """A recognized word the OCR engine is unsure of; ``start``/``end`` index the result's text."""

    text: str
    start: int
    end: int
    confidence: int  # 0..100, the engine's own estimate
    page: int  # 1-based page of the document

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "start": self.start,
            "end": self.end,
            "confidence": self.confidence,
            "page": self.page,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UncertainWord:
        return cls(
            text=str(data["text"]),
            start=int(data["start"]),
            end=int(data["end"]),
            confidence=int(data["confidence"]),
            page=int(data["page"]),
        )


@dataclass(frozen=True)
class Extracted:
    """The text of a document for the editor: NFC, paragraphs separated by blank lines.

    ``ocr_pages`` lists the (1-based) pages read by text recognition; ``uncertain`` the words the
    officer should compare with the paper before airing; ``confidence`` the mean word confidence
    of the recognized pages (None when nothing was recognized)."""

    text: str
    pages: int = 1
    ocr_pages: tuple[int, ...] = ()
    uncertain: tuple[UncertainWord, ...] = field(default=())
    confidence: float | None = None

    @property
    def ocr(self) -> bool:
        return bool(self.ocr_pages)

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "chars": len(self.text),
            "pages": self.pages,
            "ocr": self.ocr,
            "ocr_pages": list(self.ocr_pages),
            "uncertain": [word.to_json() for word in self.uncertain],
            "confidence": self.confidence,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Extracted:
        confidence = data.get("confidence")
        return cls(
            text=str(data["text"]),
            pages=int(data.get("pages", 1)),
            ocr_pages=tuple(int(p) for p in data.get("ocr_pages", ())),
            uncertain=tuple(UncertainWord.from_json(w) for w in data.get("uncertain", ())),
            confidence=None if confidence is None else float(confidence),
        )


def tidy(text: str) -> str:
    """NFC, unified line ends, trimmed lines, at most one blank line between paragraphs."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = text.replace("\u00a0", " ").replace("\ufeff", "").replace("\x00", "")
    lines = [re.sub(r"[ \t\u200b]+", " ", line).strip() for line in text.split("\n")]
    out = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", out).strip()


def decode_text(data: bytes) -> str:
    """Decode a .txt: BOM (UTF-8/UTF-16), then UTF-8, then UTF-16 without BOM (NUL pattern),
    then Windows-1258 (Vietnamese legacy, whose combining tone marks NFC folds back)."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise DocumentError("Tệp .txt UTF-16 bị hỏng, không đọc được.") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    sample = data[:4000]
    if len(sample) >= 4 and sample.count(b"\x00") >= len(sample) // 4:
        # Mostly-ASCII UTF-16 puts a NUL in every other byte: odd positions -> LE, even -> BE.
        le = sample[1::2].count(b"\x00") > sample[0::2].count(b"\x00")
        try:
            return data.decode("utf-16-le" if le else "utf-16-be")
        except UnicodeDecodeError:
            pass
    try:
        return unicodedata.normalize("NFC", data.decode("cp1258"))
    except UnicodeDecodeError as exc:
        raise DocumentError(
            "Không nhận ra bảng mã của tệp .txt. Vui lòng lưu lại với bảng mã UTF-8 (Unicode)."
        ) from exc

"""Text out of an official document (công văn) for the editor: .docx, .pdf, .txt, and scans or
photos of the paper (.pdf without a text layer, .jpg, .png) read by text recognition.

    extract(data, filename)    quick (under a second or two): .txt, .docx, a PDF's text layer.
                               Raises NeedsOcr for a photo or a PDF with scanned pages.
    recognize(data, filename)  slow (seconds per page): text recognition; run it on a worker.
    read(data, filename)       either, whichever the file needs (blocks).
    recognize_json(...)        ``recognize`` for a web job: the JSON the page script expects.

Both return ``Extracted``: NFC text with paragraphs separated by blank lines, and for recognized
pages the words the officer should check. Every failure is a ``DocumentError`` whose message is
Vietnamese, for the officer as it is. Parsing happens in a child process with bounded memory and
time (``limits.py``), never in the controller, and a .docx is checked from its zip directory
before anything is decompressed.
"""

from __future__ import annotations

import logging
from typing import Any

from broadcaster.documents.base import (
    NO_TEXT_MESSAGE,
    SCANNED_PDF_MESSAGE,
    SUPPORTED_HINT,
    DocumentError,
    Extracted,
    NeedsOcr,
    UncertainWord,
    decode_text,
    tidy,
)
from broadcaster.documents.limits import MAX_CHARS, OCR_TIMEOUT_S, TEXT_TIMEOUT_S, check_zip, run_child

__all__ = [
    "EXTENSIONS",
    "KIND_LABEL",
    "SCANNED_PDF_MESSAGE",
    "DocumentError",
    "Extracted",
    "NeedsOcr",
    "UncertainWord",
    "decode_text",
    "extract",
    "extract_text",
    "read",
    "recognize",
    "recognize_json",
    "tidy",
]

_LOGGER = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
EXTENSIONS = (".docx", ".pdf", ".txt", *IMAGE_EXTENSIONS)
# What the upload field asks for, in the officer's words.
KIND_LABEL = "tệp văn bản (.docx, .pdf, .txt) hoặc ảnh chụp văn bản (.jpg, .png)"
PHOTO_MESSAGE = "Ảnh chụp văn bản: cần nhận dạng chữ từ ảnh."


def _kind(filename: str) -> str:
    name = (filename or "").lower().strip()
    if name.endswith(".docx"):
        return "docx"
    if name.endswith(".pdf"):
        return "pdf"
    if name.endswith(".txt"):
        return "txt"
    if name.endswith(IMAGE_EXTENSIONS):
        return "image"
    if name.endswith(".doc"):
        raise DocumentError(
            "Tệp .doc (Word cũ) chưa được hỗ trợ. Vui lòng lưu lại dưới dạng .docx. " + SUPPORTED_HINT
        )
    raise DocumentError("Loại tệp không được hỗ trợ. " + SUPPORTED_HINT)


def _checked(text: str, pages: int = 1) -> Extracted:
    text = tidy(text)
    if not text:
        raise DocumentError(NO_TEXT_MESSAGE)
    if len(text) > MAX_CHARS:
        raise DocumentError(f"Văn bản quá dài ({len(text):,} ký tự, tối đa {MAX_CHARS:,}).".replace(",", "."))
    return Extracted(text, pages)


def extract(data: bytes, filename: str) -> Extracted:
    """The text of a .txt, .docx or text PDF. Raises NeedsOcr for scans and photos (call
    ``recognize`` on a worker then), DocumentError with the officer's message otherwise."""
    kind = _kind(filename)
    if not data:
        raise DocumentError("Tệp rỗng, không có nội dung.")
    if kind == "txt":
        return _checked(decode_text(data))
    if kind == "image":
        raise NeedsOcr(PHOTO_MESSAGE)
    if kind == "docx":
        check_zip(data)
    reply = run_child("text", kind, data, TEXT_TIMEOUT_S)
    if reply.get("needs_ocr"):
        raise NeedsOcr()
    return _checked(str(reply.get("text", "")), int(reply.get("pages", 1)))


def recognize(data: bytes, filename: str) -> Extracted:
    """Text of a scanned PDF (text-layer pages kept, scanned pages recognized) or a photo.
    Takes seconds per page: call it from a worker, not a request thread."""
    kind = _kind(filename)
    if not data:
        raise DocumentError("Tệp rỗng, không có nội dung.")
    if kind not in ("pdf", "image"):
        return extract(data, filename)
    return Extracted.from_json(run_child("ocr", kind, data, OCR_TIMEOUT_S))


def read(data: bytes, filename: str) -> Extracted:
    """``extract``, falling back to ``recognize`` when the file needs it (may take long)."""
    try:
        return extract(data, filename)
    except NeedsOcr:
        return recognize(data, filename)


def extract_text(data: bytes, filename: str) -> str:
    """Only the text of ``extract`` (raises NeedsOcr for scans and photos)."""
    return extract(data, filename).text


def recognize_json(data: bytes, filename: str) -> dict[str, Any]:
    """``recognize`` for a web job: the result's JSON, or ``{"errors": {"document": message}}``
    (a job's own error state is for audio failures; the page shows this message as it is)."""
    try:
        return recognize(data, filename).to_json()
    except DocumentError as exc:
        return {"errors": {"document": str(exc)}}
    except Exception:  # a worker must answer the page in Vietnamese whatever happened
        _LOGGER.exception("document recognition failed: %s", filename)
        return {"errors": {"document": "Không đọc được tệp do lỗi hệ thống. Vui lòng thử lại."}}

"""Text out of an official document (công văn) for the editor: .docx, .pdf with a text layer, .txt.

The only module importing python-docx and pypdf. ``extract_text`` returns NFC text with
paragraphs separated by blank lines; ``DocumentError`` carries a Vietnamese message that the
compose page shows as it is.
"""

from __future__ import annotations

import io
import logging
import re
import unicodedata
import zipfile

_LOGGER = logging.getLogger(__name__)

# A commune document is a few pages; this bounds work on a hostile upload (a zip bomb, a
# thousand-page PDF) while leaving room for any real announcement.
MAX_PAGES = 200
MAX_CHARS = 200_000

SUPPORTED_HINT = "Chỉ nhận tệp .docx, .pdf (có lớp chữ) hoặc .txt."
SCANNED_PDF_MESSAGE = (
    "Tệp PDF không có lớp chữ (có thể là bản scan), nên không lấy được nội dung. "
    "Vui lòng dùng bản .docx hoặc .pdf gốc, hoặc gõ lại nội dung."
)


class DocumentError(Exception):
    """The document cannot be read; the message is for the officer (Vietnamese)."""


def extract_text(data: bytes, filename: str) -> str:
    """Text of a .docx, .pdf or .txt document. Raises DocumentError with a clear message."""
    name = (filename or "").lower().strip()
    if not data:
        raise DocumentError("Tệp rỗng, không có nội dung.")
    if name.endswith(".docx"):
        text = _docx_text(data)
    elif name.endswith(".pdf"):
        text = _pdf_text(data)
    elif name.endswith(".txt"):
        text = decode_text(data)
    elif name.endswith(".doc"):
        raise DocumentError(
            "Tệp .doc (Word cũ) chưa được hỗ trợ. Vui lòng lưu lại dưới dạng .docx. " + SUPPORTED_HINT
        )
    else:
        raise DocumentError("Loại tệp không được hỗ trợ. " + SUPPORTED_HINT)
    text = tidy(text)
    if not text:
        raise DocumentError("Không tìm thấy chữ nào trong tệp.")
    if len(text) > MAX_CHARS:
        raise DocumentError(f"Văn bản quá dài ({len(text):,} ký tự, tối đa {MAX_CHARS:,}).".replace(",", "."))
    return text


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


def _docx_text(data: bytes) -> str:
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise DocumentError("Tệp .docx bị hỏng hoặc không phải tệp Word. " + SUPPORTED_HINT) from exc
    parts: list[str] = []
    # Paragraphs and tables in document order (a công văn often puts its header in a table).
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            for row in block.rows:
                cells: list[str] = []
                for cell in row.cells:
                    value = " ".join(p.text.strip() for p in cell.paragraphs if p.text.strip())
                    if value and (not cells or cells[-1] != value):  # merged cells repeat their text
                        cells.append(value)
                parts.append(" – ".join(cells))
        else:
            parts.append(block.text)
        if sum(len(p) for p in parts) > MAX_CHARS:
            break
    return "\n\n".join(p for p in parts if p.strip())


def _pdf_text(data: bytes) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                reader.decrypt("")
            except Exception as exc:  # pypdf raises several types for encryption it cannot open
                raise DocumentError(
                    "Tệp PDF có mật khẩu, không mở được. Vui lòng dùng bản không khóa."
                ) from exc
        pages = reader.pages
        if len(pages) > MAX_PAGES:
            raise DocumentError(f"Tệp PDF quá dài ({len(pages)} trang, tối đa {MAX_PAGES}).")
        texts = []
        for page in pages:
            texts.append(page.extract_text() or "")
            if sum(len(t) for t in texts) > MAX_CHARS:
                break
    except DocumentError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        _LOGGER.info("unreadable PDF: %s", exc)
        raise DocumentError("Tệp PDF bị hỏng, không đọc được. " + SUPPORTED_HINT) from exc
    text = "\n\n".join(t.strip() for t in texts)
    if not tidy(text):
        raise DocumentError(SCANNED_PDF_MESSAGE)
    return text

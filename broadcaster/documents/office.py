"""Text of a .docx (python-docx) and of a PDF's text layer (pypdf), page by page.

The only module importing python-docx and pypdf. It runs in the reading child process
(``broadcaster.documents.child``), under the limits of ``limits.py``: a crafted file may exhaust
its memory or time, never the controller's.
"""

from __future__ import annotations

import io
import logging
import zipfile
from dataclasses import dataclass

from broadcaster.documents.base import SUPPORTED_HINT, DocumentError, tidy
from broadcaster.documents.limits import MAX_CHARS, MAX_PAGES

_LOGGER = logging.getLogger(__name__)

# A page whose text layer has fewer letters than this, and that paints something (an image, or
# drawn shapes: text turned into outlines), is a scan (a scanner may stamp a page number or its
# own name on an image page). A blank page paints nothing and is not sent to recognition.
MIN_PAGE_LETTERS = 20
# Content-stream operators that put marks on the page: XObject (a scanned image), inline image,
# path fill/stroke, shading.
PAINT_OPERATORS = frozenset(
    {b"Do", b"INLINE IMAGE", b"f", b"F", b"f*", b"S", b"s", b"B", b"B*", b"b", b"b*", b"sh"}
)

PDF_BOMB_MESSAGE = (
    "Tệp PDF chứa phần dữ liệu nén quá lớn khi giải nén, nên không mở để bảo vệ máy chủ. "
    "Vui lòng in lại ra PDF từ văn bản gốc hoặc chép nội dung vào ô soạn thảo."
)
PDF_NESTING_MESSAGE = (
    "Tệp PDF có cấu trúc lồng nhau quá sâu, không đọc được. "
    "Vui lòng in lại ra PDF từ văn bản gốc hoặc chép nội dung vào ô soạn thảo."
)


@dataclass(frozen=True)
class PdfPage:
    number: int  # 1-based
    text: str  # tidied text layer ("" on a scanned page)
    width_pt: float
    height_pt: float
    painted: bool  # the page draws images or shapes

    @property
    def scanned(self) -> bool:
        return self.painted and sum(c.isalpha() for c in self.text) < MIN_PAGE_LETTERS


def docx_text(data: bytes) -> str:
    """Paragraphs and tables in document order (a công văn often puts its header in a table)."""
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError, SyntaxError) as exc:
        # lxml's XMLSyntaxError (a SyntaxError) covers broken XML and a text node over 10 MB.
        _LOGGER.info("unreadable docx: %s", exc)
        raise DocumentError("Tệp .docx bị hỏng hoặc không phải tệp Word. " + SUPPORTED_HINT) from exc
    parts: list[str] = []
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


def pdf_pages(data: bytes, max_pages: int = MAX_PAGES) -> list[PdfPage]:
    """Each page's text layer and size. Content streams are decoded and parsed explicitly first:
    pypdf's text extraction hides a decompression limit or a nesting error as an empty page."""
    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError, PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                reader.decrypt("")
            except Exception as exc:  # pypdf raises several types for encryption it cannot open
                raise DocumentError(
                    "Tệp PDF có mật khẩu, không mở được. Vui lòng dùng bản không khóa."
                ) from exc
        count = len(reader.pages)
        if count > max_pages:
            raise DocumentError(f"Tệp PDF quá dài ({count} trang, tối đa {max_pages}).")
        pages: list[PdfPage] = []
        chars = 0
        for number, page in enumerate(reader.pages, start=1):
            contents = page.get_contents()  # decode + parse now: a bomb or a nesting raises here
            painted = contents is not None and any(op in PAINT_OPERATORS for _, op in contents.operations)
            text = tidy(page.extract_text() or "") if chars <= MAX_CHARS else ""
            chars += len(text)
            box = page.mediabox
            pages.append(PdfPage(number, text, abs(float(box.width)), abs(float(box.height)), painted))
    except DocumentError:
        raise
    except (LimitReachedError, MemoryError) as exc:
        _LOGGER.info("PDF stream limit: %s", exc)
        raise DocumentError(PDF_BOMB_MESSAGE) from exc
    except RecursionError as exc:
        raise DocumentError(PDF_NESTING_MESSAGE) from exc
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError) as exc:
        _LOGGER.info("unreadable PDF: %s", exc)
        raise DocumentError("Tệp PDF bị hỏng, không đọc được. " + SUPPORTED_HINT) from exc
    return pages

"""Text of scanned pages and photos: Debian's tesseract with its Vietnamese model (``vie``).

Runs in the reading child process (its memory and CPU caps apply to the tools it starts). A PDF
is read page by page: pages with a text layer keep it, scanned pages are rendered by pdftoppm
(poppler-utils) at OCR_DPI. Each page image is made upright and straight (``image.py``) and read
by ``tesseract --psm 1`` (automatic layout with orientation detection: a page upside down or on
its side is turned by tesseract itself) into TSV, which gives every word its confidence. Lines
of a paragraph are joined with spaces (the editor text is read aloud, line breaks of the paper
mean nothing), paragraphs and pages are separated by a blank line. Words under
UNCERTAIN_BELOW are reported with their place in the text so the officer checks them.
"""

from __future__ import annotations

import logging
import math
import shutil
import subprocess
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from broadcaster.documents import image as images
from broadcaster.documents.base import (
    NO_TEXT_IN_SCAN_MESSAGE,
    DocumentError,
    Extracted,
    UncertainWord,
)
from broadcaster.documents.limits import MAX_CHARS, MAX_IMAGE_PIXELS, MAX_OCR_PAGES, OCR_DPI
from broadcaster.documents.office import pdf_pages

_LOGGER = logging.getLogger(__name__)

LANGUAGE = "vie"
# Tesseract's LSTM word confidence: clean print scores 90-97; misread words (a lost tone mark,
# a stray speck read as a letter) mostly fall under 80 in our generated scans.
UNCERTAIN_BELOW = 80
# Sauvola's local threshold (tesseract 5.3+): a photo lit unevenly, darker on one side, is
# binarized into specks by the default global (Otsu) threshold and read as garbage words (in our
# tests: 84 % of characters right with Otsu, 100 % with Sauvola; same on evenly lit scans).
THRESHOLDING = 2
# A page rendered below this resolution would be unreadable: its declared size is absurd.
MIN_RENDER_DPI = 50

MISSING_TOOL_MESSAGE = (
    "Máy chủ chưa cài phần mềm nhận dạng chữ tiếng Việt, nên chưa đọc được bản scan hoặc ảnh chụp. "
    "Vui lòng báo quản trị viên, hoặc gõ lại nội dung."
)


@dataclass(frozen=True)
class Word:
    text: str
    confidence: float
    paragraph: tuple[int, int]  # (block, paragraph) as tesseract numbers them on the page


def parse_tsv(tsv: str) -> list[list[Word]]:
    """Words of a tesseract TSV page, grouped into paragraphs in reading order."""
    paragraphs: dict[tuple[int, int], list[Word]] = {}
    for line in tsv.splitlines()[1:]:
        cells = line.split("\t")
        if len(cells) < 12 or cells[0] != "5":
            continue
        text = unicodedata.normalize("NFC", " ".join(cells[11:]).strip())
        text = "".join(c for c in text if not c.isspace() and unicodedata.category(c)[0] != "C")
        if not text:
            continue
        try:
            key = (int(cells[2]), int(cells[3]))
            confidence = float(cells[10])
        except ValueError:
            continue
        paragraphs.setdefault(key, []).append(Word(text, confidence, key))
    return list(paragraphs.values())


class TextBuilder:
    """Joins text-layer pages and recognized pages, keeping the offsets of uncertain words."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._length = 0
        self.uncertain: list[UncertainWord] = []
        self._confidences: list[float] = []

    def _append(self, piece: str) -> int:
        start = self._length
        self._parts.append(piece)
        self._length += len(piece)
        return start

    def _paragraph_break(self) -> None:
        if self._length:
            self._append("\n\n")

    def add_text(self, text: str) -> None:
        if text:
            self._paragraph_break()
            self._append(text)

    def add_recognized(self, paragraphs: list[list[Word]], page: int) -> None:
        for words in paragraphs:
            self._paragraph_break()
            for index, word in enumerate(words):
                if index:
                    self._append(" ")
                start = self._append(word.text)
                self._confidences.append(word.confidence)
                if word.confidence < UNCERTAIN_BELOW:
                    self.uncertain.append(
                        UncertainWord(word.text, start, start + len(word.text), round(word.confidence), page)
                    )
            if self._length > MAX_CHARS:
                raise DocumentError(f"Văn bản quá dài (hơn {MAX_CHARS:,} ký tự).".replace(",", "."))

    def result(self, pages: int, ocr_pages: list[int]) -> Extracted:
        text = "".join(self._parts)
        if not text.strip():
            raise DocumentError(NO_TEXT_IN_SCAN_MESSAGE)
        confidence = round(sum(self._confidences) / len(self._confidences), 1) if self._confidences else None
        return Extracted(text, pages, tuple(ocr_pages), tuple(self.uncertain), confidence)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        _LOGGER.error(
            "%s is not installed (Debian package %s)",
            name,
            "poppler-utils" if name == "pdftoppm" else "tesseract-ocr-vie",
        )
        raise DocumentError(MISSING_TOOL_MESSAGE)
    return path


def run_tesseract(image_path: Path, dpi: int) -> str:
    """TSV of one page image. The child's limits (memory, CPU) apply to tesseract too."""
    command = [_tool("tesseract"), str(image_path), "stdout", "-l", LANGUAGE, "--psm", "1", "--dpi", str(dpi),
               "-c", f"thresholding_method={THRESHOLDING}", "tsv"]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, check=False)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace")[-1000:]
        _LOGGER.error("tesseract exited %s: %s", proc.returncode, err)
        if "Failed loading language" in err or "Error opening data file" in err:
            raise DocumentError(MISSING_TOOL_MESSAGE)
        raise DocumentError("Không nhận dạng được chữ trên trang này (ảnh hỏng hoặc quá lớn).")
    return proc.stdout.decode("utf-8", errors="replace")


def recognize_page(picture: images.Page, dpi: int, page: int, builder: TextBuilder, workdir: Path) -> None:
    """Straighten one page image and add its words to ``builder``."""
    straight, angle = images.deskew(picture)
    path = workdir / f"page-{page}.png"
    images.save_for_ocr(straight, path, dpi)
    paragraphs = parse_tsv(run_tesseract(path, dpi))
    path.unlink(missing_ok=True)
    _LOGGER.info("page %s: turned %.1f degrees, %s paragraphs", page, angle, len(paragraphs))
    builder.add_recognized(paragraphs, page)


def recognize_image(data: bytes) -> Extracted:
    """A photo or a scan saved as .jpg/.png: one page."""
    picture, dpi = images.load_page(data)
    builder = TextBuilder()
    with tempfile.TemporaryDirectory(prefix="loa-ocr-") as tmp:
        recognize_page(picture, dpi, 1, builder, Path(tmp))
    return builder.result(1, [1])


def render_dpi(width_pt: float, height_pt: float) -> int:
    """OCR_DPI, lowered for a page so large that it would exceed MAX_IMAGE_PIXELS."""
    area_in2 = max(width_pt, 1.0) * max(height_pt, 1.0) / (72.0 * 72.0)
    dpi = min(OCR_DPI, int(math.sqrt(MAX_IMAGE_PIXELS / area_in2)))
    if dpi < MIN_RENDER_DPI:
        raise DocumentError("Trang PDF có kích thước bất thường (quá lớn), không đọc được.")
    return dpi


def recognize_pdf(data: bytes) -> Extracted:
    """Text-layer pages as they are, scanned pages rendered and recognized, in page order."""
    pages = pdf_pages(data)
    scanned = [p for p in pages if p.scanned]
    if len(scanned) > MAX_OCR_PAGES:
        raise DocumentError(
            f"Bản scan dài {len(scanned)} trang, tối đa {MAX_OCR_PAGES} trang. "
            "Vui lòng tách tệp thành các phần ngắn hơn."
        )
    builder = TextBuilder()
    with tempfile.TemporaryDirectory(prefix="loa-ocr-") as tmp:
        workdir = Path(tmp)
        source = workdir / "input.pdf"
        source.write_bytes(data)
        for page in pages:
            if not page.scanned:
                builder.add_text(page.text)
                continue
            dpi = render_dpi(page.width_pt, page.height_pt)
            prefix = workdir / f"render-{page.number}"
            command = [_tool("pdftoppm"), "-q", "-gray", "-r", str(dpi), "-f", str(page.number), "-l", str(page.number),
                       "-singlefile", str(source), str(prefix)]  # fmt: skip
            proc = subprocess.run(command, capture_output=True, check=False)
            rendered = prefix.with_suffix(".pgm")
            if proc.returncode != 0 or not rendered.exists():
                _LOGGER.warning("pdftoppm page %s exited %s", page.number, proc.returncode)
                raise DocumentError(f"Không dựng được hình trang {page.number} của tệp PDF để đọc chữ.")
            picture, dpi = images.load_rendered(rendered, dpi)
            recognize_page(picture, dpi, page.number, builder, workdir)
            rendered.unlink(missing_ok=True)
    return builder.result(len(pages), [p.number for p in scanned])

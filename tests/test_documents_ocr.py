"""Scanned official documents and phone photos read by the real tesseract (Vietnamese model).

The scans are made here: Vietnamese text rendered with DejaVu Sans (Debian fonts-dejavu-core) on an
A4 page at 200 dpi, turned a few degrees (and a quarter or half turn for pages fed sideways or
upside down), speckled, lit unevenly, blurred a little, saved as PNG/JPEG and wrapped in a PDF.
The recognized text must match the source at >= 97 % of characters (1 - edit distance / length,
on NFC text with whitespace collapsed)."""

from __future__ import annotations

import io
import random
import re
import struct
import unicodedata
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from broadcaster import documents
from broadcaster.documents import ocr

pytestmark = pytest.mark.integration

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
MIN_SIMILARITY = 0.97

PAGE_1 = [
    "ỦY BAN NHÂN DÂN XÃ AN BÌNH",
    "THÔNG BÁO",
    "Về việc tổ chức tiêm phòng cho gia súc, gia cầm đợt 1 năm 2025",
    "Thực hiện kế hoạch của Ủy ban nhân dân huyện, Ủy ban nhân dân xã An Bình thông báo tới toàn thể "
    "bà con nhân dân như sau: từ ngày 12 tháng 3 đến hết ngày 20 tháng 3, xã tổ chức tiêm phòng bệnh "
    "lở mồm long móng và cúm gia cầm tại các thôn.",
    "Đề nghị các hộ chăn nuôi nhốt giữ vật nuôi, đưa trâu, bò, lợn, gà, vịt tới điểm tiêm đúng giờ. "
    "Mọi thắc mắc xin liên hệ cán bộ thú y xã để được hướng dẫn.",
]
PAGE_2 = [
    "Lịch tiêm cụ thể: thôn Đông sáng thứ Hai, thôn Đoài chiều thứ Ba, thôn Trung cả ngày thứ Tư.",
    "Hộ nào vắng nhà trong những ngày trên báo trước cho trưởng thôn để được bố trí tiêm bù.",
    "Trân trọng thông báo.",
]


# --- making scans --------------------------------------------------------------------------------


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Any, width: float) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if line and draw.textlength(candidate, font=font) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    return [*lines, line] if line else lines


def render_scan(
    paragraphs: list[str],
    *,
    dpi: int = 200,
    angle: float = 0.0,
    quarter_turns: int = 0,
    seed: int = 0,
    uneven_light: bool = False,
    smudge: str | None = None,
) -> Image.Image:
    """An A4 page as a scanner or a phone would give it. ``smudge``: a word blurred beyond reading."""
    rnd = random.Random(seed)
    width, height = round(8.27 * dpi), round(11.69 * dpi)
    page = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.truetype(str(FONT), round(12 / 72 * dpi))
    margin, y = dpi, dpi
    smudged = None
    for paragraph in paragraphs:
        for line in _wrap(draw, paragraph, font, width - 2 * margin):
            draw.text((margin, y), line, font=font, fill=0)
            words = line.split()
            if smudge in words:
                x0 = margin + draw.textlength(" ".join(words[: words.index(smudge)] + [""]), font=font)
                x1 = x0 + draw.textlength(smudge, font=font)
                smudged = (round(x0), y, round(x1), y + round(font.size * 1.25))
            y += round(font.size * 1.5)
        y += round(font.size * 0.8)
    if smudged:
        page.paste(page.crop(smudged).filter(ImageFilter.GaussianBlur(dpi / 60)), smudged)
    page = page.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=255)
    pixels = page.load()
    for _ in range(width * height // 150):  # speckles of dust and toner
        x, yy = rnd.randrange(width), rnd.randrange(height)
        pixels[x, yy] = max(0, min(255, pixels[x, yy] + rnd.randint(-140, 140)))
    if uneven_light:  # a phone photo: darker towards the bottom
        shade = Image.linear_gradient("L").resize((width, height)).point(lambda v: 255 - v * 0.3)
        page = Image.composite(page, Image.new("L", (width, height), 0), shade)
    page = page.filter(ImageFilter.GaussianBlur(0.6))
    return page.rotate(90 * quarter_turns, expand=True) if quarter_turns else page


def encode(image: Image.Image, fmt: str, dpi: int = 200) -> bytes:
    out = io.BytesIO()
    options = {"quality": 80} if fmt == "JPEG" else {}
    image.save(out, fmt, dpi=(dpi, dpi), **options)
    return out.getvalue()


def scanned_pdf(pages: list[Image.Image], dpi: int = 200) -> bytes:
    """Pages as a scanner's PDF: one JPEG image per page, no text layer."""
    out = io.BytesIO()
    pages[0].save(out, "PDF", resolution=dpi, save_all=True, append_images=pages[1:], quality=80)
    return out.getvalue()


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFC", text)).strip()


def similarity(expected: str, got: str) -> float:
    """1 - Levenshtein distance / longer length, over characters of NFC text, whitespace collapsed."""
    a, b = _flat(expected), _flat(got)
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return 1 - previous[-1] / max(len(a), len(b), 1)


def test_similarity_measure() -> None:
    assert similarity("Xã An Bình", "Xã  An\nBình") == 1.0
    assert similarity("Xã An Bình", unicodedata.normalize("NFD", "Xã An Bình")) == 1.0
    assert similarity("abcd", "abxd") == 0.75


# --- recognition ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("angle", "quarter_turns", "fmt", "uneven_light"),
    [
        (2.5, 0, "PNG", False),
        (-3.0, 0, "JPEG", False),
        (2.0, 0, "JPEG", True),
        (-2.0, 1, "PNG", False),  # fed sideways
        (1.5, 2, "JPEG", False),  # upside down
    ],
    ids=["png+2.5deg", "jpeg-3deg", "photo-uneven-light", "sideways", "upside-down"],
)
def test_scanned_page_is_read_accurately(
    angle: float, quarter_turns: int, fmt: str, uneven_light: bool
) -> None:
    scan = render_scan(PAGE_1, angle=angle, quarter_turns=quarter_turns, seed=7, uneven_light=uneven_light)
    suffix = ".png" if fmt == "PNG" else ".jpg"
    with pytest.raises(documents.NeedsOcr):
        documents.extract(encode(scan, fmt), "anh-chup" + suffix)
    result = documents.recognize(encode(scan, fmt), "anh-chup" + suffix)
    score = similarity("\n".join(PAGE_1), result.text)
    print(f"OCR {angle:+.1f} deg, {quarter_turns} quarter turns, {fmt}: {score:.4f} of characters right")
    assert score >= MIN_SIMILARITY, result.text
    assert result.ocr and result.ocr_pages == (1,)
    assert unicodedata.is_normalized("NFC", result.text)
    assert result.confidence is not None and result.confidence > ocr.UNCERTAIN_BELOW
    for word in result.uncertain:
        assert result.text[word.start : word.end] == word.text


def test_large_phone_photo_stored_sideways_with_exif_orientation() -> None:
    """A 24-megapixel phone photo whose pixels lie sideways, upright only by its EXIF tag."""
    upright = render_scan(PAGE_1, angle=-1.5, seed=8, uneven_light=True)
    big = upright.resize((upright.width * 5 // 2, upright.height * 5 // 2), Image.Resampling.BICUBIC)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    out = io.BytesIO()
    big.rotate(90, expand=True).save(out, "JPEG", quality=85, exif=exif)
    result = documents.recognize(out.getvalue(), "IMG_2025.JPG")
    score = similarity("\n".join(PAGE_1), result.text)
    print(f"OCR 24 MP phone photo, EXIF orientation 6: {score:.4f} of characters right")
    assert score >= MIN_SIMILARITY, result.text


def test_two_page_scanned_pdf() -> None:
    pages = [render_scan(PAGE_1, angle=-2.5, seed=1), render_scan(PAGE_2, angle=2.0, seed=2)]
    data = scanned_pdf(pages)
    with pytest.raises(documents.NeedsOcr):
        documents.extract(data, "cong-van-scan.pdf")
    result = documents.recognize(data, "cong-van-scan.pdf")
    score = similarity("\n".join(PAGE_1 + PAGE_2), result.text)
    print(f"OCR two-page scanned PDF: {score:.4f} of characters right")
    assert score >= MIN_SIMILARITY, result.text
    assert result.pages == 2 and result.ocr_pages == (1, 2)
    # Paragraphs come out one per block, the page order kept.
    assert result.text.index("ỦY BAN") < result.text.index("Lịch tiêm") < result.text.index("Trân trọng")


def test_text_pages_keep_their_text_and_scanned_pages_are_read() -> None:
    """A signed, stamped last page is often scanned and appended to the typed pages."""
    from pypdf import PdfReader, PdfWriter

    from tests.test_web_documents import text_pdf

    writer = PdfWriter()
    for part in (text_pdf(PAGE_1[3:]), scanned_pdf([render_scan(PAGE_2, angle=1.0, seed=4)])):
        for page in PdfReader(io.BytesIO(part)).pages:
            writer.add_page(page)
    out = io.BytesIO()
    writer.write(out)
    with pytest.raises(documents.NeedsOcr):
        documents.extract(out.getvalue(), "hon-hop.pdf")
    result = documents.recognize(out.getvalue(), "hon-hop.pdf")
    assert result.ocr_pages == (2,)
    assert result.text.startswith(PAGE_1[3][:40])  # the text layer, exactly
    assert similarity("\n".join(PAGE_1[3:] + PAGE_2), result.text) >= MIN_SIMILARITY


def test_unreadable_word_is_reported_where_it_is() -> None:
    scan = render_scan(PAGE_1[2:4], angle=1.5, seed=3, smudge="phòng")
    result = documents.recognize(encode(scan, "PNG"), "mo.png")
    assert len(result.uncertain) >= 1
    word = result.uncertain[0]
    assert word.confidence < ocr.UNCERTAIN_BELOW and word.page == 1
    assert result.text[word.start : word.end] == word.text
    # It sits where the blurred "phòng" was: after "tiêm" in the sentence.
    assert result.text[: word.start].rstrip().endswith("tiêm")
    payload = result.to_json()
    assert payload["uncertain"][0] == word.to_json() and payload["ocr"] is True


def test_blank_scan_says_no_text_was_found() -> None:
    data = encode(render_scan([], seed=5), "PNG")
    with pytest.raises(documents.DocumentError) as err:
        documents.recognize(data, "trang-trang.png")
    assert str(err.value) == documents.base.NO_TEXT_IN_SCAN_MESSAGE


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (b"\x89PNG\r\n\x1a\n not an image", "hong.png", "Tệp ảnh bị hỏng"),
        (b"GIF89a", "anh.jpg", "Tệp ảnh bị hỏng"),
    ],
)
def test_broken_images_get_clear_messages(data: bytes, name: str, message: str) -> None:
    with pytest.raises(documents.DocumentError, match=re.escape(message)):
        documents.recognize(data, name)


def _png(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` grey pixels, with a tiny white body."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0\xff"))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("side", [8_000, 40_000])  # over our limit / over Pillow's own bomb limit
def test_huge_image_is_refused_before_decoding(side: int) -> None:
    """A PNG claiming 40 000 x 40 000 pixels is a few bytes; decoded it would be 1.6 GB."""
    with pytest.raises(documents.DocumentError, match="Ảnh quá lớn"):
        documents.recognize(_png(side, side), "to.png")


def test_missing_tesseract_gets_a_message_for_the_administrator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(documents.DocumentError, match="chưa cài phần mềm nhận dạng chữ"):
        documents.recognize(encode(render_scan(PAGE_2[:1]), "PNG"), "a.png")


# --- pieces without tesseract -------------------------------------------------------------------


def test_tsv_words_become_paragraphs_with_offsets_of_unsure_words() -> None:
    header = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext"
    rows = [
        "1\t1\t0\t0\t0\t0\t0\t0\t100\t100\t-1\t",
        "5\t1\t1\t1\t1\t1\t0\t0\t1\t1\t96.5\tTHÔNG",
        "5\t1\t1\t1\t1\t2\t0\t0\t1\t1\t95.0\tBÁO",
        "5\t1\t2\t1\t1\t1\t0\t0\t1\t1\t91.0\t" + unicodedata.normalize("NFD", "Tiêm"),
        "5\t1\t2\t1\t2\t1\t0\t0\t1\t1\t41.2\tph0ng",  # next line, same paragraph: joined by a space
        "5\t1\t2\t1\t2\t2\t0\t0\t1\t1\t12.0\t ",  # an empty word is dropped
    ]
    paragraphs = ocr.parse_tsv("\n".join([header, *rows]))
    builder = ocr.TextBuilder()
    builder.add_text("Trang có lớp chữ.")
    builder.add_recognized(paragraphs, page=2)
    result = builder.result(pages=2, ocr_pages=[2])
    assert result.text == "Trang có lớp chữ.\n\nTHÔNG BÁO\n\nTiêm ph0ng"
    (word,) = result.uncertain
    assert (word.text, word.confidence, word.page) == ("ph0ng", 41, 2)
    assert result.text[word.start : word.end] == "ph0ng"
    assert result.confidence == round((96.5 + 95.0 + 91.0 + 41.2) / 4, 1)
    assert documents.Extracted.from_json(result.to_json()) == result


def test_render_resolution_is_lowered_for_huge_pages() -> None:
    assert ocr.render_dpi(595, 842) == 300  # A4
    assert ocr.render_dpi(72 * 40, 72 * 40) < 300  # a 40-inch poster stays under the pixel limit
    with pytest.raises(documents.DocumentError, match="kích thước bất thường"):
        ocr.render_dpi(72 * 10_000, 72 * 10_000)

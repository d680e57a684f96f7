"""A page image made ready for text recognition: checked, upright, grey, bounded, deskewed.

The only module importing Pillow. It runs in the reading child process.

Deskew: a page photographed or fed a little crooked (a few degrees) makes tesseract lose whole
paragraphs (at -3 degrees it kept 2 of 12 lines in our tests). The skew angle is the rotation
that makes the ink's row profile (or column profile, for a page lying on its side) the most
peaked: straight text lines give tall peaks separated by empty gaps. The search runs on a
~1000-pixel copy: coarse steps of 0.5 degree within +-MAX_SKEW_DEG, then 0.1 degree around the
best. Quarter turns (a page scanned upside down or sideways) are left to tesseract's own
orientation detection (``--psm 1``).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from broadcaster.documents.base import IMAGE_BROKEN_MESSAGE, DocumentError
from broadcaster.documents.limits import MAX_IMAGE_PIXELS, MAX_OCR_SIDE

_LOGGER = logging.getLogger(__name__)

Page = Image.Image  # a grey page image, for the modules that must not import Pillow themselves

# Pillow's own decompression-bomb guard, at our size: it refuses before decoding the pixels.
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS

# Beyond a few degrees a page is not "crooked" but photographed at an angle on purpose; the
# search range also bounds its cost (about 35 small rotations).
MAX_SKEW_DEG = 6.0
# Size of the copy the skew is measured on: enough to resolve 0.1 degree over a page's width.
SKEW_SAMPLE_SIDE = 1000
# Grey level under which a pixel counts as ink when measuring the skew.
INK_LEVEL = 140
# A photo without a resolution tag is assumed to be this (tesseract guesses 70 dpi otherwise).
DEFAULT_DPI = 300


def load_page(data: bytes) -> tuple[Page, int]:
    """Decode an uploaded photo or scan: refuse oversized images before decoding, turn it upright
    as the camera recorded (EXIF orientation), grey, scaled down to MAX_OCR_SIDE. Returns the
    image and its resolution in dpi (tesseract needs it)."""
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > MAX_IMAGE_PIXELS:
            raise DocumentError(_too_large(f"{width} x {height} điểm ảnh"))
        dpi = _dpi(image)
        if image.format == "JPEG":  # decode at 1/2, 1/4... scale directly when the photo is huge
            image.draft("L", (MAX_OCR_SIDE, MAX_OCR_SIDE))
            dpi = max(70, round(dpi * image.width / width))
        image = ImageOps.exif_transpose(image)
        image = _grey(image)
    except DocumentError:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's own check, at twice MAX_IMAGE_PIXELS
        raise DocumentError(_too_large("quá nhiều điểm ảnh")) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        _LOGGER.info("unreadable image: %s", exc)
        raise DocumentError(IMAGE_BROKEN_MESSAGE) from exc
    return _bounded(image, dpi)


def _too_large(size: str) -> str:
    return f"Ảnh quá lớn ({size}). Vui lòng chụp hoặc scan với độ phân giải thấp hơn (khoảng 300 dpi là đủ)."


def load_rendered(path: Path, dpi: int) -> tuple[Image.Image, int]:
    """A page pdftoppm rendered (grey PGM), bounded like a photo."""
    with Image.open(path) as image:
        image.load()
        return _bounded(_grey(image), dpi)


def _grey(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))  # transparent = paper
        background.alpha_composite(image.convert("RGBA"))
        image = background
    return image.convert("L")


def _bounded(image: Image.Image, dpi: int) -> tuple[Image.Image, int]:
    """At most MAX_OCR_SIDE on the longest side; the resolution follows the scaling."""
    longest = max(image.size)
    if longest <= MAX_OCR_SIDE:
        return image, dpi
    scale = MAX_OCR_SIDE / longest
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS), max(70, round(dpi * scale))


def _dpi(image: Image.Image) -> int:
    dpi = image.info.get("dpi")
    try:
        value = round(float(dpi[0])) if dpi else 0
    except (TypeError, ValueError, IndexError):
        value = 0
    return value if 70 <= value <= 1200 else DEFAULT_DPI


def _peakedness(profile: bytes) -> float:
    """Mean squared step between neighbouring rows: high when ink lines alternate with gaps."""
    if len(profile) < 2:
        return 0.0
    return sum((b - a) ** 2 for a, b in zip(profile, profile[1:], strict=False)) / len(profile)


def _score(ink: Image.Image) -> float:
    rows = ink.resize((1, ink.height), Image.Resampling.BOX).tobytes()
    cols = ink.resize((ink.width, 1), Image.Resampling.BOX).tobytes()
    return max(_peakedness(rows), _peakedness(cols))


def skew_angle(image: Image.Image) -> float:
    """Degrees to rotate ``image`` (counter-clockwise, as Image.rotate) to straighten its lines."""
    scale = min(1.0, SKEW_SAMPLE_SIDE / max(image.size))
    small = image.resize(
        (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.BOX
    )
    ink = small.point(lambda v: 255 if v < INK_LEVEL else 0)
    best_score, best_angle = _score(ink), 0.0

    def search(center: float, span: float, step: float) -> None:
        nonlocal best_score, best_angle
        steps = round(span / step)
        for k in range(-steps, steps + 1):
            angle = center + k * step
            if angle == 0.0 or abs(angle) > MAX_SKEW_DEG:
                continue
            score = _score(ink.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=0))
            if score > best_score:
                best_score, best_angle = score, angle

    search(0.0, MAX_SKEW_DEG, 0.5)
    search(best_angle, 0.4, 0.1)
    return round(best_angle, 2)


def deskew(image: Image.Image) -> tuple[Image.Image, float]:
    """The image turned straight (white where the turn uncovers the canvas), and the angle."""
    angle = skew_angle(image)
    if abs(angle) < 0.1:
        return image, 0.0
    return image.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255), angle


def save_for_ocr(image: Image.Image, path: Path, dpi: int) -> None:
    image.save(path, format="PNG", dpi=(dpi, dpi), compress_level=1)

"""Text recognition of scanned documents: character accuracy and seconds per page.

    .venv/bin/python bench/bench_ocr.py [--dpi 200] [--runs 1]

Pages are generated here (as in the tests, but without importing them): a Vietnamese công văn
rendered with DejaVu Sans on A4 at --dpi, turned a few degrees (and a quarter or half turn),
speckled, blurred, some lit unevenly like a phone photo, saved as PNG/JPEG, plus a three-page
scanned PDF. Each goes through ``broadcaster.documents.recognize`` exactly as the compose page's
worker runs it (child process, pdftoppm, deskew, tesseract ``vie``). Accuracy is 1 - edit
distance / length over characters of NFC text with whitespace collapsed.
"""

from __future__ import annotations

import argparse
import io
import random
import re
import statistics
import sys
import time
import unicodedata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image, ImageDraw, ImageFilter, ImageFont  # noqa: E402

from broadcaster import documents  # noqa: E402

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")

PAGES = [
    [
        "ỦY BAN NHÂN DÂN XÃ AN BÌNH",
        "THÔNG BÁO",
        "Về việc tổ chức tiêm phòng cho gia súc, gia cầm đợt 1 năm 2025",
        "Thực hiện kế hoạch của Ủy ban nhân dân huyện, Ủy ban nhân dân xã An Bình thông báo tới toàn thể "
        "bà con nhân dân như sau: từ ngày 12 tháng 3 đến hết ngày 20 tháng 3, xã tổ chức tiêm phòng bệnh "
        "lở mồm long móng và cúm gia cầm tại các thôn.",
        "Đề nghị các hộ chăn nuôi nhốt giữ vật nuôi, đưa trâu, bò, lợn, gà, vịt tới điểm tiêm đúng giờ. "
        "Mọi thắc mắc xin liên hệ cán bộ thú y xã để được hướng dẫn.",
    ],
    [
        "Lịch tiêm cụ thể: thôn Đông sáng thứ Hai, thôn Đoài chiều thứ Ba, thôn Trung cả ngày thứ Tư.",
        "Hộ nào vắng nhà trong những ngày trên báo trước cho trưởng thôn để được bố trí tiêm bù.",
        "Ban chỉ đạo phòng, chống dịch bệnh xã phân công cán bộ thú y, công an viên và trưởng các thôn "
        "phối hợp kiểm tra, nhắc nhở những hộ chưa đưa vật nuôi đi tiêm.",
        "Trân trọng thông báo.",
    ],
    [
        "THÔNG BÁO LỊCH CẮT ĐIỆN",
        "Điện lực huyện thông báo: để bảo dưỡng đường dây trung thế, từ 7 giờ 30 đến 16 giờ 30 ngày thứ "
        "Bảy, 15 tháng 3, các thôn Đông, Đoài và khu chợ xã sẽ tạm ngừng cấp điện.",
        "Đề nghị bà con chủ động sắp xếp công việc, bảo quản thực phẩm, không đến gần cột điện và dây dẫn "
        "trong thời gian sửa chữa. Xin cảm ơn sự hợp tác của bà con.",
    ],
]

# (page index, degrees, quarter turns, format, uneven light)
CASES = [
    (0, 2.5, 0, "PNG", False),
    (0, -3.0, 0, "JPEG", False),
    (1, 2.0, 0, "JPEG", True),
    (1, -2.0, 1, "PNG", False),
    (2, 1.5, 2, "JPEG", False),
    (2, -1.0, 0, "JPEG", True),
]


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
    paragraphs: list[str], *, dpi: int, angle: float, quarter_turns: int, seed: int, uneven_light: bool
) -> Image.Image:
    rnd = random.Random(seed)
    width, height = round(8.27 * dpi), round(11.69 * dpi)
    page = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.truetype(str(FONT), round(12 / 72 * dpi))
    margin, y = dpi, dpi
    for paragraph in paragraphs:
        for line in _wrap(draw, paragraph, font, width - 2 * margin):
            draw.text((margin, y), line, font=font, fill=0)
            y += round(font.size * 1.5)
        y += round(font.size * 0.8)
    page = page.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=255)
    pixels = page.load()
    for _ in range(width * height // 150):
        x, yy = rnd.randrange(width), rnd.randrange(height)
        pixels[x, yy] = max(0, min(255, pixels[x, yy] + rnd.randint(-140, 140)))
    if uneven_light:
        shade = Image.linear_gradient("L").resize((width, height)).point(lambda v: 255 - v * 0.3)
        page = Image.composite(page, Image.new("L", (width, height), 0), shade)
    page = page.filter(ImageFilter.GaussianBlur(0.6))
    return page.rotate(90 * quarter_turns, expand=True) if quarter_turns else page


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFC", text)).strip()


def accuracy(expected: str, got: str) -> float:
    a, b = _flat(expected), _flat(got)
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return 1 - previous[-1] / max(len(a), len(b), 1)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dpi", type=int, default=200)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    print(f"tesseract vie, pages generated at {args.dpi} dpi, {args.runs} run(s) each")
    print(f"{'case':<34} {'accuracy':>9} {'s/page':>8} {'unsure':>7}")
    scores, per_page = [], []
    for seed, (index, angle, turns, fmt, uneven) in enumerate(CASES):
        page = render_scan(
            PAGES[index], dpi=args.dpi, angle=angle, quarter_turns=turns, seed=seed, uneven_light=uneven
        )
        out = io.BytesIO()
        page.save(out, fmt, dpi=(args.dpi, args.dpi), **({"quality": 80} if fmt == "JPEG" else {}))
        times = []
        for _ in range(args.runs):
            started = time.perf_counter()
            result = documents.recognize(out.getvalue(), "scan." + fmt.lower())
            times.append(time.perf_counter() - started)
        score = accuracy("\n".join(PAGES[index]), result.text)
        scores.append(score)
        per_page.append(statistics.median(times))
        label = f"page {index + 1} {angle:+.1f} deg x{turns * 90} {fmt}{' shaded' if uneven else ''}"
        print(f"{label:<34} {score:>9.4f} {per_page[-1]:>8.2f} {len(result.uncertain):>7}")
    pdf = io.BytesIO()
    scans = [
        render_scan(p, dpi=args.dpi, angle=a, quarter_turns=0, seed=40 + i, uneven_light=False)
        for i, (p, a) in enumerate(zip(PAGES, (-2.5, 2.0, 1.0), strict=True))
    ]
    scans[0].save(pdf, "PDF", resolution=args.dpi, save_all=True, append_images=scans[1:], quality=80)
    started = time.perf_counter()
    result = documents.recognize(pdf.getvalue(), "cong-van-scan.pdf")
    elapsed = time.perf_counter() - started
    score = accuracy("\n".join("\n".join(p) for p in PAGES), result.text)
    print(
        f"{'3-page scanned PDF (300 dpi render)':<34} {score:>9.4f} {elapsed / 3:>8.2f} {len(result.uncertain):>7}"
    )
    print(
        f"images: accuracy min {min(scores):.4f} mean {statistics.mean(scores):.4f}; "
        f"seconds per page median {statistics.median(per_page):.2f}, max {max(per_page):.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

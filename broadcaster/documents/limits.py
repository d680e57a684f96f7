"""Guards against hostile or absurd uploads: cheap checks before any parsing, and a reading child
process with bounded memory, CPU and wall-clock time.

An officer's upload is parsed by python-docx, pypdf, Pillow, pdftoppm and tesseract, none of
which is hardened against a crafted file (a zip bomb, a compressed-stream bomb, a nesting that
exhausts the recursion limit, a 50 000 x 50 000 pixel PNG). So the controller never parses a
document itself: ``run_child`` hands the bytes to ``python -m broadcaster.documents.child``, which
caps its own address space and CPU time (``apply_child_limits``; the tools it starts inherit the
caps), and is killed with its process group when it runs past its wall-clock time. Whatever the
file does, the controller only loses the time it waits and the memory of the reply.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import struct
import subprocess
import sys
import zipfile
from typing import Any

from broadcaster.documents.base import SUPPORTED_HINT, DocumentError

_LOGGER = logging.getLogger(__name__)

# --- sizes of what is read ---------------------------------------------------------------------
# A commune document is a few pages; these bound the work on a hostile upload (a zip bomb, a
# thousand-page PDF) while leaving room for any real announcement.
MAX_PAGES = 200
MAX_CHARS = 200_000
# Scans are read at about 3-5 s a page on one core: 20 pages is a long decree, and bounds a job.
MAX_OCR_PAGES = 20
# Pages are rendered for recognition at 300 dpi, the resolution tesseract is tuned for; a page
# larger than MAX_IMAGE_PIXELS at that resolution (a poster, a bogus page size) is rendered smaller.
OCR_DPI = 300
# A 48-megapixel phone photo is 8000 x 6000; a PNG that claims more is refused before decoding.
MAX_IMAGE_PIXELS = 50_000_000
# Photos are scaled down to this longest side before recognition: an A4 page at ~340 dpi,
# more than tesseract needs, and it bounds the time per page.
MAX_OCR_SIDE = 4000

# --- .docx (a zip) checked from its central directory, before anything is decompressed -------
# A real .docx has 10-60 parts (a few hundred with many pictures); its XML, even for a 200-page
# text, expands to a few MB. Pictures barely compress, so the total mostly follows the upload size.
MAX_ZIP_MEMBERS = 1000
MAX_ZIP_DIRECTORY_BYTES = 1_000_000  # about 5 000 entries: bounds the directory parse itself
MAX_ZIP_EXPANDED_BYTES = 150_000_000
MAX_ZIP_XML_BYTES = 30_000_000
# Word's XML deflates 5-20x, pictures ~1x. A member over MIN_RATIO_CHECK_BYTES that expands more
# than MAX_ZIP_RATIO times is a bomb (the known one: 306 KB of zip, 100 MB of XML, ratio 330).
MAX_ZIP_RATIO = 100
MIN_RATIO_CHECK_BYTES = 1_000_000

# --- the reading child process -------------------------------------------------------------------
# Address space of the child and of each tool it starts (tesseract with the Vietnamese model uses
# about 150 MB, a 300-dpi page 25 MB, pypdf at most its 75 MB stream limit plus copies).
CHILD_MEMORY_BYTES = 1024 * 1024 * 1024
# Reading the text of a .docx/.pdf takes well under a second per 100 pages; 30 s is a broken file.
TEXT_TIMEOUT_S = 30.0
# Recognition: about 3-5 s a page on a shared core, MAX_OCR_PAGES pages at most.
OCR_TIMEOUT_S = 240.0
# The reply of the child is the text (MAX_CHARS) plus the list of words: a cap on what is read back.
MAX_REPLY_BYTES = 8 * MAX_CHARS + 4_000_000

TOO_SLOW_MESSAGE = (
    "Đọc tệp quá lâu nên đã dừng. Tệp có thể bị hỏng hoặc quá phức tạp; "
    "vui lòng lưu lại tệp (hoặc chụp lại) rồi thử lần nữa."
)
TOO_COMPLEX_MESSAGE = (
    "Tệp quá lớn hoặc quá phức tạp, máy chủ không đọc được. "
    "Vui lòng lưu lại tệp ở dạng đơn giản hơn hoặc chép nội dung vào ô soạn thảo."
)


def _mb(n: int) -> str:
    return f"{n / 1_000_000:,.0f}".replace(",", ".")


def _zip_directory(data: bytes) -> tuple[int, int] | None:
    """(entries, central directory size) from the end-of-directory record, or None if absent."""
    tail_start = max(0, len(data) - (65_535 + 22))
    tail = data[tail_start:]
    pos = tail.rfind(b"PK\x05\x06")
    if pos < 0 or len(tail) - pos < 22:
        return None
    entries, size = struct.unpack_from("<HI", tail, pos + 10)
    locator = pos - 20
    if (
        (entries == 0xFFFF or size == 0xFFFFFFFF)
        and locator >= 0
        and tail[locator : locator + 4] == b"PK\x06\x07"
    ):
        (offset,) = struct.unpack_from("<Q", tail, locator + 8)  # the Zip64 end record holds the real ones
        if offset + 56 <= len(data) and data[offset : offset + 4] == b"PK\x06\x06":
            entries, size = struct.unpack_from("<QQ", data, offset + 32)
    return entries, size


def check_zip(data: bytes, label: str = "Tệp .docx") -> None:
    """Refuse a zip container whose directory promises too much, before decompressing anything.

    The sizes a zip declares are what zipfile will produce (it stops at the declared size and
    fails the CRC beyond it), so the directory is a safe upper bound."""
    directory = _zip_directory(data)
    if directory is None:
        raise DocumentError(f"{label} bị hỏng hoặc không phải tệp Word. {SUPPORTED_HINT}")
    entries, size = directory
    if entries > MAX_ZIP_MEMBERS or size > MAX_ZIP_DIRECTORY_BYTES:
        raise DocumentError(
            f"{label} có quá nhiều thành phần (tối đa {MAX_ZIP_MEMBERS}), không giống một văn bản Word "
            "thông thường nên không mở."
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as exc:
        raise DocumentError(f"{label} bị hỏng hoặc không phải tệp Word. {SUPPORTED_HINT}") from exc
    if len(infos) > MAX_ZIP_MEMBERS:
        raise DocumentError(f"{label} có quá nhiều thành phần (tối đa {MAX_ZIP_MEMBERS}).")
    total = sum(info.file_size for info in infos)
    xml = sum(info.file_size for info in infos if info.filename.lower().endswith((".xml", ".rels")))
    if total > MAX_ZIP_EXPANDED_BYTES or xml > MAX_ZIP_XML_BYTES:
        raise DocumentError(
            f"{label} khi giải nén quá lớn (khoảng {_mb(max(total, xml))} MB; chữ tối đa "
            f"{_mb(MAX_ZIP_XML_BYTES)} MB, cả tệp tối đa {_mb(MAX_ZIP_EXPANDED_BYTES)} MB), nên không mở. "
            "Vui lòng kiểm tra lại tệp hoặc chép nội dung vào ô soạn thảo."
        )
    for info in infos:
        if info.file_size > MIN_RATIO_CHECK_BYTES and info.file_size > MAX_ZIP_RATIO * max(
            info.compress_size, 1
        ):
            _LOGGER.warning(
                "zip member %s expands %s -> %s bytes: refused",
                info.filename,
                info.compress_size,
                info.file_size,
            )
            raise DocumentError(
                f"{label} được nén bất thường (một phần tăng hơn {MAX_ZIP_RATIO} lần khi giải nén), "
                "nên không mở để bảo vệ máy chủ. Vui lòng lưu lại tệp bằng Word rồi thử lần nữa."
            )


# --- the child process ---------------------------------------------------------------------------


def apply_child_limits(memory_bytes: int, cpu_s: int) -> None:
    """In the child, first thing: cap its address space and CPU time (inherited by the tools it
    starts), forbid core dumps."""
    import resource

    for limit, value in (
        (resource.RLIMIT_AS, memory_bytes),
        (resource.RLIMIT_CPU, cpu_s),
        (resource.RLIMIT_CORE, 0),
    ):
        _soft, hard = resource.getrlimit(limit)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(limit, (value, hard))


def run_child(
    mode: str,
    kind: str,
    data: bytes,
    timeout_s: float,
    memory_bytes: int = CHILD_MEMORY_BYTES,
) -> dict[str, Any]:
    """Run ``python -m broadcaster.documents.child MODE KIND`` on ``data`` within the bounds;
    return its JSON reply, or raise DocumentError (its own message, or a time/size one)."""
    command = [
        sys.executable,
        "-m",
        "broadcaster.documents.child",
        mode,
        kind,
        "--memory",
        str(memory_bytes),
        "--cpu",
        str(int(timeout_s) + 5),
    ]
    # One OCR thread: the cores are shared with audio rendering, and threads multiply the
    # address space (each has its own malloc arena) against the memory cap.
    env = {**os.environ, "OMP_THREAD_LIMIT": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: a timeout kills the tools it started too
        env=env,
    )
    try:
        out, err = proc.communicate(data, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        _LOGGER.warning("document %s/%s: reading stopped after %.0f s", mode, kind, timeout_s)
        raise DocumentError(TOO_SLOW_MESSAGE) from None
    finally:
        if proc.poll() is None:  # an exception while waiting: leave nothing behind
            _kill_group(proc)
            proc.wait()
    reply = _parse_reply(out)
    if proc.returncode != 0 or reply is None:
        _LOGGER.warning(
            "document %s/%s: reader exited %s: %s",
            mode,
            kind,
            proc.returncode,
            err[-2000:].decode(errors="replace"),
        )
        raise DocumentError(TOO_COMPLEX_MESSAGE)
    if err:
        _LOGGER.debug("document %s/%s reader: %s", mode, kind, err[-2000:].decode(errors="replace"))
    if "error" in reply:
        raise DocumentError(str(reply["error"]))
    return reply


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _parse_reply(out: bytes) -> dict[str, Any] | None:
    if not out or len(out) > MAX_REPLY_BYTES:
        return None
    try:
        reply = json.loads(out.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return reply if isinstance(reply, dict) else None

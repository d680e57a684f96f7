"""Hostile uploads (issue 13.9): a .docx zip bomb, a .docx with one 100 MB text node, a PDF whose
compressed stream expands to hundreds of MB, a PDF content stream nested thousands deep.

Each must get a clear Vietnamese message (400 from the compose page's import), and the controller
must not grow: parsing runs in a child process with bounded memory and time. The files are built
here, streamed in 1 MB pieces so that the test itself stays small in memory."""

from __future__ import annotations

import io
import os
import random
import signal
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from broadcaster import documents
from broadcaster.documents import limits
from tests.fixtures_controller import wait_until
from tests.fixtures_web import csrf, login
from tests.test_web_documents import _pdf, _stream, docx_bytes

MB = 1_000_000
# The controller may hold the upload and the reply; anything near a parse of the bomb is far more.
MAX_GROWTH = 100 * 1024 * 1024

W = b'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
CONTENT_TYPES = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    b'<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    b'<Default Extension="xml" ContentType="application/xml"/>'
    b'<Override PartName="/word/document.xml" '
    b'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
    b"</Types>"
)
RELS = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    b'<Relationship Id="rId1" Target="word/document.xml" '
    b'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument"/>'
    b"</Relationships>"
)


def docx_with_body(pieces: Iterator[bytes]) -> bytes:
    """A minimal Word package whose document body is streamed from ``pieces``."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("[Content_Types].xml", CONTENT_TYPES)
        archive.writestr("_rels/.rels", RELS)
        with archive.open("word/document.xml", "w", force_zip64=True) as part:
            part.write(b'<?xml version="1.0" encoding="UTF-8"?><w:document ' + W + b"><w:body>")
            for piece in pieces:
                part.write(piece)
            part.write(b"</w:body></w:document>")
    return out.getvalue()


def zip_bomb(xml_bytes: int = 100 * MB) -> bytes:
    """Paragraph after paragraph of the same few words: 100 MB of XML in a few hundred KB."""
    paragraph = "<w:p><w:r><w:t>Thông báo của xã</w:t></w:r></w:p>".encode()
    chunk = paragraph * (MB // len(paragraph))
    return docx_with_body(chunk for _ in range(-(-xml_bytes // len(chunk))))


def one_text_node(text_bytes: int, alphabet: bytes = b"a") -> bytes:
    """A single <w:t> of ``text_bytes`` letters (random ones from ``alphabet``)."""
    rnd = random.Random(13)
    table = bytes(alphabet[i % len(alphabet)] for i in range(256))

    def pieces() -> Iterator[bytes]:
        yield b"<w:p><w:r><w:t>"
        for _ in range(text_bytes // MB):
            yield rnd.randbytes(MB).translate(table) if len(alphabet) > 1 else alphabet * MB
        yield b"</w:t></w:r></w:p>"

    return docx_with_body(pieces())


def _page_with(content: bytes, extra_objects: list[bytes] | None = None) -> bytes:
    return _pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        content,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        *(extra_objects or []),
    ])  # fmt: skip


def pdf_flate_bomb(expanded: int = 300 * MB) -> bytes:
    """A content stream (a line of text, then blanks) whose FlateDecode body expands to
    ``expanded`` bytes from about 300 KB."""
    compressor = zlib.compressobj(9)
    body = bytearray(compressor.compress(b"BT /F1 12 Tf 50 780 Td (Thong bao) Tj ET\n"))
    blank = b" " * MB
    for _ in range(expanded // MB):
        body += compressor.compress(blank)
    body += compressor.flush()
    return _page_with(
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(body) + bytes(body) + b"\nendstream"
    )


def pdf_nested_arrays(depth: int = 50_000) -> bytes:
    return _page_with(_stream(b"BT /F1 12 Tf 50 780 Td " + b"[" * depth + b"(a)" + b"]" * depth + b" TJ ET"))


def rss() -> int:
    """Resident memory of this process now (VmRSS, unlike ru_maxrss, can go down)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


HOSTILE: dict[str, tuple[Callable[[], bytes], str, str]] = {
    "docx-zip-bomb": (zip_bomb, "bom.docx", "khi giải nén quá lớn"),
    "docx-100MB-text-node": (lambda: one_text_node(100 * MB), "mot-chu.docx", "khi giải nén quá lớn"),
    "pdf-flate-bomb": (pdf_flate_bomb, "bom.pdf", "phần dữ liệu nén quá lớn"),
    "pdf-nested-arrays": (pdf_nested_arrays, "long-nhau.pdf", "lồng nhau quá sâu"),
}


@pytest.fixture(scope="module")
def hostile_files() -> dict[str, bytes]:
    return {name: make() for name, (make, _, _) in HOSTILE.items()}


def test_the_hostile_files_are_what_they_claim(hostile_files: dict[str, bytes]) -> None:
    bomb = hostile_files["docx-zip-bomb"]
    with zipfile.ZipFile(io.BytesIO(bomb)) as archive:
        expanded = sum(info.file_size for info in archive.infolist())
    print(f"docx bomb: {len(bomb) / 1000:.0f} KB of zip, {expanded / MB:.0f} MB of XML")
    assert len(bomb) < 1 * MB and expanded >= 100 * MB
    compressed = hostile_files["pdf-flate-bomb"]
    stream = zlib.decompressobj()
    pending, inflated = compressed[compressed.index(b"stream\n") + 7 :], 0
    while pending and not stream.eof:
        inflated += len(stream.decompress(pending, 16 * MB))
        pending = stream.unconsumed_tail
    print(f"PDF bomb: {len(compressed) / 1000:.0f} KB of PDF, a stream of {inflated / MB:.0f} MB")
    assert len(compressed) < 1 * MB and inflated >= 300 * MB


@pytest.mark.parametrize("name", list(HOSTILE))
def test_package_refuses_hostile_file_with_a_message(name: str, hostile_files: dict[str, bytes]) -> None:
    _, filename, message = HOSTILE[name]
    before = rss()
    with pytest.raises(documents.DocumentError, match=message):
        documents.read(hostile_files[name], filename)
    growth = rss() - before
    print(f"{name}: controller grew {growth / 2**20:.1f} MiB")
    assert growth < MAX_GROWTH


def test_compose_import_refuses_hostile_files_with_400(client: Any, hostile_files: dict[str, bytes]) -> None:
    login(client, "editor")
    token = csrf(client, "/")
    before = rss()
    for name, (_, filename, message) in HOSTILE.items():
        reply = client.post(
            "/compose/import",
            data={"document": (io.BytesIO(hostile_files[name]), filename)},
            headers={"X-CSRFToken": token, "Accept": "application/json"},
            content_type="multipart/form-data",
        )
        assert reply.status_code == 400, (name, reply.get_data(as_text=True)[:300])
        assert message in reply.get_json()["errors"]["document"], name
    growth = rss() - before
    print(f"four hostile imports through /compose/import: controller grew {growth / 2**20:.1f} MiB")
    assert growth < MAX_GROWTH
    # The page is still there for the next, honest document.
    reply = client.post(
        "/compose/import",
        data={"document": (io.BytesIO(docx_bytes()), "cong-van.docx")},
        headers={"X-CSRFToken": token, "Accept": "application/json"},
        content_type="multipart/form-data",
    )
    assert reply.status_code == 200 and "tiêm phòng" in reply.get_json()["text"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: zip_bomb(20 * MB), "nén bất thường"),  # small enough in total, but 1000x
        (lambda: docx_bytes()[:-30], "bị hỏng"),  # cut off: no zip directory
    ],
    ids=["ratio", "truncated"],
)
def test_zip_directory_checks(make: Callable[[], bytes], message: str) -> None:
    with pytest.raises(documents.DocumentError, match=message):
        limits.check_zip(make())


def test_too_many_zip_members_are_refused_before_opening() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for i in range(limits.MAX_ZIP_MEMBERS + 1):
            archive.writestr(f"word/media/{i}.xml", b"")
    with pytest.raises(documents.DocumentError, match="quá nhiều thành phần"):
        limits.check_zip(out.getvalue())


def test_a_text_node_over_the_parser_limit_is_a_broken_docx() -> None:
    """12 MB of random letters in one text node passes the zip checks (it compresses like text),
    and then the XML parser refuses a text node over 10 MB: a message, not a server error."""
    data = one_text_node(12 * MB, alphabet=b"abcdeghiklmnopqrstuvxy")
    limits.check_zip(data)
    with pytest.raises(documents.DocumentError, match="Tệp .docx bị hỏng"):
        documents.extract(data, "dai.docx")


def test_child_limits_hold_without_the_zip_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defence in depth: with the directory checks switched off, the 100 MB zip bomb reaches the
    parser in the child, which runs out of its address space (or time) instead of the controller."""
    monkeypatch.setattr(limits, "check_zip", lambda data, label="": None)
    monkeypatch.setattr(documents, "check_zip", lambda data, label="": None)
    data = zip_bomb()
    before = rss()
    started = time.monotonic()
    with pytest.raises(documents.DocumentError) as err:
        documents.extract(data, "bom.docx")
    growth = rss() - before
    print(
        f"bomb parsed in the child: {time.monotonic() - started:.1f} s, controller grew {growth / 2**20:.1f} MiB: {err.value}"
    )
    assert str(err.value) in (limits.TOO_COMPLEX_MESSAGE, limits.TOO_SLOW_MESSAGE) or "bị hỏng" in str(
        err.value
    )
    assert growth < MAX_GROWTH


def test_reading_past_its_time_is_stopped_with_its_tools(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A child past its wall-clock time is killed with its process group, the OCR tool it started
    included: here a stand-in ``tesseract`` on PATH that never finishes."""
    from PIL import Image

    marker = tmp_path / "tesseract.pid"
    fake = tmp_path / "bin" / "tesseract"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho $$ > {marker}\nexec sleep 600\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    started: list[Any] = []
    real_popen = limits.subprocess.Popen

    def recording_popen(*args: Any, **kwargs: Any) -> Any:
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(limits.subprocess, "Popen", recording_popen)
    # A small page: the child reaches the tool well within this (it starts in a fraction of a second).
    monkeypatch.setattr(documents, "OCR_TIMEOUT_S", 5.0)
    page = io.BytesIO()
    Image.new("L", (300, 200), 255).save(page, "PNG")
    with pytest.raises(documents.DocumentError) as err:
        documents.recognize(page.getvalue(), "cham.png")
    assert str(err.value) == limits.TOO_SLOW_MESSAGE
    (proc,) = started
    assert proc.returncode == -signal.SIGKILL
    assert marker.exists(), "the stand-in tesseract was never started"
    tool_pid = int(marker.read_text())
    # Nothing of its process group stays alive (SIGKILL takes a moment; zombies are left to init).
    wait_until(lambda: _group_members(proc.pid) == [], what="the reader's tools to die")
    assert not _alive(tool_pid)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _group_members(pgid: int) -> list[str]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(f"{stat.parent.name} {fields[0]}")
    return members

"""Importing an official document into the editor (.docx, .pdf with a text layer, .txt in several
encodings, a scanned PDF and a photo read by text recognition on a worker) and uploading a
recording (WAV and MP3 made by ffmpeg, converted and loudness-normalized by the real speech
service)."""

from __future__ import annotations

import io
import re
import time
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from broadcaster.documents import SCANNED_PDF_MESSAGE, DocumentError, NeedsOcr, decode_text, extract_text
from broadcaster.documents.base import NO_TEXT_IN_SCAN_MESSAGE
from tests.fixtures_speech import make_audio
from tests.fixtures_web import csrf, login

NOTICE = "Thông báo: UBND xã tổ chức tiêm phòng cho gia súc, gia cầm từ ngày 12/3."
SECOND = "Đề nghị bà con đưa vật nuôi tới điểm tiêm đúng giờ."


def docx_bytes() -> bytes:
    import docx

    document = docx.Document()
    document.add_paragraph("ỦY BAN NHÂN DÂN XÃ AN BÌNH")
    table = document.add_table(rows=1, cols=2)
    table.cell(0, 0).text = "Số: 12/TB-UBND"
    table.cell(0, 1).text = "An Bình, ngày 10 tháng 3 năm 2025"
    document.add_paragraph(NOTICE)
    document.add_paragraph("")
    document.add_paragraph(SECOND)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def _pdf(objects: list[bytes]) -> bytes:
    """A PDF file from its objects (1-based, in order) with a correct xref table."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _stream(data: bytes) -> bytes:
    return b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"


def text_pdf(lines: list[str]) -> bytes:
    """A one-page PDF whose text layer holds ``lines`` (Vietnamese included): a Type0 font with
    Identity-H codes and a ToUnicode map, as word processors write them."""
    chars = sorted({c for line in lines for c in line})
    cid = {c: i + 1 for i, c in enumerate(chars)}
    cmap_lines = [f"<{cid[c]:04X}> <{ord(c):04X}>" for c in chars]
    cmap = (
        "/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n"
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n"
        "/CMapName /Adobe-Identity-UCS def /CMapType 2 def\n"
        "1 begincodespacerange <0000> <FFFF> endcodespacerange\n"
        f"{len(cmap_lines)} beginbfchar\n" + "\n".join(cmap_lines) + "\nendbfchar\n"
        "endcmap CMapName currentdict /CMap defineresource pop end end"
    ).encode()
    ops = [b"BT /F1 12 Tf 14 TL 50 780 Td"]
    for line in lines:
        ops.append(b"<" + "".join(f"{cid[c]:04X}" for c in line).encode() + b"> Tj T*")
    ops.append(b"ET")
    return _pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> >> "
        b"/Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type0 /BaseFont /DejaVuSans /Encoding /Identity-H "
        b"/DescendantFonts [6 0 R] /ToUnicode 7 0 R >>",
        _stream(b"\n".join(ops)),
        b"<< /Type /Font /Subtype /CIDFontType2 /BaseFont /DejaVuSans "
        b"/CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> /DW 600 >>",
        _stream(cmap),
    ])  # fmt: skip


def scanned_pdf() -> bytes:
    """A page with only drawing on it: what a scanner's PDF looks like to a text extractor."""
    drawing = b"0.2 g 50 50 495 742 re f 1 g 100 700 m 400 700 l S"
    return _pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R >>",
        _stream(drawing),
    ])  # fmt: skip


_TONES = {"\u0300", "\u0301", "\u0303", "\u0309", "\u0323"}


def cp1258(text: str) -> bytes:
    """Windows-1258 as Vietnamese Windows writes it: letters with their hat or horn precomposed,
    tone marks as separate combining characters."""
    out = bytearray()
    for char in text:
        try:
            out += char.encode("cp1258")
        except UnicodeEncodeError:
            parts = unicodedata.normalize("NFD", char)
            base = unicodedata.normalize("NFC", "".join(p for p in parts if p not in _TONES))
            out += (base + "".join(p for p in parts if p in _TONES)).encode("cp1258")
    return bytes(out)


# --- extraction ----------------------------------------------------------------------------------


def test_docx_text_in_document_order_with_table() -> None:
    text = extract_text(docx_bytes(), "cong-van.docx")
    assert text.split("\n\n") == [
        "ỦY BAN NHÂN DÂN XÃ AN BÌNH",
        "Số: 12/TB-UBND – An Bình, ngày 10 tháng 3 năm 2025",
        NOTICE,
        SECOND,
    ]
    assert unicodedata.is_normalized("NFC", text)


def test_pdf_text_layer_is_read() -> None:
    text = extract_text(text_pdf([NOTICE, SECOND]), "Cong van.PDF")
    assert NOTICE in text and SECOND in text


def test_scanned_pdf_needs_recognition() -> None:
    with pytest.raises(NeedsOcr) as err:
        extract_text(scanned_pdf(), "scan.pdf")
    assert str(err.value) == SCANNED_PDF_MESSAGE
    assert str(err.value).startswith("Tệp PDF không có lớp chữ (có thể là bản scan)")


def test_blank_page_without_marks_is_no_text_not_a_scan() -> None:
    blank = _pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R >>",
        _stream(b"BT ET"),
    ])  # fmt: skip
    with pytest.raises(DocumentError, match="Không tìm thấy chữ nào") as err:
        extract_text(blank, "trang.pdf")
    assert not isinstance(err.value, NeedsOcr)


@pytest.mark.parametrize(
    "encoded",
    [
        NOTICE.encode("utf-8"),
        b"\xef\xbb\xbf" + NOTICE.encode("utf-8"),
        NOTICE.encode("utf-16"),  # with BOM
        NOTICE.encode("utf-16-le"),  # Notepad's "Unicode" without BOM
        NOTICE.encode("utf-16-be"),
        cp1258(NOTICE),  # Windows Vietnamese
    ],
    ids=["utf8", "utf8-bom", "utf16-bom", "utf16le", "utf16be", "cp1258"],
)
def test_txt_encodings(encoded: bytes) -> None:
    assert decode_text(encoded) == NOTICE
    assert extract_text(encoded, "a.txt") == NOTICE


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (b"PK\x03\x04 not really", "x.docx", "Tệp .docx bị hỏng"),
        (b"%PDF-1.4 garbage", "x.pdf", "Tệp PDF bị hỏng"),
        (b"MZ\x90\x00", "x.exe", "Loại tệp không được hỗ trợ"),
        (b"old word", "x.doc", "Tệp .doc (Word cũ) chưa được hỗ trợ"),
        (b"", "x.txt", "Tệp rỗng"),
        (b"   \n\n  ", "x.txt", "Không tìm thấy chữ nào"),
    ],
)
def test_bad_documents_get_clear_messages(data: bytes, name: str, message: str) -> None:
    with pytest.raises(DocumentError, match=re.escape(message)):
        extract_text(data, name)


# --- the compose page's import -------------------------------------------------------------------


def _upload(client: Any, path: str, field: str, data: bytes, filename: str, **extra: Any) -> Any:
    return client.post(
        path,
        data={field: (io.BytesIO(data), filename), **extra},
        headers={"X-CSRFToken": csrf(client, "/"), "Accept": "application/json"},
        content_type="multipart/form-data",
    )


def test_import_endpoint_fills_the_editor(client: Any) -> None:
    login(client, "editor")
    reply = _upload(client, "/compose/import", "document", docx_bytes(), "cong-van.docx")
    assert reply.status_code == 200
    assert NOTICE in reply.get_json()["text"]
    assert reply.get_json()["ocr"] is False and reply.get_json()["uncertain"] == []
    # A PDF without a text layer goes to recognition on a worker; this one has only a drawing.
    scanned = _upload(client, "/compose/import", "document", scanned_pdf(), "scan.pdf")
    assert scanned.status_code == 202
    done = _wait_job(client, scanned.get_json()["status_url"])
    assert done["state"] == "done" and done["kind"] == "ocr"
    assert done["errors"]["document"] == NO_TEXT_IN_SCAN_MESSAGE
    wrong = _upload(client, "/compose/import", "document", b"MZ", "virus.exe")
    assert wrong.status_code == 400 and "Loại tệp không được hỗ trợ" in wrong.get_json()["errors"]["document"]


@pytest.mark.integration
def test_photo_of_a_document_is_read_on_a_worker(client: Any) -> None:
    from tests.test_documents_ocr import PAGE_1, encode, render_scan, similarity

    login(client, "editor")
    photo = encode(render_scan(PAGE_1, angle=-2.5, seed=11, smudge="phòng"), "JPEG")
    reply = _upload(client, "/compose/import", "document", photo, "cong-van.jpg")
    assert reply.status_code == 202
    done = _wait_job(client, reply.get_json()["status_url"])
    assert done["state"] == "done" and "errors" not in done, done
    score = similarity("\n".join(PAGE_1), done["text"])
    print(f"photo through /compose/import: {score:.4f} of characters right")
    # The blurred word costs a few characters; the rest is read right.
    assert score >= 0.97
    assert done["ocr"] is True and done["chars"] == len(done["text"])
    assert done["uncertain"], "the blurred word is listed for checking"
    for word in done["uncertain"]:
        assert done["text"][word["start"] : word["end"]] == word["text"] and word["page"] == 1
    # Another officer cannot read the job.
    client.post("/logout", data={"csrf_token": csrf(client, "/")})
    login(client, "approver")
    assert client.get(reply.get_json()["status_url"]).status_code == 404


@pytest.mark.integration
def test_photo_import_without_script_fills_the_form_and_lists_words_to_check(client: Any) -> None:
    from tests.test_documents_ocr import PAGE_1, encode, render_scan

    login(client, "editor")
    photo = encode(render_scan(PAGE_1[2:4], angle=1.5, seed=3, smudge="phòng"), "PNG")
    reply = client.post(
        "/compose/import",
        data={"csrf_token": csrf(client, "/"), "title": "Tiêm phòng", "targets": ["all"], "tier": "normal",
              "repeat": "1", "text": "", "document": (io.BytesIO(photo), "anh.png")},
        headers={"Accept": "text/html"},
        content_type="multipart/form-data",
    )  # fmt: skip
    html = reply.get_data(as_text=True)
    assert reply.status_code == 200
    assert "xã tổ chức tiêm" in html and 'value="Tiêm phòng"' in html
    assert "Từ cần kiểm tra (máy đọc chưa chắc):" in html


def test_import_without_script_keeps_the_form(client: Any) -> None:
    """The button posts the whole compose form when JavaScript is off: nothing typed is lost."""
    login(client, "editor")
    reply = client.post(
        "/compose/import",
        data={"csrf_token": csrf(client, "/"), "title": "Tiêm phòng đợt 1", "targets": ["thon-1"], "tier": "normal",
              "repeat": "2", "text": "", "document": (io.BytesIO(text_pdf([NOTICE])), "cv.pdf")},
        headers={"Accept": "text/html"},
        content_type="multipart/form-data",
    )  # fmt: skip
    html = reply.get_data(as_text=True)
    assert reply.status_code == 200
    assert 'value="Tiêm phòng đợt 1"' in html and NOTICE in html
    assert 'value="thon-1" data-zone="thon-1" checked' in html and '<option value="2" selected>' in html


# --- recordings ----------------------------------------------------------------------------------


def _wait_job(client: Any, url: str) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        status = client.get(url, headers={"Accept": "application/json"}).get_json()
        if status["state"] != "running":
            return status
        time.sleep(0.05)
    raise AssertionError("upload job did not finish")


@pytest.mark.integration
@pytest.mark.parametrize("suffix", [".wav", ".mp3"])
def test_recording_upload_is_converted_and_used(
    client: Any, web_services: Any, tmp_path: Path, suffix: str
) -> None:
    login(client, "approver")
    recording = make_audio(tmp_path / f"ghi-am{suffix}", seconds=3.0, volume_db=-30.0)
    reply = _upload(client, "/compose/recording", "recording", recording.read_bytes(), recording.name)
    assert reply.status_code == 200
    done = _wait_job(client, reply.get_json()["status_url"])
    assert done["state"] == "done", done
    assert done["engine"] == "recording" and done["duration_s"] >= 3.0
    key = done["key"]
    assert web_services.speech.store.has(key)
    with client.get(done["audio_url"]) as audio:
        assert audio.status_code == 200 and audio.mimetype == "audio/mpeg"
    # Broadcast it instead of a synthesized text.
    form = {"csrf_token": csrf(client, "/"), "title": "Ghi âm", "text": "", "tier": "normal", "targets": ["all"],
            "repeat": "1", "action": "now", "audio_key": key, "audio_name": recording.name}  # fmt: skip
    assert client.post("/compose", data=form).status_code == 302
    (item,) = web_services.broadcasts.list()
    assert item["audio_key"] == key and item["text"] == ""


def test_not_audio_is_refused_with_a_message(client: Any) -> None:
    login(client, "editor")
    reply = _upload(client, "/compose/recording", "recording", b"this is not audio at all" * 50, "fake.mp3")
    done = _wait_job(client, reply.get_json()["status_url"])
    assert done["state"] == "error" and done["error"].startswith("Không tạo được âm thanh: ")
    wrong_type = _upload(client, "/compose/recording", "recording", b"MZ", "virus.exe")
    assert (
        wrong_type.status_code == 400
        and "Loại tệp không được hỗ trợ" in wrong_type.get_json()["errors"]["audio"]
    )


def test_uploaded_key_must_exist(client: Any, web_services: Any) -> None:
    login(client, "approver")
    form = {"csrf_token": csrf(client, "/"), "title": "x", "text": "", "tier": "normal", "targets": ["all"],
            "repeat": "1", "action": "now", "audio_key": "a" * 64}  # fmt: skip
    reply = client.post("/compose", data=form)
    assert reply.status_code == 400 and "Bản ghi âm đã tải lên không còn" in reply.get_data(as_text=True)
    assert web_services.submitted() == []

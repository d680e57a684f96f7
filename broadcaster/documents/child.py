"""The reading child process: ``python -m broadcaster.documents.child MODE KIND`` with the
document on stdin and one JSON object on stdout.

MODE ``text`` (KIND docx or pdf): ``{"text", "pages"}``, or ``{"needs_ocr": true, "pages",
"scanned"}`` when a PDF has scanned pages. MODE ``ocr`` (KIND pdf or image): the fields of
``Extracted.to_json``. On a document it cannot read: ``{"error": "<Vietnamese message>"}``.

It caps its own address space and CPU time before importing any parser (``limits.py``), and its
log output, so that a file that makes a library log every object cannot flood the controller.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from typing import Any

from broadcaster.documents.base import IMAGE_BROKEN_MESSAGE, SUPPORTED_HINT, DocumentError
from broadcaster.documents.limits import TOO_COMPLEX_MESSAGE, apply_child_limits

_LOGGER = logging.getLogger(__name__)

# Log records the child passes on to the controller's log (through stderr): enough to diagnose.
MAX_LOG_RECORDS = 40

BROKEN_MESSAGES = {
    "docx": "Tệp .docx bị hỏng hoặc không phải tệp Word. " + SUPPORTED_HINT,
    "pdf": "Tệp PDF bị hỏng, không đọc được. " + SUPPORTED_HINT,
    "image": IMAGE_BROKEN_MESSAGE,
}


class _FirstRecords(logging.Filter):
    def __init__(self, limit: int) -> None:
        super().__init__()
        self.left = limit

    def filter(self, record: logging.LogRecord) -> bool:
        self.left -= 1
        return self.left >= 0


def _read(mode: str, kind: str, data: bytes) -> dict[str, Any]:
    if mode == "text" and kind == "docx":
        from broadcaster.documents.office import docx_text

        return {"text": docx_text(data), "pages": 1}
    if mode == "text" and kind == "pdf":
        from broadcaster.documents.office import pdf_pages

        pages = pdf_pages(data)
        scanned = [p.number for p in pages if p.scanned]
        if scanned:
            return {"needs_ocr": True, "pages": len(pages), "scanned": scanned}
        return {"text": "\n\n".join(p.text for p in pages if p.text), "pages": len(pages)}
    if mode == "ocr" and kind in ("pdf", "image"):
        from broadcaster.documents import ocr

        result = ocr.recognize_pdf(data) if kind == "pdf" else ocr.recognize_image(data)
        return result.to_json()
    raise DocumentError("Loại tệp không được hỗ trợ. " + SUPPORTED_HINT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="broadcaster.documents.child")
    parser.add_argument("mode", choices=("text", "ocr"))
    parser.add_argument("kind", choices=("docx", "pdf", "image"))
    parser.add_argument("--memory", type=int, required=True, help="address space cap, bytes")
    parser.add_argument("--cpu", type=int, required=True, help="CPU time cap, seconds")
    args = parser.parse_args(argv)
    apply_child_limits(args.memory, args.cpu)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_FirstRecords(MAX_LOG_RECORDS))
    logging.basicConfig(level=logging.INFO, handlers=[handler], format="%(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    data = sys.stdin.buffer.read()
    try:
        reply = _read(args.mode, args.kind, data)
    except DocumentError as exc:
        reply = {"error": str(exc)}
    except (MemoryError, RecursionError) as exc:
        _LOGGER.warning("%s/%s: %s", args.mode, args.kind, type(exc).__name__)
        reply = {"error": TOO_COMPLEX_MESSAGE}
    except Exception:  # a parser failing its own way on a damaged file: say so, log the details
        _LOGGER.exception("%s/%s: unexpected parser failure", args.mode, args.kind)
        reply = {"error": BROKEN_MESSAGES[args.kind]}
    sys.stdout.write(json.dumps(reply, ensure_ascii=False))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

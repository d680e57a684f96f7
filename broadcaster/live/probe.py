"""A quick look at a relay URL before ffmpeg is started on it: clear Vietnamese errors for a bad
address, a page that is not audio, a server that does not answer (never a hang: every read has a
timeout). What passes is then decoded by ffmpeg, which refuses bytes that are not audio."""

from __future__ import annotations

import socket
import urllib.error
import urllib.parse
import urllib.request

# Content types that are audio (or may be: octet-stream is decided by the decoder).
_AUDIO_TYPES = ("audio/", "application/ogg", "application/octet-stream", "video/mp2t")
_PLAYLIST_TYPES = ("mpegurl", "x-scpls", "vnd.apple")
# Bytes read to tell a playlist or a page from audio.
_PEEK = 2048


class SourceError(Exception):
    """A source that cannot be relayed; ``str()`` is the Vietnamese reason for the officer."""


def check_url(url: str) -> str:
    """The URL if it can be a relay source (http or https, a host); SourceError otherwise."""
    text = (url or "").strip()
    try:
        parsed = urllib.parse.urlsplit(text)
        hostname = parsed.hostname
    except ValueError:  # e.g. "http://]x": an unbalanced IPv6 bracket
        raise SourceError("Địa chỉ nguồn phát không hợp lệ.") from None
    if parsed.scheme not in ("http", "https") or not hostname:
        raise SourceError("Địa chỉ nguồn phát phải bắt đầu bằng http:// hoặc https:// và có tên máy chủ.")
    if len(text) > 1000:
        raise SourceError("Địa chỉ nguồn phát dài quá 1.000 ký tự.")
    return text


# Content type -> ffmpeg demuxer: named up front, because letting ffmpeg guess the format of a live
# stream costs seconds of probing (8 s on a 64 kbps Icecast mount).
_DEMUXERS = {
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/aac": "aac",
    "audio/aacp": "aac",
    "audio/x-aac": "aac",
    "application/ogg": "ogg",
    "audio/ogg": "ogg",
}


def probe(url: str, timeout: float) -> str | None:
    """Open ``url`` and look at the answer: the ffmpeg demuxer to read it with (``"hls"`` for a
    playlist; None when the type does not say and ffmpeg must find out)."""
    request = urllib.request.Request(url, headers={"User-Agent": "LoaXa-relay/1", "Icy-MetaData": "0"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            kind = (answer.headers.get("Content-Type") or "").lower()
            head = answer.read(_PEEK)
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the answer's socket; left open it is only closed by the collector
        raise SourceError(
            f"Nguồn phát trả lời lỗi {exc.code} ({exc.reason}): không có luồng âm thanh ở địa chỉ này."
        ) from exc
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, socket.timeout | TimeoutError):
            raise SourceError(f"Nguồn phát không trả lời trong {timeout:.0f} giây.") from exc
        raise SourceError(f"Không kết nối được tới nguồn phát: {reason}.") from exc
    except TimeoutError as exc:
        raise SourceError(f"Nguồn phát không trả lời trong {timeout:.0f} giây.") from exc
    except (OSError, ValueError) as exc:
        raise SourceError(f"Không kết nối được tới nguồn phát: {exc}.") from exc
    if head.lstrip().startswith(b"#EXTM3U") or any(t in kind for t in _PLAYLIST_TYPES):
        return "hls"
    if kind.startswith(_AUDIO_TYPES) or not kind:
        if not head:
            raise SourceError("Nguồn phát không gửi dữ liệu nào.")
        return _DEMUXERS.get(kind.split(";")[0].strip())
    if "html" in kind or head.lstrip()[:15].lower().startswith((b"<!doctype", b"<html")):
        raise SourceError("Địa chỉ này là một trang web, không phải luồng âm thanh.")
    raise SourceError(f"Địa chỉ này không trả về âm thanh (loại nội dung «{kind.split(';')[0]}»).")


__all__ = ["SourceError", "check_url", "probe"]

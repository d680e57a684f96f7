"""The small HTTP client of the cloud speech engines (stdlib ``urllib``; no third-party library).

Every request has a timeout (connect and each read) and a total deadline over the body; HTTP
error statuses are returned, not raised, so each engine maps them to its provider's meaning.
Network failures become :class:`TtsTimeout` or :class:`TtsError`. Secrets given to the client
(API keys) are replaced by ``***`` in every message it logs or raises.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from broadcaster.tts.base import TtsBadResponse, TtsError, TtsTimeout

_LOGGER = logging.getLogger(__name__)

# Largest answer we read: one sentence of speech is tens of kilobytes; a provider sending more is
# broken or hostile, and reading on would only fill memory.
MAX_BODY_BYTES = 16 * 1024 * 1024
_CHUNK = 64 * 1024
USER_AGENT = "loa-xa/0.1 (commune loudspeakers)"


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (and its URL-encoded form) replaced by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***").replace(urllib.parse.quote(secret, safe=""), "***")
    return text


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str = ""
    secrets: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def header(self, name: str, default: str = "") -> str:
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return default

    @property
    def content_type(self) -> str:
        return self.header("Content-Type").split(";")[0].strip().lower()

    def text(self, limit: int = 300) -> str:
        """The start of the body as text, secrets redacted: for error messages."""
        snippet = self.body[:limit].decode("utf-8", "replace").strip()
        return redact(" ".join(snippet.split()), self.secrets)

    def json(self, what: str) -> Any:
        """The body as JSON, or TtsBadResponse naming ``what`` answered badly."""
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise TtsBadResponse(
                f"{what} answered HTTP {self.status} with no JSON: {self.text(120)!r}"
            ) from exc

    def retry_after_s(self) -> float | None:
        """Retry-After in seconds (the delta form; the date form is rare for APIs)."""
        value = self.header("Retry-After")
        try:
            seconds = float(value)
        except ValueError:
            return None
        return seconds if seconds >= 0 else None


class HttpClient:
    """One provider's requests. Thread-safe (nothing shared between calls)."""

    def __init__(self, what: str, *, timeout_s: float, secrets: Iterable[str | None] = ()) -> None:
        self.what = what  # the provider, in messages: "FPT.AI"
        self.timeout_s = timeout_s
        self.secrets = tuple(s for s in secrets if s)
        # urllib's defaults: proxies from the environment (no_proxy honoured), redirects followed
        # (an audio link may redirect to a CDN).
        self._opener = urllib.request.build_opener()

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout_s: float | None = None,
    ) -> HttpResponse:
        """Send one request; any HTTP status comes back as a response. Raises TtsTimeout when
        the provider does not answer in time and TtsError when it cannot be reached."""
        scheme = urllib.parse.urlsplit(url).scheme
        if scheme not in ("http", "https"):
            raise TtsBadResponse(
                f"{self.what}: refusing a {scheme or 'relative'} URL: {self.redact(url)[:120]}"
            )
        timeout = timeout_s or self.timeout_s
        request = urllib.request.Request(url, data=body, method=method)
        request.add_header("User-Agent", USER_AGENT)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        deadline = time.monotonic() + 2 * timeout  # connect + a slow trickle of body
        _LOGGER.debug("%s: %s %s (%d bytes)", self.what, method, self.redact(url), len(body or b""))
        try:
            reply = self._opener.open(request, timeout=timeout)
        except urllib.error.HTTPError as exc:  # an answer with an error status: the engine decides
            with exc:
                data = self._read(exc, deadline)
                return HttpResponse(exc.code, dict(exc.headers or {}), data, url, self.secrets)
        except TimeoutError as exc:
            raise TtsTimeout(f"{self.what} did not answer within {timeout:g} s") from exc
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError):
                raise TtsTimeout(f"{self.what} did not answer within {timeout:g} s") from exc
            raise TtsError(f"{self.what} cannot be reached: {self.redact(str(reason))}") from exc
        except (OSError, ValueError) as exc:  # connection reset, bad URL, TLS trouble
            raise TtsError(
                f"{self.what} request failed: {exc.__class__.__name__}: {self.redact(str(exc))}"
            ) from exc
        with reply:
            data = self._read(reply, deadline)
            return HttpResponse(reply.status, dict(reply.headers or {}), data, reply.geturl(), self.secrets)

    def _read(self, stream: Any, deadline: float) -> bytes:
        parts: list[bytes] = []
        size = 0
        try:
            while True:
                chunk = stream.read(_CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise TtsBadResponse(f"{self.what} sent more than {MAX_BODY_BYTES} bytes")
                parts.append(chunk)
                if time.monotonic() > deadline:
                    raise TtsTimeout(f"{self.what} sent its answer too slowly")
        except TimeoutError as exc:
            raise TtsTimeout(f"{self.what} stopped sending its answer") from exc
        except OSError as exc:
            raise TtsError(f"{self.what} connection broke: {exc.__class__.__name__}") from exc
        return b"".join(parts)


__all__ = ["HttpClient", "HttpResponse", "redact"]

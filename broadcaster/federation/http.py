"""The federation's one HTTP client (stdlib ``urllib.request``): the Loa xã link and CAP polling.

``fetch()`` returns ``(status, headers, body)`` for any answer the server gave, error statuses
included, reads at most ``limit`` bytes (more is an error), and raises :class:`NetworkError` when
no answer came (unreachable, timeout, TLS failure).
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit


class NetworkError(Exception):
    """No answer: the message says why (for the log and the officer's status line)."""


class TooLarge(NetworkError):
    """The answer was over the size limit."""


def tls_context(url: str, *, verify: bool = True, ca_file: str | None = None) -> ssl.SSLContext | None:
    if urlsplit(url).scheme != "https":
        return None
    context = ssl.create_default_context(cafile=ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def fetch(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float,
    limit: int,
    verify: bool = True,
    ca_file: str | None = None,
) -> tuple[int, Any, bytes]:
    request = urllib.request.Request(url, data=body, headers=dict(headers or {}), method=method)
    context = tls_context(url, verify=verify, ca_file=ca_file)
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as answer:
            status, reply_headers, data = answer.status, answer.headers, answer.read(limit + 1)
    except urllib.error.HTTPError as exc:
        with exc:  # it holds the answer's socket
            status, reply_headers, data = exc.code, exc.headers, exc.read(min(limit, 65536) + 1)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise NetworkError(f"not reachable: {getattr(exc, 'reason', exc)}") from exc
    if len(data) > limit:
        raise TooLarge(f"answer over {limit} bytes")
    return status, reply_headers, data


__all__ = ["NetworkError", "TooLarge", "fetch", "tls_context"]

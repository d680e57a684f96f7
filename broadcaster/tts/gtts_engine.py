"""gTTS (Google Translate's voice, ``lang="vi"``): the best-sounding engine, but online.

gTTS itself chunks the text at sentence and clause boundaries (its tokenizer, at most 100
characters per request) and packages each chunk as a request body. We send those bodies
ourselves so that every request has a timeout, a bounded number of retries with back-off,
a configurable base URL (a mirror, or a local server in the tests) and certificate checks.
This module is the only place that imports ``gtts`` and ``requests``.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import threading
import time
from typing import Any

import requests
from gtts import gTTS

from broadcaster.tts.base import AudioClip, EngineUnavailable, TtsError
from broadcaster.tts.config import GttsOptions

_LOGGER = logging.getLogger(__name__)

_RPC_PATH = "/_/TranslateWebserverUi/data/batchexecute"
# The audio travels base64-encoded inside the batchexecute reply (same pattern as gTTS).
_AUDIO_RE = re.compile(r'jQ1olc","\[\\"(.*)\\"]')
# Statuses worth another try: throttling and server-side trouble.
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class GttsEngine:
    """gTTS over HTTP with timeout and retries. Thread-safe (a session per call)."""

    name = "gtts"
    # A few requests at once; more would look like abuse to the service.
    max_parallel = 3

    def __init__(self, options: GttsOptions | None = None) -> None:
        self._opts = options or GttsOptions()
        self._lock = threading.Lock()
        self.requests_sent = 0  # for diagnostics and tests

    @property
    def url(self) -> str:
        base = self._opts.base_url or f"https://translate.google.{self._opts.tld}"
        return base.rstrip("/") + _RPC_PATH

    def available(self) -> bool:
        # Whether the network works is only known by trying; the chain's circuit breaker
        # remembers a failure.
        return True

    def voices(self) -> list[str]:
        return [self._opts.lang]

    def default_voice(self) -> str:
        return self._opts.lang

    def options(self) -> dict[str, Any]:
        return {"tld": self._opts.tld, "slow": self._opts.slow}

    def chunks(self, text: str, voice: str | None = None) -> list[str]:
        """The request bodies gTTS makes for ``text`` (one per chunk of <= 100 characters)."""
        try:
            tts = gTTS(
                text,
                lang=voice or self._opts.lang,
                tld=self._opts.tld,
                slow=self._opts.slow,
                lang_check=False,
            )
            return list(tts.get_bodies())
        except (AssertionError, ValueError) as exc:
            raise TtsError(f"gTTS cannot read this text: {exc or 'nothing to say'}") from exc

    def synthesize(self, text: str, voice: str | None = None) -> AudioClip:
        voice = voice or self._opts.lang
        if voice not in self.voices():
            raise EngineUnavailable(f"gTTS has no voice {voice!r}")
        bodies = self.chunks(text, voice)
        parts: list[bytes] = []
        with requests.Session() as session:
            session.headers.update(gTTS.GOOGLE_TTS_HEADERS)
            for index, body in enumerate(bodies):
                parts.append(self._fetch(session, body, index, len(bodies)))
        return AudioClip(b"".join(parts), "mp3", {"chunks": len(bodies)})

    def _fetch(self, session: requests.Session, body: str, index: int, total: int) -> bytes:
        attempts = self._opts.retries + 1
        delay = self._opts.retry_backoff_s
        reason = ""
        for attempt in range(1, attempts + 1):
            with self._lock:
                self.requests_sent += 1
            try:
                reply = session.post(self.url, data=body, timeout=self._opts.timeout_s)
            except requests.Timeout:
                reason = f"no reply within {self._opts.timeout_s:g} s"
            except requests.RequestException as exc:
                reason = f"request failed: {exc.__class__.__name__}"
            else:
                if reply.status_code == 200:
                    return self._audio_from(reply.text)
                reason = f"HTTP {reply.status_code}"
                if reply.status_code not in _RETRY_STATUSES:
                    break
            if attempt < attempts:
                _LOGGER.info(
                    "gTTS chunk %d/%d: %s; retry %d of %d", index + 1, total, reason, attempt, attempts - 1
                )
                time.sleep(delay)
                delay *= 2
        raise TtsError(f"gTTS chunk {index + 1}/{total}: {reason}")

    @staticmethod
    def _audio_from(reply: str) -> bytes:
        for line in reply.splitlines():
            if "jQ1olc" not in line:
                continue
            found = _AUDIO_RE.search(line)
            if found:
                try:
                    audio = base64.b64decode(found.group(1).encode("ascii"), validate=True)
                except (binascii.Error, UnicodeEncodeError) as exc:
                    raise TtsError("gTTS reply holds no valid audio") from exc
                if audio:
                    return audio
        raise TtsError("gTTS reply holds no audio")

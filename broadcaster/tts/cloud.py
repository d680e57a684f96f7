"""What the cloud engines share: a fixed voice catalogue, the API key check, the mapping of HTTP
answers to typed errors, audio validation, and fetching an audio link that appears later.

Each provider has its own module (``fpt.py``, ``viettel.py``, ``zalo.py``, ``google_cloud.py``,
``azure.py``) with a subclass of :class:`CloudEngine` that builds its request and reads its answer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from broadcaster.tts.base import (
    AudioClip,
    EngineUnavailable,
    TtsAuthError,
    TtsBadResponse,
    TtsError,
    TtsQuotaError,
    TtsRateLimited,
    TtsTimeout,
    VoiceInfo,
)
from broadcaster.tts.config import CloudOptions
from broadcaster.tts.http import HttpClient, HttpResponse

_LOGGER = logging.getLogger(__name__)

# Words providers use in quota messages (English and Vietnamese), to tell a spent quota from
# another refusal when the status code alone does not (403 and 429 mean both).
_QUOTA_WORDS = ("quota", "exceed", "limit", "insufficient", "balance", "credit", "hết", "hạn mức")
# Longest wait between two fetches of an audio link that is not ready yet.
_MAX_POLL_WAIT_S = 4.0


def sniff_audio(data: bytes) -> str | None:
    """``"mp3"`` or ``"wav"`` when the bytes start like one, else None."""
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[:3] == b"ID3":
        return "mp3"
    if len(data) >= 2 and data[0] == 0xFF and (data[1] & 0xE0) == 0xE0:  # MPEG frame sync
        return "mp3"
    return None


def mentions_quota(text: str) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in _QUOTA_WORDS)


class CloudEngine:
    """Base of the cloud engines. Subclasses set ``name``, ``label_vi``, ``VOICES`` and
    implement :meth:`_synthesize`. Thread-safe: a call shares nothing with another."""

    name = "cloud"
    label_vi = "cloud"
    metered = True  # characters cost money or quota: the chain counts them
    VOICES: Sequence[VoiceInfo] = ()
    # Longest text the provider takes in one request (characters); pieces are sentences, far shorter.
    MAX_CHARS = 2000
    # Requests in flight at once for one bulletin: a provider answers each in ~1 s; four keep a
    # commune's bulletin near one request's time without tripping the providers' rate limits.
    max_parallel = 4
    # The alphabet of the phonetic hints the provider understands (``broadcaster.pronunciation``):
    # "ipa" for the SSML providers; None for those that take plain text only (they read the reading).
    phoneme_alphabet: str | None = None

    def __init__(self, options: CloudOptions) -> None:
        self._opts = options
        self._http = HttpClient(self.label_vi, timeout_s=options.timeout_s, secrets=self._secrets())
        self._lock = threading.Lock()
        self.requests_sent = 0  # for diagnostics and tests

    # --- the TtsEngine protocol -----------------------------------------------------------

    def _secrets(self) -> list[str]:
        key = self._opts.api_key
        return [key.get_secret_value()] if key is not None else []

    def _key(self) -> str:
        key = self._opts.api_key
        return key.get_secret_value().strip() if key is not None else ""

    def available(self) -> bool:
        """True when a key is configured (whether it works is known by trying)."""
        return bool(self._key())

    def voices(self) -> list[str]:
        names = [v.name for v in self.VOICES]
        default = self.default_voice()
        if default not in names:
            names.insert(0, default)
        return names

    def voice_info(self) -> list[VoiceInfo]:
        return list(self.VOICES)

    def default_voice(self) -> str:
        return str(getattr(self._opts, "voice", ""))

    def options(self) -> dict[str, Any]:
        return {}

    def synthesize(
        self, text: str, voice: str | None = None, hints: Mapping[str, str] | None = None
    ) -> AudioClip:
        """``hints`` (``{reading: IPA}``) reach providers with a ``phoneme_alphabet`` only."""
        voice = voice or self.default_voice()
        if voice not in self.voices():
            raise EngineUnavailable(f"{self.label_vi} has no voice {voice!r}")
        if not self.available():
            raise EngineUnavailable(f"{self.label_vi}: no API key configured")
        text = text.strip()
        if not text:
            raise TtsError(f"{self.label_vi}: nothing to say")
        if len(text) > self.MAX_CHARS:
            raise TtsError(
                f"{self.label_vi} takes at most {self.MAX_CHARS} characters per request, got {len(text)}"
            )
        if hints and self.phoneme_alphabet:
            clip = self._synthesize(text, voice, hints)
        else:
            clip = self._synthesize(text, voice)
        _LOGGER.debug("%s: %d bytes of %s for %d chars", self.name, len(clip.data), clip.format, len(text))
        return clip

    def _synthesize(self, text: str, voice: str, hints: Mapping[str, str] | None = None) -> AudioClip:
        """One request. ``hints`` is passed only to providers with a ``phoneme_alphabet``."""
        raise NotImplementedError

    # --- helpers for the providers ----------------------------------------------------------

    def _send(self, method: str, url: str, **kwargs: Any) -> HttpResponse:
        with self._lock:
            self.requests_sent += 1
        return self._http.request(method, url, **kwargs)

    def _fail_on_status(self, reply: HttpResponse, detail: str = "") -> None:
        """Raise the typed error an HTTP error status means (nothing for 2xx). ``detail`` is the
        provider's own error message when the engine parsed one."""
        status = reply.status
        if 200 <= status < 300:
            return
        detail = self._http.redact(detail) if detail else reply.text()
        where = f"{self.label_vi}: HTTP {status}" + (f": {detail}" if detail else "")
        if status == 429:
            if mentions_quota(detail) and "rate" not in detail.lower():
                raise TtsQuotaError(where)
            raise TtsRateLimited(where, reply.retry_after_s())
        if status == 402:
            raise TtsQuotaError(where)
        if status in (401, 403):
            if status == 403 and mentions_quota(detail):
                raise TtsQuotaError(where)
            raise TtsAuthError(where)
        if status in (408, 504):
            raise TtsTimeout(where)
        raise TtsError(where)

    def _audio(self, data: bytes, expected: str = "mp3", what: str = "answer") -> AudioClip:
        """Audio bytes checked: TtsBadResponse when they are not audio."""
        found = sniff_audio(data)
        if found is None:
            snippet = data[:60].decode("utf-8", "replace")
            raise TtsBadResponse(
                f"{self.label_vi}: the {what} is not audio ({len(data)} bytes: {self._http.redact(snippet)!r})"
            )
        if found != expected:
            _LOGGER.debug("%s: expected %s, got %s", self.name, expected, found)
        return AudioClip(data, found)

    def _fetch_when_ready(self, url: str, *, timeout_s: float, first_wait_s: float) -> AudioClip:
        """GET an audio link that the provider fills in later: 404 (or 403 from S3) means not
        yet; waits grow from ``first_wait_s``; TtsTimeout when it is not ready by ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        wait = first_wait_s
        attempts = 0
        while True:
            attempts += 1
            left = deadline - time.monotonic()
            reply = self._send("GET", url, timeout_s=max(0.1, min(self._opts.timeout_s, left)))
            if reply.status == 200 and reply.body:
                return self._audio(reply.body, what="audio link")
            if reply.status not in (200, 202, 403, 404, 425):
                self._fail_on_status(reply)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TtsTimeout(
                    f"{self.label_vi}: the audio was not ready after {timeout_s:g} s ({attempts} tries)"
                )
            time.sleep(min(wait, left))
            wait = min(wait * 2, _MAX_POLL_WAIT_S)


__all__ = ["CloudEngine", "mentions_quota", "sniff_audio"]

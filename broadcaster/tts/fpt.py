"""FPT.AI text to speech, API v5 (docs.fpt.ai "FPT.AI Speech - Text to Speech", API page, English).

Followed: ``POST https://api.fpt.ai/hmi/tts/v5``, the text as the raw UTF-8 body (at least 3 and
at most 5,000 characters), options in headers: the key, ``voice``, ``speed`` (-3..+3) and
``format`` (mp3). The JSON answer ``{"async": <url>, "error": 0, "message", "request_id"}`` names
a link where the MP3 appears "from 5 seconds to 2 minutes" later; we fetch it with growing waits
until ``poll_timeout_s`` (404 or 403 from its storage means "not yet").

Not confirmed by the page, and kept configurable or tolerant:

* the key header: the table names it ``api_key`` but FPT's own samples and clients send
  ``api-key`` (proxies drop headers with underscores), so we send ``api-key``;
* error answers: the page only says ``error`` is non-zero on failure. We map HTTP 401/403 to a
  key error, 429 to throttling, and a non-zero ``error`` or 4xx whose message speaks of a quota or
  limit to a spent quota;
* the voice list: the seven voices the page lists (other voices FPT sells can be set as
  ``tts.fpt.voice``; they are accepted, without accent and gender).
"""

from __future__ import annotations

from typing import Any

from broadcaster.tts.base import (
    AudioClip,
    Gender,
    Region,
    TtsAuthError,
    TtsBadResponse,
    TtsError,
    TtsQuotaError,
    VoiceInfo,
)
from broadcaster.tts.cloud import CloudEngine, mentions_quota
from broadcaster.tts.config import FptOptions

_F, _M = Gender.FEMALE, Gender.MALE
_N, _C, _S = Region.NORTH, Region.CENTRAL, Region.SOUTH
VOICES = tuple(
    VoiceInfo.make(name, person, gender, region, "FPT.AI")
    for name, person, gender, region in (
        ("banmai", "Ban Mai", _F, _N),
        ("thuminh", "Thu Minh", _F, _N),
        ("leminh", "Lê Minh", _M, _N),
        ("myan", "Mỹ An", _F, _C),
        ("giahuy", "Gia Huy", _M, _C),
        ("lannhi", "Lan Nhi", _F, _S),
        ("linhsan", "Linh San", _F, _S),
    )
)
# FPT rejects bodies shorter than this (documented); a shorter piece is padded with dots.
_MIN_CHARS = 3


class FptEngine(CloudEngine):
    name = "fpt"
    label_vi = "FPT.AI"
    VOICES = VOICES
    MAX_CHARS = 5000

    def __init__(self, options: FptOptions | None = None) -> None:
        self._fpt = options or FptOptions()
        super().__init__(self._fpt)

    def options(self) -> dict[str, Any]:
        return {"speed": self._fpt.speed}

    def _synthesize(self, text: str, voice: str) -> AudioClip:
        headers = {
            "api-key": self._key(),
            "voice": voice,
            "speed": str(self._fpt.speed),
            "format": "mp3",
            "Content-Type": "text/plain; charset=utf-8",
            "Cache-Control": "no-cache",
        }
        body = text.ljust(_MIN_CHARS, ".").encode("utf-8")
        reply = self._send("POST", self._fpt.url, headers=headers, body=body)
        answer: Any = None
        message = ""
        if reply.content_type == "application/json" or reply.body[:1] in (b"{", b"["):
            try:
                answer = reply.json(self.label_vi)
            except TtsBadResponse:
                if 200 <= reply.status < 300:
                    raise
            if isinstance(answer, dict):
                message = str(answer.get("message") or "")
        self._fail_on_status(reply, message)
        if not isinstance(answer, dict):
            raise TtsBadResponse(f"FPT.AI answered with no JSON: {reply.text(120)!r}")
        error = answer.get("error")
        if error not in (0, "0", None):
            where = f"FPT.AI error {error}: {self._http.redact(message)}"
            if mentions_quota(message):
                raise TtsQuotaError(where)
            if any(
                word in message.lower()
                for word in ("api key", "api-key", "apikey", "unauthori", "invalid key")
            ):
                raise TtsAuthError(where)
            raise TtsError(where)
        link = answer.get("async")
        if not isinstance(link, str) or not link:
            raise TtsBadResponse(f"FPT.AI answer has no audio link (keys: {sorted(answer)[:6]})")
        return self._fetch_when_ready(
            link, timeout_s=self._fpt.poll_timeout_s, first_wait_s=self._fpt.poll_interval_s
        )

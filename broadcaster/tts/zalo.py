"""Zalo AI text to speech ("Text to Audio Converter", zalo.ai/docs, API v1).

Followed: ``POST https://api.zalo.ai/v1/tts/synthesize``, header ``apikey``, form fields
(application/x-www-form-urlencoded) ``input`` (at most 2,000 characters), ``speaker_id``
(1 southern woman, 2 northern woman, 3 southern man, 4 northern man, 5 northern woman 2,
6 southern woman 2), ``speed`` 0.8-1.2 and ``encode_type`` (0 wav, 1 mp3, 2 aac). The answer is
JSON ``{"error_code", "error_message", "data": {"url"}}``; the url is a streaming link we
download (tolerating a short "not ready yet" 404). Documented error codes: 150 invalid value,
155 input over 2,000 characters, 400 wrong parameter, 401 wrong apikey, 413 error, 500 internal
error.

Not documented, handled tolerantly: how a spent quota or throttling is reported (we map HTTP 429
and error_code 429 to throttling, messages about a quota or limit to a spent quota).
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from broadcaster.tts.base import (
    AudioClip,
    Gender,
    Region,
    TtsAuthError,
    TtsBadResponse,
    TtsError,
    TtsQuotaError,
    TtsRateLimited,
    VoiceInfo,
)
from broadcaster.tts.cloud import CloudEngine, mentions_quota
from broadcaster.tts.config import ZaloOptions

VOICES = tuple(
    VoiceInfo.make(name, person, gender, region, "Zalo AI")
    for name, person, gender, region in (  # Zalo names its voices by number only
        ("2", "Giọng số 2", Gender.FEMALE, Region.NORTH),
        ("5", "Giọng số 5", Gender.FEMALE, Region.NORTH),
        ("4", "Giọng số 4", Gender.MALE, Region.NORTH),
        ("1", "Giọng số 1", Gender.FEMALE, Region.SOUTH),
        ("6", "Giọng số 6", Gender.FEMALE, Region.SOUTH),
        ("3", "Giọng số 3", Gender.MALE, Region.SOUTH),
    )
)
_ENCODE_MP3 = "1"  # encode_type: 0 wav, 1 mp3, 2 aac
# First wait before fetching the streaming link again when it is not ready.
_FIRST_POLL_WAIT_S = 0.3


class ZaloEngine(CloudEngine):
    name = "zalo"
    label_vi = "Zalo AI"
    VOICES = VOICES
    MAX_CHARS = 2000

    def __init__(self, options: ZaloOptions | None = None) -> None:
        self._zalo = options or ZaloOptions()
        super().__init__(self._zalo)

    def options(self) -> dict[str, Any]:
        return {"speed": self._zalo.speed}

    def _synthesize(self, text: str, voice: str) -> AudioClip:
        form = {
            "input": text,
            "speaker_id": voice,
            "speed": f"{self._zalo.speed:g}",
            "encode_type": _ENCODE_MP3,
        }
        headers = {"apikey": self._key(), "Content-Type": "application/x-www-form-urlencoded"}
        reply = self._send(
            "POST", self._zalo.url, headers=headers, body=urllib.parse.urlencode(form).encode()
        )
        answer: Any = None
        if reply.body[:1] == b"{":
            try:
                answer = reply.json(self.label_vi)
            except TtsBadResponse:
                answer = None
        message = str(answer.get("error_message") or "") if isinstance(answer, dict) else ""
        self._fail_on_status(reply, message)
        if not isinstance(answer, dict):
            raise TtsBadResponse(f"Zalo AI answered with no JSON: {reply.text(120)!r}")
        code = answer.get("error_code")
        if code != 0:
            where = f"Zalo AI error {code}: {self._http.redact(message)}"
            if code == 401:
                raise TtsAuthError(where)
            if code == 429:
                raise TtsRateLimited(where)
            if mentions_quota(message) and code != 155:
                raise TtsQuotaError(where)
            if code is None:
                raise TtsBadResponse(f"Zalo AI answer has no error_code (keys: {sorted(answer)[:6]})")
            raise TtsError(where)
        data = answer.get("data")
        link = data.get("url") if isinstance(data, dict) else None
        if not isinstance(link, str) or not link:
            raise TtsBadResponse("Zalo AI answer has no audio url")
        return self._fetch_when_ready(
            link, timeout_s=self._zalo.poll_timeout_s, first_wait_s=_FIRST_POLL_WAIT_S
        )

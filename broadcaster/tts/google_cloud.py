"""Google Cloud Text-to-Speech, REST v1 (cloud.google.com/text-to-speech/docs/reference/rest,
``text.synthesize``; limits from cloud.google.com/text-to-speech/quotas).

Followed: ``POST https://texttospeech.googleapis.com/v1/text:synthesize`` with JSON
``{"input": {"text"}, "voice": {"languageCode": "vi-VN", "name"}, "audioConfig":
{"audioEncoding": "MP3", "speakingRate"}}``; the answer is ``{"audioContent": <base64 MP3>}``.
A piece with a phonetic hint is sent as SSML instead, ``"input": {"ssml": "<speak>...</speak>"}``
with ``<phoneme alphabet="ipa" ph="...">`` (cloud.google.com/text-to-speech/docs/ssml). At most
5,000 bytes of input per request. Errors follow Google's JSON error model
``{"error": {"code", "message", "status"}}``: 400 INVALID_ARGUMENT (also "API key not valid"),
401 UNAUTHENTICATED, 403 PERMISSION_DENIED (API disabled, billing off, key restricted), 429
RESOURCE_EXHAUSTED (quota or rate).

Authentication: the API key goes in the ``X-Goog-Api-Key`` header (which Google APIs accept like
``?key=``), so it never appears in a URL, a log line or a proxy log; or an OAuth access token as
``Authorization: Bearer`` (``access_token``).

Not documented by Google: the accent of the vi-VN voices. They are listed as northern, which is
how they speak; the genders are Google's (A, C female; B, D male).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from broadcaster.tts.base import (
    AudioClip,
    Gender,
    Region,
    TtsAuthError,
    TtsBadResponse,
    VoiceInfo,
)
from broadcaster.tts.cloud import CloudEngine
from broadcaster.tts.config import GoogleCloudOptions
from broadcaster.tts.phonemes import has_marks, ssml_body

_F, _M = Gender.FEMALE, Gender.MALE
VOICES = tuple(
    VoiceInfo.make(name, person, gender, Region.NORTH, "Google Cloud")
    for name, person, gender in (
        ("vi-VN-Wavenet-A", "Wavenet A", _F),
        ("vi-VN-Wavenet-B", "Wavenet B", _M),
        ("vi-VN-Wavenet-C", "Wavenet C", _F),
        ("vi-VN-Wavenet-D", "Wavenet D", _M),
        ("vi-VN-Neural2-A", "Neural2 A", _F),
        ("vi-VN-Neural2-D", "Neural2 D", _M),
        ("vi-VN-Standard-A", "Standard A", _F),
        ("vi-VN-Standard-B", "Standard B", _M),
        ("vi-VN-Standard-C", "Standard C", _F),
        ("vi-VN-Standard-D", "Standard D", _M),
    )
)
# The documented limit is 5,000 bytes; Vietnamese letters take 2-3 bytes in UTF-8.
_MAX_BYTES = 5000


class GoogleCloudEngine(CloudEngine):
    name = "google-cloud"
    label_vi = "Google Cloud"
    VOICES = VOICES
    MAX_CHARS = 5000
    phoneme_alphabet = "ipa"  # SSML <phoneme alphabet="ipa"> in input.ssml

    def __init__(self, options: GoogleCloudOptions | None = None) -> None:
        self._gc = options or GoogleCloudOptions()
        super().__init__(self._gc)

    def _secrets(self) -> list[str]:
        token = self._gc.access_token
        return super()._secrets() + ([token.get_secret_value()] if token is not None else [])

    def _token(self) -> str:
        token = self._gc.access_token
        return token.get_secret_value().strip() if token is not None else ""

    def available(self) -> bool:
        return bool(self._key() or self._token())

    def options(self) -> dict[str, Any]:
        return {"speaking_rate": self._gc.speaking_rate}

    def _synthesize(self, text: str, voice: str, hints: Mapping[str, str] | None = None) -> AudioClip:
        # With a hint in this piece the input is SSML (``input.ssml``, root <speak>), else plain text.
        source: dict[str, str] = (
            {"ssml": f"<speak>{ssml_body(text, hints)}</speak>"} if has_marks(text, hints) else {"text": text}
        )
        if len(next(iter(source.values())).encode("utf-8")) > _MAX_BYTES:
            raise TtsBadResponse(f"Google Cloud takes at most {_MAX_BYTES} bytes per request")
        payload = {
            "input": source,
            "voice": {"languageCode": "vi-VN", "name": voice},
            "audioConfig": {"audioEncoding": "MP3", "speakingRate": self._gc.speaking_rate},
        }
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if self._token():
            headers["Authorization"] = f"Bearer {self._token()}"
        else:
            headers["X-Goog-Api-Key"] = self._key()
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        reply = self._send("POST", self._gc.url, headers=headers, body=body)
        if not 200 <= reply.status < 300:
            error: Any = {}
            if reply.body[:1] == b"{":
                try:
                    error = reply.json(self.label_vi).get("error") or {}
                except (TtsBadResponse, AttributeError):
                    error = {}
            message = str(error.get("message") or "") if isinstance(error, dict) else ""
            status = str(error.get("status") or "") if isinstance(error, dict) else ""
            detail = f"{status}: {message}" if status else message
            if reply.status == 400 and "api key" in message.lower():
                raise TtsAuthError(f"Google Cloud: HTTP 400: {self._http.redact(detail)}")
            self._fail_on_status(reply, detail)
        answer = reply.json(self.label_vi)
        content = answer.get("audioContent") if isinstance(answer, dict) else None
        if not isinstance(content, str) or not content:
            raise TtsBadResponse("Google Cloud answer has no audioContent")
        try:
            audio = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise TtsBadResponse("Google Cloud audioContent is not base64") from exc
        return self._audio(audio)

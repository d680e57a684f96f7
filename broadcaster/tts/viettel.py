"""Viettel AI text to speech (viettelai.vn).

Followed: the request shape of Viettel's TTS documentation (viettelgroup.ai/document/tts, the
older ``/voice/api/tts/v1/rest/syn`` page: JSON ``text``, ``voice``, ``speed`` 0.7-1.3,
``tts_return_option`` 1 streaming / 2 wav / 3 mp3, ``without_filter``; success is HTTP 200 with
the audio bytes as the body), sent to the current endpoint
``POST https://viettelai.vn/tts/speech_synthesis`` with the token in the JSON body as ``token``
(as Viettel's current console samples do).

Not confirmed by a page we could read, and handled tolerantly: the error answers (we map HTTP
401/403 and a JSON message about the token to a key error, 429 to throttling, messages about a
quota or limit to a spent quota, and a 200 answer that is not audio to a bad answer), and the
current voice list (the region prefixes hn-/hue-/hcm- are Viettel's own; the names are the ones
its console shows). Another voice can be set as ``tts.viettel.voice``.
"""

from __future__ import annotations

import json
from typing import Any

from broadcaster.tts.base import (
    AudioClip,
    Gender,
    Region,
    TtsAuthError,
    TtsBadResponse,
    TtsQuotaError,
    VoiceInfo,
)
from broadcaster.tts.cloud import CloudEngine, mentions_quota, sniff_audio
from broadcaster.tts.config import ViettelOptions

_F, _M = Gender.FEMALE, Gender.MALE
_N, _C, _S = Region.NORTH, Region.CENTRAL, Region.SOUTH
VOICES = tuple(
    VoiceInfo.make(name, person, gender, region, "Viettel AI")
    for name, person, gender, region in (
        ("hn-quynhanh", "Quỳnh Anh", _F, _N),
        ("hn-phuongtrang", "Phương Trang", _F, _N),
        ("hn-thaochi", "Thảo Chi", _F, _N),
        ("hn-thanhha", "Thanh Hà", _F, _N),
        ("hn-thanhtung", "Thanh Tùng", _M, _N),
        ("hn-namkhanh", "Nam Khánh", _M, _N),
        ("hn-tienquan", "Tiến Quân", _M, _N),
        ("hue-maingoc", "Mai Ngọc", _F, _C),
        ("hue-baoquoc", "Bảo Quốc", _M, _C),
        ("hcm-diemmy", "Diễm My", _F, _S),
        ("hcm-phuongly", "Phương Ly", _F, _S),
        ("hcm-thuydung", "Thùy Dung", _F, _S),
        ("hcm-thuyduyen", "Thùy Duyên", _F, _S),
        ("hcm-minhquan", "Minh Quân", _M, _S),
    )
)
_RETURN_MP3 = 3  # tts_return_option: 1 streaming, 2 wav, 3 mp3


def _message(answer: Any) -> str:
    if not isinstance(answer, dict):
        return ""
    for key in ("message", "vi_message", "error", "msg", "detail"):
        value = answer.get(key)
        if value:
            return str(value)
    return ""


class ViettelEngine(CloudEngine):
    name = "viettel"
    label_vi = "Viettel AI"
    VOICES = VOICES

    def __init__(self, options: ViettelOptions | None = None) -> None:
        self._vt = options or ViettelOptions()
        super().__init__(self._vt)

    def options(self) -> dict[str, Any]:
        return {"speed": self._vt.speed, "without_filter": self._vt.without_filter}

    def _synthesize(self, text: str, voice: str) -> AudioClip:
        payload = {
            "text": text,
            "voice": voice,
            "speed": self._vt.speed,
            "tts_return_option": _RETURN_MP3,
            "token": self._key(),
            "without_filter": self._vt.without_filter,
        }
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json; charset=utf-8", "Accept": "*/*"}
        reply = self._send("POST", self._vt.url, headers=headers, body=body)
        if 200 <= reply.status < 300 and sniff_audio(reply.body):
            return self._audio(reply.body)
        answer = None
        if reply.body[:1] in (b"{", b"["):
            try:
                answer = reply.json(self.label_vi)
            except TtsBadResponse:
                answer = None
        message = _message(answer)
        self._fail_on_status(reply, message)
        if message:  # HTTP 200 with an error message instead of audio
            where = f"Viettel AI: {self._http.redact(message)}"
            lowered = message.lower()
            if "token" in lowered or "unauthori" in lowered:
                raise TtsAuthError(where)
            if mentions_quota(message):
                raise TtsQuotaError(where)
            raise TtsBadResponse(where)
        return self._audio(reply.body)

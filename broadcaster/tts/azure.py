"""Microsoft Azure AI Speech, text to speech REST API (learn.microsoft.com, "Text to speech
REST API", speech-service/rest-text-to-speech).

Followed: ``POST https://<region>.tts.speech.microsoft.com/cognitiveservices/v1`` with headers
``Ocp-Apim-Subscription-Key``, ``Content-Type: application/ssml+xml``,
``X-Microsoft-OutputFormat`` (here ``audio-24khz-48kbitrate-mono-mp3``) and ``User-Agent``; the
body is SSML ``<speak version="1.0" xml:lang="vi-VN"><voice name="vi-VN-HoaiMyNeural">``.
Success is HTTP 200 with the audio as the body. Documented statuses: 400 bad request (e.g. SSML),
401 unauthorized (key or region wrong), 415 unsupported media type, 429 too many requests
(quota or rate of the resource exceeded), 502 bad gateway.

Vietnamese voices: vi-VN-HoaiMyNeural (female) and vi-VN-NamMinhNeural (male); Microsoft does not
name their accent, they speak the northern standard. Not confirmed: how the free tier's monthly
quota is reported (we map 429 and 403 answers that speak of a quota to a spent quota).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import quoteattr

from broadcaster.tts.base import AudioClip, Gender, Region, VoiceInfo
from broadcaster.tts.cloud import CloudEngine
from broadcaster.tts.config import AzureOptions
from broadcaster.tts.phonemes import ssml_body

VOICES = (
    VoiceInfo.make("vi-VN-HoaiMyNeural", "Hoài My", Gender.FEMALE, Region.NORTH, "Microsoft Azure"),
    VoiceInfo.make("vi-VN-NamMinhNeural", "Nam Minh", Gender.MALE, Region.NORTH, "Microsoft Azure"),
)


def ssml(text: str, voice: str, rate_percent: int = 0, hints: Mapping[str, str] | None = None) -> str:
    """The SSML document for ``text`` (escaped), read by ``voice``; each reading of ``hints``
    inside ``<phoneme alphabet="ipa" ph="...">``."""
    inner = ssml_body(text, hints)
    if rate_percent:
        inner = f"<prosody rate={quoteattr(f'{rate_percent:+d}%')}>{inner}</prosody>"
    return (
        '<speak version="1.0" xmlns="http://www.w3.org/2001/10/synthesis" xml:lang="vi-VN">'
        f"<voice name={quoteattr(voice)}>{inner}</voice></speak>"
    )


class AzureEngine(CloudEngine):
    name = "azure"
    label_vi = "Microsoft Azure"
    VOICES = VOICES
    MAX_CHARS = 3000
    phoneme_alphabet = "ipa"  # SSML <phoneme alphabet="ipa">

    def __init__(self, options: AzureOptions | None = None) -> None:
        self._az = options or AzureOptions()
        super().__init__(self._az)

    @property
    def url(self) -> str:
        return self._az.url or f"https://{self._az.region}.tts.speech.microsoft.com/cognitiveservices/v1"

    def options(self) -> dict[str, Any]:
        return {"rate_percent": self._az.rate_percent, "output_format": self._az.output_format}

    def _synthesize(self, text: str, voice: str, hints: Mapping[str, str] | None = None) -> AudioClip:
        headers = {
            "Ocp-Apim-Subscription-Key": self._key(),
            "Content-Type": "application/ssml+xml",
            "X-Microsoft-OutputFormat": self._az.output_format,
        }
        body = ssml(text, voice, self._az.rate_percent, hints).encode("utf-8")
        reply = self._send("POST", self.url, headers=headers, body=body)
        self._fail_on_status(reply)
        return self._audio(reply.body)

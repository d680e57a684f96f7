"""Settings of the speech engines.

Cloud API keys come from the settings file or, better, from environment variables
(``BROADCASTER_TTS__FPT__API_KEY``...); they are ``SecretStr`` so they never show in
``broadcaster settings``, logs or error messages, and they are never stored in the database.
"""

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

LOCAL_ENGINES = ("gtts", "piper", "espeak-ng")
CLOUD_ENGINES = ("fpt", "viettel", "zalo", "google-cloud", "azure")
ENGINE_NAMES = LOCAL_ENGINES + CLOUD_ENGINES


class GttsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lang: str = Field("vi", description="gTTS language code.")
    tld: str = Field("com.vn", description="Google Translate host suffix (translate.google.<tld>).")
    base_url: str | None = Field(
        None,
        description="Send requests to this URL instead of https://translate.google.<tld> "
        "(a mirror or a test server).",
    )
    timeout_s: float = Field(8.0, gt=0, description="Timeout of one HTTP request (connect and read).")
    retries: int = Field(1, ge=0, le=5, description="Extra attempts per text chunk after a failed request.")
    retry_backoff_s: float = Field(0.5, ge=0, description="Wait before a retry (doubles each time).")
    slow: bool = Field(False, description="Ask Google for its slower reading.")


class EspeakOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    binary: str = Field("espeak-ng", description="espeak-ng executable (name on PATH or a path).")
    voice: str = Field("vi", description="Default espeak-ng voice (vi, vi-vn-x-central, vi-vn-x-south).")
    speed: int = Field(150, ge=80, le=450, description="Words per minute (espeak-ng default 175).")
    pitch: int = Field(45, ge=0, le=99, description="Pitch, 0-99.")
    word_gap: int = Field(0, ge=0, le=50, description="Extra pause between words, in units of 10 ms.")
    timeout_s: float = Field(30.0, gt=0, description="Timeout of one espeak-ng run.")


class PiperOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    voices: list[Path] = Field(
        default_factory=list,
        description="Piper voice files (.onnx, with the .onnx.json next to it). The voice name is the "
        "file name without .onnx. Without any, piper is unavailable and skipped.",
    )
    default_voice: str | None = Field(None, description="Voice name used by default; default the first.")
    length_scale: float | None = Field(
        None, gt=0.3, lt=3.0, description="Speaking slowness (>1 slower); default the voice's own."
    )
    use_cuda: bool = Field(False, description="Run the voice on a CUDA GPU.")


class CloudOptions(BaseModel):
    """What every cloud engine has: a key, a timeout and an optional daily cap."""

    model_config = ConfigDict(extra="forbid")

    api_key: SecretStr | None = Field(
        None,
        description="The provider's API key (better set by environment variable than in a file); "
        "without it the engine is unavailable and skipped.",
    )
    timeout_s: float = Field(
        15.0, gt=0, description="Timeout of one HTTP request to the provider (connect, and each read)."
    )
    daily_char_cap: int | None = Field(
        None,
        ge=1,
        description="Most characters sent to this engine per local day; past it the engine is skipped "
        "until the next day. Unset: no cap.",
    )


class FptOptions(CloudOptions):
    url: str = Field("https://api.fpt.ai/hmi/tts/v5", description="FPT.AI text-to-speech v5 endpoint.")
    voice: str = Field("banmai", description="Default FPT.AI voice (banmai, leminh, lannhi, myan...).")
    speed: int = Field(0, ge=-3, le=3, description="FPT.AI reading speed, -3 (slowest) to +3 (fastest).")
    poll_interval_s: float = Field(
        0.5, gt=0, description="First wait before fetching the audio link again (doubles, at most 4 s)."
    )
    poll_timeout_s: float = Field(
        30.0, gt=0, description="Give up when the audio link has not become ready within this time."
    )


class ViettelOptions(CloudOptions):
    url: str = Field(
        "https://viettelai.vn/tts/speech_synthesis", description="Viettel AI text-to-speech endpoint."
    )
    voice: str = Field("hn-quynhanh", description="Default Viettel AI voice (hn-quynhanh, hcm-diemmy...).")
    speed: float = Field(1.0, ge=0.7, le=1.3, description="Viettel AI reading speed, 0.7 to 1.3.")
    without_filter: bool = Field(
        False, description="Ask Viettel AI to skip its quality filter (faster, rougher sound)."
    )


class ZaloOptions(CloudOptions):
    url: str = Field("https://api.zalo.ai/v1/tts/synthesize", description="Zalo AI text-to-speech endpoint.")
    voice: str = Field("2", description="Default Zalo AI speaker id (1-6; 2 is a northern female voice).")
    speed: float = Field(1.0, ge=0.8, le=1.2, description="Zalo AI reading speed, 0.8 to 1.2.")
    poll_timeout_s: float = Field(
        20.0, gt=0, description="Give up when the audio link Zalo AI returned is not ready within this time."
    )


class GoogleCloudOptions(CloudOptions):
    url: str = Field(
        "https://texttospeech.googleapis.com/v1/text:synthesize",
        description="Google Cloud Text-to-Speech v1 synthesize endpoint.",
    )
    access_token: SecretStr | None = Field(
        None,
        description="An OAuth access token sent as Bearer instead of the API key (it expires after an "
        "hour: refresh it outside, or use api_key).",
    )
    voice: str = Field("vi-VN-Wavenet-A", description="Default Google voice name (vi-VN-...).")
    speaking_rate: float = Field(1.0, ge=0.25, le=4.0, description="Google speaking rate, 0.25 to 4.0.")


class AzureOptions(CloudOptions):
    region: str = Field("southeastasia", description="Azure region of the Speech resource.")
    url: str | None = Field(
        None,
        description="Endpoint; default https://<region>.tts.speech.microsoft.com/cognitiveservices/v1.",
    )
    voice: str = Field(
        "vi-VN-HoaiMyNeural", description="Default Azure voice (vi-VN-HoaiMyNeural, vi-VN-NamMinhNeural)."
    )
    output_format: str = Field(
        "audio-24khz-48kbitrate-mono-mp3", description="X-Microsoft-OutputFormat (an MP3 format)."
    )
    rate_percent: int = Field(
        0, ge=-50, le=100, description="Reading speed change in percent (SSML prosody)."
    )


class TtsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order: list[str] = Field(
        default_factory=lambda: ["gtts", "piper", "espeak-ng"],
        description="Engines tried in order; the first that succeeds is used and recorded.",
    )
    call_timeout_s: float = Field(
        45.0,
        gt=0,
        description="Hard deadline of one engine call (one sentence); a hung engine is abandoned and "
        "the next engine is used.",
    )
    cooldown_s: float = Field(
        300.0,
        ge=0,
        description="After an engine fails, skip it for this long while another engine can speak "
        "(circuit breaker, so gTTS without network is not waited on for every render).",
    )
    rate_limit_cooldown_s: float = Field(
        60.0,
        ge=0,
        description="Skip an engine this long after the provider throttled us (HTTP 429), unless it "
        "said how long to wait.",
    )
    auth_cooldown_s: float = Field(
        3600.0,
        ge=0,
        description="Skip an engine this long after the provider refused its key (fix the key, then "
        "restart to retry at once).",
    )
    quota_cooldown_s: float = Field(
        3600.0, ge=0, description="Skip an engine this long after the provider said its quota is spent."
    )
    gtts: GttsOptions = Field(default_factory=GttsOptions)
    espeak: EspeakOptions = Field(default_factory=EspeakOptions)
    piper: PiperOptions = Field(default_factory=PiperOptions)
    fpt: FptOptions = Field(default_factory=FptOptions)
    viettel: ViettelOptions = Field(default_factory=ViettelOptions)
    zalo: ZaloOptions = Field(default_factory=ZaloOptions)
    google_cloud: GoogleCloudOptions = Field(default_factory=GoogleCloudOptions)
    azure: AzureOptions = Field(default_factory=AzureOptions)

    def daily_caps(self) -> dict[str, int]:
        """Engine name -> daily character cap, for the engines that have one."""
        caps = {}
        for name in CLOUD_ENGINES:
            cap = getattr(self, name.replace("-", "_")).daily_char_cap
            if cap is not None:
                caps[name] = cap
        return caps

    @field_validator("order")
    @classmethod
    def _known_engines(cls, order: list[str]) -> list[str]:
        unknown = [name for name in order if name not in ENGINE_NAMES]
        if unknown:
            raise ValueError(f"unknown engine(s) {unknown}; known: {list(ENGINE_NAMES)}")
        if not order:
            raise ValueError("at least one engine is needed")
        if len(set(order)) != len(order):
            raise ValueError("an engine is listed twice")
        return order

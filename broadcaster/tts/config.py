"""Settings of the speech engines."""

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

ENGINE_NAMES = ("gtts", "piper", "espeak-ng")


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
    gtts: GttsOptions = Field(default_factory=GttsOptions)
    espeak: EspeakOptions = Field(default_factory=EspeakOptions)
    piper: PiperOptions = Field(default_factory=PiperOptions)

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

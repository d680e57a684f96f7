"""Settings of broadcast rendering and the audio store."""

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Sample rates LAME encodes (MPEG-1/2/2.5 layer III).
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


class AudioConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cache_dir: Path | None = Field(None, description="Audio store folder; default <instance>/audio_cache.")
    cache_max_bytes: int = Field(
        2 * 1024**3,
        ge=1024 * 1024,
        description="Size bound of the audio store; least recently used audio is evicted beyond it "
        "(pinned audio of scheduled bulletins never is).",
    )
    bitrate_kbps: int = Field(48, ge=16, le=320, description="MP3 bitrate of broadcast audio.")
    sample_rate: int = Field(
        24_000, description=f"Sample rate of broadcast audio; one of {', '.join(map(str, MP3_RATES))}."
    )
    target_lufs: float = Field(
        -16.0, ge=-36, le=-8, description="Integrated loudness of broadcast audio (LUFS)."
    )
    true_peak_dbtp: float = Field(
        -1.5, ge=-9, le=0, description="True-peak ceiling of broadcast audio (dBTP)."
    )
    highpass_hz: int = Field(
        100, ge=0, le=400, description="High-pass filter; horn loudspeakers reproduce nothing lower. 0: off."
    )
    clause_pause_ms: int = Field(250, ge=0, le=3000, description="Pause after , ; and :")
    sentence_pause_ms: int = Field(600, ge=0, le=5000, description="Pause after . ! and ?")
    paragraph_pause_ms: int = Field(1000, ge=0, le=10_000, description="Pause at a paragraph break.")
    edge_silence_ms: int = Field(300, ge=0, le=5000, description="Silence at the very start and end.")
    chime: bool = Field(True, description="Play a generated chime before and after the announcement.")
    chime_gap_ms: int = Field(500, ge=0, le=5000, description="Silence between chime and speech.")
    repeat_connector: str = Field(
        "Xin nhắc lại.", description="Spoken between repeats of a notice; empty: a silent gap only."
    )
    repeat_gap_ms: int = Field(1200, ge=0, le=10_000, description="Silence around the repeat connector.")
    max_repeat: int = Field(5, ge=1, le=20, description="Largest 'read N times' accepted.")
    max_recording_s: float = Field(
        1800.0, gt=0, description="Longest uploaded recording accepted, in seconds."
    )
    max_upload_bytes: int = Field(
        100 * 1024**2, gt=0, description="Largest uploaded recording accepted, in bytes."
    )

    @field_validator("sample_rate")
    @classmethod
    def _mp3_rate(cls, rate: int) -> int:
        if rate not in MP3_RATES:
            raise ValueError(f"MP3 cannot carry {rate} Hz; use one of {', '.join(map(str, MP3_RATES))}")
        return rate

"""Settings of broadcast rendering and the audio store."""

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class AudioConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cache_dir: Path | None = Field(None, description="Audio store folder; default <instance>/audio_cache.")
    bitrate_kbps: int = Field(48, ge=16, le=320, description="MP3 bitrate of broadcast audio.")

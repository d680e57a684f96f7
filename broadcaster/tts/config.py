"""Settings of the speech engines."""

from pydantic import BaseModel, ConfigDict, Field


class TtsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order: list[str] = Field(
        default_factory=lambda: ["gtts", "piper", "espeak-ng"],
        description="Engines tried in order; the first that succeeds is used and recorded.",
    )

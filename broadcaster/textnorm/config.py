"""Settings of the text normalizer."""

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class TextnormConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_chars: int = Field(20_000, gt=0, description="Longest announcement accepted, in characters.")
    lexicon_files: list[Path] = Field(
        default_factory=list,
        description="Extra abbreviation/unit files (same format as the shipped data files) read after them.",
    )

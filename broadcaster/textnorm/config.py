"""Settings of the text normalizer."""

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator


class TextnormConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_chars: int = Field(20_000, gt=0, description="Longest announcement accepted, in characters.")
    lexicon_files: list[Path] = Field(
        default_factory=list,
        description=(
            "Extra vocabulary files (same format as the shipped data files: term<TAB>reading[<TAB>kind]) "
            "read after them, in order; a later entry for the same term wins."
        ),
    )

    @field_validator("lexicon_files")
    @classmethod
    def _files_are_readable_vocabularies(cls, paths: list[Path]) -> list[Path]:
        # Checked once at start-up, so a typo in a deployment's file is reported with its line
        # number instead of failing the first announcement.
        from broadcaster.textnorm.lexicon import Lexicon, LexiconError

        for path in paths:
            try:
                Lexicon().load_file(path)
            except LexiconError as exc:
                raise ValueError(str(exc)) from exc
        return paths

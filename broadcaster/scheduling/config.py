"""Settings of the scheduler."""

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class SchedulingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    misfire_grace_s: int = Field(
        900,
        ge=0,
        description="A bulletin missed while the controller was down still airs within this many seconds.",
    )
    schedules_dir: Path | None = Field(
        None,
        description="Folder of *.yaml bulletin definitions; default: ./schedules when it exists.",
    )
    render_ahead: bool = Field(
        True, description="Render a scheduled bulletin's audio when it is scheduled, not at air time."
    )
    lease_s: int = Field(
        30,
        ge=5,
        description="Non-SQLite databases: how long the scheduler's lease row lasts without renewal.",
    )
    max_upcoming: int = Field(
        500,
        ge=1,
        description="Most airings one schedule contributes to a week view (cron '* * * * *' guard).",
    )

"""Settings of the scheduler."""

from pydantic import BaseModel, ConfigDict, Field


class SchedulingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    misfire_grace_s: int = Field(
        900, ge=0, description="A bulletin missed while the controller was down still airs within this many seconds."
    )

"""Settings of the web interface and the REST API."""

from pydantic import BaseModel, ConfigDict, Field


class WebConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    approval_required: bool = Field(True, description="An editor's normal announcement airs only once approved.")

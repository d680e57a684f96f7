"""Settings of the fleet monitor (live state, health ingest, alerts)."""

from pydantic import BaseModel, ConfigDict, Field


class FleetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    health_interval_s: float = Field(
        30.0, gt=0, description="Interval at which nodes send health; must match the agents' setting."
    )
    stale_factor: float = Field(
        3.0,
        ge=1.5,
        description="A node silent for this many health intervals is shown offline (stale alert).",
    )
    health_batch_size: int = Field(
        500, ge=1, description="Health samples written per database commit (1 = one commit per message)."
    )
    health_batch_interval_s: float = Field(
        1.0, gt=0, description="Longest time a health sample waits before its batch is committed."
    )
    health_retention_days: float = Field(
        30.0, gt=0, description="Health samples older than this are deleted."
    )
    store_health: bool = Field(True, description="Keep health samples in the database (history, reports).")

    @property
    def stale_after_s(self) -> float:
        return self.health_interval_s * self.stale_factor

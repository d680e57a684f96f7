"""Settings of the fleet monitor (live state, health ingest, alerts)."""

from pydantic import BaseModel, ConfigDict, Field


class AlertThresholds(BaseModel):
    """When a cluster's health or receipts raise an alert. ``None`` switches that alert off."""

    model_config = ConfigDict(extra="forbid")

    supply_v_min: float | None = Field(
        11.5,
        gt=0,
        description="Low-voltage alert when the cluster reports a supply below this many volts "
        "(a 12 V battery at about a fifth of its charge).",
    )
    supply_v_margin: float = Field(
        0.3,
        ge=0,
        description="The low-voltage alert clears only once the supply is this many volts above the "
        "threshold again, so a supply hovering at the threshold does not raise and clear it all day.",
    )
    output_dbfs_min: float | None = Field(
        -50.0,
        le=0,
        description="No-sound alert when a health report taken while playing measures the output "
        "below this level (dBFS); a later report above it, while playing, clears it.",
    )
    receipt_rms_dbfs_min: float | None = Field(
        -50.0,
        le=0,
        description="No-sound alert when a 'done' receipt reports the played level below this (dBFS); "
        "ignored while the cluster's volume is 0 (silence chosen by an officer).",
    )
    disk_free_min_bytes: int | None = Field(
        200 * 1024 * 1024,
        ge=0,
        description="Disk-low alert when the cluster reports less free space than this; it clears "
        "above 1.1 times the threshold.",
    )


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
    thresholds: AlertThresholds = Field(
        default_factory=AlertThresholds,
        description="Levels at which health and receipts raise alerts (dashboard and notifications).",
    )

    @property
    def stale_after_s(self) -> float:
        return self.health_interval_s * self.stale_factor

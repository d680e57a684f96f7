"""Settings of the broadcast lifecycle (arbitration, delivery, validity)."""

from pydantic import BaseModel, ConfigDict, Field


class BroadcastsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lead_s: float = Field(
        2.0,
        gt=0,
        le=30,
        description="A play command starts this far in the future so every cluster starts together.",
    )
    emergency_lead_s: float = Field(
        0.8,
        gt=0,
        le=10,
        description="Lead of an emergency: short, nodes interrupt what plays when it starts.",
    )
    emergency_lead_floor_s: float = Field(
        0.3,
        gt=0,
        le=10,
        description="Shortest emergency lead: the lead is derived from the measured delivery time of the "
        "clusters targeted (round trips, earlier deliveries), never below this; "
        "emergency_lead_s stands in for a cluster never measured.",
    )
    lead_per_1000_s: float = Field(
        3.0,
        ge=0,
        le=60,
        description="Extra lead per 1,000 clusters of one dispatch (command fan-out and audio fetch).",
    )
    gap_s: float = Field(1.0, ge=0, le=60, description="Silence between two items on one cluster.")
    normal_valid_s: float = Field(
        3600,
        gt=0,
        description="A normal or priority item not aired within this time of its due time is missed.",
    )
    emergency_valid_s: float = Field(
        1800, gt=0, description="A cluster reconnecting within this time of an emergency still gets it."
    )
    requeue_preempted: bool = Field(
        True,
        description="Re-air an item interrupted by an emergency from the start once the cluster is free.",
    )
    max_requeues: int = Field(1, ge=0, le=5, description="How often one item may be re-aired on one cluster.")
    receipt_grace_s: float = Field(
        30,
        gt=0,
        description="A cluster silent this long after an item's planned end gets a 'no receipt' failure.",
    )
    audio_dedupe_s: float = Field(
        0.5,
        ge=0,
        description="Requests for the same audio chunk within this window are served by one publish.",
    )
    render_workers: int = Field(2, ge=1, le=8, description="Parallel renders of normal and priority items.")
    volume: int | None = Field(
        None, ge=0, le=100, description="Volume sent with play commands (None: node's own)."
    )
    max_repeat: int = Field(5, ge=1, le=20, description="Highest 'repeat N times' accepted.")
    stream_emergencies: bool = Field(
        True,
        description="An emergency whose audio is not stored yet starts playing as soon as its first part "
        "is synthesized (streamed live to the clusters, the rest following in order) instead of "
        "waiting for the whole render; the whole recording is stored afterwards.",
    )

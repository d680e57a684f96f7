"""Settings of relays and live speech (the ``live`` section)."""

from pydantic import BaseModel, ConfigDict, Field, model_validator

# A 4G budget per cluster: frames (4-bit ADPCM) plus framing must stay within this.
MAX_KBPS = 64


class LiveConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sample_rate: int = Field(
        12_000,
        ge=8_000,
        le=15_000,
        description="Sample rate of live frames (Hz). 4-bit ADPCM: 12 kHz is 48 kbps per cluster; horn "
        "loudspeakers reproduce little above 5-6 kHz.",
    )
    frame_s: float = Field(0.25, ge=0.05, le=1.0, description="Length of one frame on the wire (s).")
    relay_delay_s: float = Field(
        2.0,
        ge=0.3,
        le=10,
        description="Playout delay of relays: a frame sounds this long after the controller made it "
        "(room for 4G jitter).",
    )
    live_delay_s: float = Field(
        0.6,
        ge=0.2,
        le=5,
        description="Playout delay of live speech (kept short: the speaker hears the horns).",
    )
    stall_s: float = Field(
        5.0,
        ge=1,
        le=60,
        description="A relay source silent this long is reconnected (the gap is logged, an alert raised); "
        "until then silence is played.",
    )
    retry_min_s: float = Field(1.0, ge=0.1, le=60, description="First wait before reconnecting a source.")
    retry_max_s: float = Field(30.0, ge=1, le=600, description="Longest wait between reconnections.")
    connect_timeout_s: float = Field(
        10.0, ge=1, le=60, description="A source that gives no audio within this is refused with a reason."
    )
    min_speed: float = Field(
        0.8,
        gt=0,
        le=1,
        description="A source that delivers less audio than this fraction of real time (over its first "
        "seconds) is too slow for the link and is refused.",
    )
    live_idle_s: float = Field(
        4.0, ge=1, le=60, description="Live speech ends by itself when the browser sends nothing this long."
    )
    live_max_s: float = Field(3600.0, ge=60, le=4 * 3600, description="Longest live speech.")
    relay_max_s: float = Field(6 * 3600.0, ge=60, le=24 * 3600, description="Longest relay.")

    @model_validator(mode="after")
    def _budget(self) -> "LiveConfig":
        # 4 bits a sample + 29 header bytes and ~40 bytes of MQTT framing per frame.
        kbps = (self.sample_rate * 4 + (29 + 40) * 8 / self.frame_s) / 1000
        if kbps > MAX_KBPS:
            raise ValueError(f"live frames would need {kbps:.1f} kbps per cluster; at most {MAX_KBPS}")
        return self

    def kbps(self) -> float:
        return (self.sample_rate * 4 + (29 + 40) * 8 / self.frame_s) / 1000

"""Settings of the link between levels and of CAP feeds (section ``federation``).

The upstream's address and the unit token are not settings: ``broadcaster upstream set URL --token
TOKEN`` keeps them in the database (so a running controller picks them up), and downstream units
are added with ``broadcaster downstream add NAME``. Everything here tunes how the link behaves.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from broadcaster.domain import Tier

CAP_SEVERITIES = ("Extreme", "Severe", "Moderate", "Minor", "Unknown")
CAP_URGENCIES = ("Immediate", "Expected", "Future", "Past", "Unknown")


class CapRule(BaseModel):
    """How a CAP alert becomes an item. The first rule whose every given condition matches wins;
    an alert no rule matches is recorded and not aired."""

    model_config = ConfigDict(extra="forbid")

    source: str | None = Field(None, description="Only alerts of this CAP source (its name); unset: any.")
    severity: list[str] | None = Field(
        None, description="CAP severities that match (Extreme, Severe, Moderate, Minor, Unknown)."
    )
    urgency: list[str] | None = Field(
        None, description="CAP urgencies that match (Immediate, Expected, Future, Past, Unknown)."
    )
    event: list[str] | None = Field(
        None, description="Words of the event that match (case and accents ignored), e.g. 'bão'."
    )
    area: list[str] | None = Field(
        None, description="Words of an areaDesc or geocode value that match, e.g. 'Quảng Nam'."
    )
    tier: Tier = Field(Tier.EMERGENCY, description="Tier of the item: normal, priority or emergency.")
    targets: list[str] = Field(default_factory=lambda: ["all"], description="Where it airs.")
    approval: bool = Field(False, description="The item waits for an approver before it airs.")
    repeat: int = Field(1, ge=1, le=5, description="How many times the text is read.")

    @field_validator("severity")
    @classmethod
    def _severity(cls, value: list[str] | None) -> list[str] | None:
        return _known(value, CAP_SEVERITIES, "severity")

    @field_validator("urgency")
    @classmethod
    def _urgency(cls, value: list[str] | None) -> list[str] | None:
        return _known(value, CAP_URGENCIES, "urgency")


def _known(value: list[str] | None, allowed: tuple[str, ...], what: str) -> list[str] | None:
    if value is not None:
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            raise ValueError(f"unknown CAP {what} {unknown}; known: {', '.join(allowed)}")
    return value


class CapSource(BaseModel):
    """One CAP 1.2 feed: polled at ``url`` (an alert or an Atom feed of alerts) and/or pushed to
    ``POST /federation/v1/cap/<name>`` with the webhook token."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,40}$", description="Short name (used in URLs).")
    url: str | None = Field(None, description="http(s) URL polled for alerts; unset: webhook only.")
    interval_s: float = Field(60.0, ge=5, le=86400, description="Seconds between two polls.")
    timeout_s: float = Field(15.0, gt=0, le=120, description="Timeout of one poll.")
    webhook_token: SecretStr | None = Field(
        None, description="Bearer token a pushing server must send; unset: no webhook."
    )
    webhook_token_env: str | None = Field(
        None, description="Name of an environment variable holding the webhook token instead."
    )

    @model_validator(mode="after")
    def _check(self) -> CapSource:
        if self.url is not None:
            parts = urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("url must be an http:// or https:// URL with a host")
        if self.webhook_token is not None and self.webhook_token_env is not None:
            raise ValueError("give webhook_token or webhook_token_env, not both")
        return self

    def resolve_token(self, environ: Mapping[str, str] | None = None) -> str | None:
        if self.webhook_token is not None:
            return self.webhook_token.get_secret_value()
        if self.webhook_token_env is None:
            return None
        environ = os.environ if environ is None else environ
        return environ.get(self.webhook_token_env) or None


class CapConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sources: list[CapSource] = Field(
        default_factory=list, description="CAP 1.2 feeds (see docs/federation.md, 'CAP alerts')."
    )
    rules: list[CapRule] = Field(
        default_factory=list, description="Rules turning alerts into items, first match wins."
    )
    max_bytes: int = Field(
        1_000_000, ge=10_000, le=20_000_000, description="Largest CAP document accepted (bytes)."
    )
    language: str = Field("vi", description="Preferred info language (vi matches vi-VN).")


class FederationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    poll_wait_s: float = Field(
        20.0, ge=0, le=60, description="How long the upper level may hold a lower level's poll open."
    )
    timeout_s: float = Field(15.0, gt=0, le=120, description="Timeout of one request beyond the poll wait.")
    max_held_polls: int = Field(
        16,
        ge=0,
        le=1000,
        description="Polls held open at once (the web server gets as many extra threads); beyond it a "
        "unit is answered at once and polls again after poll_after_s.",
    )
    poll_after_s: float = Field(
        2.0, gt=0, le=60, description="When a poll could not be held: how soon the unit polls again."
    )
    retry_min_s: float = Field(1.0, gt=0, le=60, description="First wait after a failed exchange.")
    retry_max_s: float = Field(
        60.0, gt=0, le=3600, description="Longest wait between two attempts (the wait doubles)."
    )
    replay_window_s: float = Field(
        300.0, ge=10, le=3600, description="A message older or newer than this (clock) is refused."
    )
    report_queue_max: int = Field(
        20_000, ge=100, le=1_000_000, description="Reports kept while the link is down; then the oldest go."
    )
    reports_per_message: int = Field(200, ge=1, le=1000, description="Reports sent in one message.")
    clusters_interval_s: float = Field(
        60.0, ge=1, description="Clusters are reported at least this often (and at once on a change)."
    )
    minutes_interval_s: float = Field(300.0, ge=1, description="Minutes aired are reported this often.")
    collect_interval_s: float = Field(
        1.0, gt=0, le=60, description="How often the proof of play of upstream items is looked at."
    )
    clash_default: Literal["upstream", "local"] = Field(
        "upstream",
        description="When an upstream priority item meets the commune's own and nobody answers: which first.",
    )
    clash_timeout_s: float = Field(
        120.0, ge=0, le=3600, description="How long the officer has to answer a priority clash."
    )
    normal_valid_h: float = Field(
        72.0, gt=0, le=24 * 30, description="How long a normal bulletin from above stays in the inbox."
    )
    max_message_bytes: int = Field(
        2_000_000, ge=10_000, le=50_000_000, description="Largest message accepted from a unit (bytes)."
    )
    max_audio_bytes: int = Field(
        50_000_000, ge=100_000, description="Largest bulletin audio file fetched from above (bytes)."
    )
    verify_tls: bool = Field(True, description="Check the upstream's https certificate.")
    ca_file: str | None = Field(
        None, description="PEM file of the CA that signed the upstream's certificate."
    )
    cap: CapConfig = Field(default_factory=CapConfig)


__all__ = ["CAP_SEVERITIES", "CAP_URGENCIES", "CapConfig", "CapRule", "CapSource", "FederationConfig"]

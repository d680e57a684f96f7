"""Settings of the alert notifier (section ``alerts``): the channels, the rate limit, the delays.

The levels at which health raises an alert are the fleet's (``fleet.thresholds``): they decide what
the dashboard shows as well. Passwords, secrets, header values and webhook URLs (a bot URL holds
its token) are ``SecretStr``: printed as ``**********`` by ``broadcaster settings`` and never logged.
A secret can also be read from an environment variable named in ``password_env``/``secret_env``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from broadcaster.fleet.alerting import ALERT_KINDS, SOURCE_ALERT_KINDS


class AlertsConfigError(ValueError):
    """A channel that cannot be built (an environment variable named for a secret is not set)."""


def _check_kinds(kinds: list[str] | None) -> list[str] | None:
    if kinds is not None:
        known = [*ALERT_KINDS, *sorted(SOURCE_ALERT_KINDS)]
        unknown = sorted(set(kinds) - set(known))
        if unknown:
            raise ValueError(f"unknown alert kinds {unknown}; known: {', '.join(known)}")
    return kinds


def _no_line_breaks(value: str, what: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError(f"{what} must not contain line breaks")
    return value


class _Channel(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str | None = Field(
        None, description="Label of the channel in logs; default from its type and host."
    )
    kinds: list[str] | None = Field(
        None, description="Send only these alert kinds (offline, stale, ...); unset: every kind."
    )
    timeout_s: float = Field(15.0, gt=0, le=300, description="Timeout of one delivery attempt.")
    ca_file: Path | None = Field(
        None, description="PEM file of the certificate authority to trust (a self-signed relay)."
    )
    verify_tls: bool = Field(True, description="Check the server's certificate and name.")

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, kinds: list[str] | None) -> list[str] | None:
        return _check_kinds(kinds)


class SmtpChannelConfig(_Channel):
    """E-mail through an SMTP server (stdlib smtplib)."""

    type: Literal["smtp"] = Field("smtp", description="This channel sends e-mail.")
    host: str = Field(description="SMTP server name or address.")
    port: int | None = Field(
        None, ge=1, le=65535, description="Port; default 587 (starttls), 465 (ssl) or 25 (plain)."
    )
    security: Literal["starttls", "ssl", "plain"] = Field(
        "starttls", description="starttls: upgrade on connect; ssl: TLS from the start; plain: none."
    )
    username: str | None = Field(None, description="Login; unset: no authentication.")
    password: SecretStr | None = Field(None, description="Password of the login.")
    password_env: str | None = Field(
        None, description="Name of an environment variable holding the password (instead of password)."
    )
    from_: str = Field(alias="from", description="Sender address, e.g. 'Loa xã <loa@xa.gov.vn>'.")
    to: list[str] = Field(min_length=1, description="Recipient addresses.")

    @model_validator(mode="after")
    def _check(self) -> SmtpChannelConfig:
        if self.password is not None and self.password_env is not None:
            raise ValueError("give password or password_env, not both")
        _no_line_breaks(self.from_, "from")
        for address in self.to:
            _no_line_breaks(address, "to")
        return self

    @property
    def effective_port(self) -> int:
        return self.port or {"starttls": 587, "ssl": 465, "plain": 25}[self.security]

    def resolve_password(self, environ: Mapping[str, str] | None = None) -> str | None:
        return _resolve(self.password, self.password_env, environ)


class WebhookChannelConfig(_Channel):
    """An HTTP POST of one JSON object per message (a Zalo OA or Telegram bot relay)."""

    type: Literal["webhook"] = Field("webhook", description="This channel posts JSON.")
    url: SecretStr = Field(
        description="http(s) URL the JSON is posted to (kept secret: it may hold a token)."
    )
    headers: dict[str, SecretStr] = Field(default_factory=dict, description="Extra request headers.")
    secret: SecretStr | None = Field(None, description="Sent in secret_header with every request.")
    secret_env: str | None = Field(
        None, description="Name of an environment variable holding the secret (instead of secret)."
    )
    secret_header: str = Field(
        "Authorization",
        description="Header carrying the secret: 'Authorization' sends 'Bearer <secret>', any other "
        "header (e.g. X-Telegram-Bot-Api-Secret-Token) the secret as it is.",
    )
    fields: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="Fixed fields added to every JSON object (e.g. chat_id for a bot's sendMessage).",
    )

    @model_validator(mode="after")
    def _check(self) -> WebhookChannelConfig:
        url = self.url.get_secret_value()
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be an http:// or https:// URL with a host")
        if self.secret is not None and self.secret_env is not None:
            raise ValueError("give secret or secret_env, not both")
        for name, value in self.headers.items():
            _no_line_breaks(name, "header name")
            _no_line_breaks(value.get_secret_value(), f"header {name}")
        if self.secret is not None:
            _no_line_breaks(self.secret.get_secret_value(), "secret")
        return self

    def resolve_secret(self, environ: Mapping[str, str] | None = None) -> str | None:
        return _resolve(self.secret, self.secret_env, environ)


def _resolve(value: SecretStr | None, env_name: str | None, environ: Mapping[str, str] | None) -> str | None:
    if value is not None:
        return value.get_secret_value()
    if env_name is None:
        return None
    environ = os.environ if environ is None else environ
    if env_name not in environ:
        raise AlertsConfigError(f"environment variable {env_name} (an alert channel's secret) is not set")
    return environ[env_name]


ChannelConfig = Annotated[SmtpChannelConfig | WebhookChannelConfig, Field(discriminator="type")]


class AlertsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instance_name: str = Field(
        "", description="Name of the commune, at the head of every message (e.g. 'Xã Hòa Bình')."
    )
    dashboard_url: str | None = Field(
        None, description="Address of the controller's dashboard, added at the end of every message."
    )
    channels: list[ChannelConfig] = Field(
        default_factory=list,
        description="Where fleet alerts are sent: a list of smtp and webhook channels (see below the table).",
    )
    offline_delay_s: float = Field(
        120.0,
        ge=0,
        description="An offline or stale alert is sent only if it lasts this long (a short blip pages nobody).",
    )
    rate_limit_count: int = Field(
        10, ge=1, description="At most this many messages per channel in each rate-limit window."
    )
    rate_limit_window_s: float = Field(
        600.0,
        gt=0,
        description="Rate-limit window; alerts beyond the limit are sent as one digest when it ends.",
    )
    digest_max_lines: int = Field(
        20, ge=1, le=1000, description="Alerts listed one by one in a digest; the rest are counted."
    )
    retries: int = Field(4, ge=0, le=20, description="Extra delivery attempts after a failed one.")
    retry_backoff_s: float = Field(
        5.0, gt=0, description="Wait before the first retry; doubles each time, at most 5 minutes."
    )


def channels_reference_markdown() -> str:
    """The keys of each channel type as Markdown tables (docs/configuration.md, "Alert channels")."""
    parts = []
    for model in (SmtpChannelConfig, WebhookChannelConfig):
        kind = model.model_fields["type"].default
        rows = [f"### `type: {kind}`", "", "| key | default | meaning |", "|---|---|---|"]
        for name, info in model.model_fields.items():
            if info.is_required():
                default = "required"
            else:
                value = info.default_factory() if info.default_factory is not None else info.default  # type: ignore[call-arg]
                default = f"`{value}`"
            description = (info.description or "").replace("|", "\\|")
            rows.append(f"| `{info.alias or name}` | {default} | {description} |")
        parts.append("\n".join(rows))
    return "\n\n".join(parts) + "\n"

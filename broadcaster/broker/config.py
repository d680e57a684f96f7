"""Settings of the managed broker's node listener (the ``broker`` section).

Only used when the controller runs its own Mosquitto (no ``mqtt_url``). The controller's own
listener is always on loopback; these settings are about the listener clusters connect to,
which is TLS only.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class BrokerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    listen: str = Field(
        "127.0.0.1",
        title="Node listener address",
        description="Address the clusters' TLS listener binds: an IP address of this machine, or "
        "0.0.0.0 (every IPv4 interface) / :: (every interface). Loopback by default: set it to reach "
        "real clusters.",
    )
    tls_port: int = Field(
        8883,
        ge=0,
        le=65535,
        title="Node listener port",
        description="TCP port of the clusters' TLS listener; 0: a free port chosen once and kept in "
        "the instance. On a loopback address a busy port is replaced by a free one (with a warning).",
    )
    public_host: str | None = Field(
        None,
        title="Name clusters use",
        description="Host name or address the clusters connect to (put in their URL and in the server "
        "certificate). Default: the listen address, or this machine's host name when listening on "
        "every interface.",
    )
    cert_file: Path | None = Field(
        None,
        title="Server certificate",
        description="An operator's certificate chain in PEM (e.g. Let's Encrypt fullchain.pem) for "
        "the node listener; unset: a local CA in the instance issues one and nodes pin that CA.",
    )
    key_file: Path | None = Field(
        None,
        title="Server key",
        description="The private key of cert_file in PEM (e.g. Let's Encrypt privkey.pem).",
    )

    @field_validator("listen")
    @classmethod
    def _ip_address(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_address(value.strip().strip("[]")))
        except ValueError:
            raise ValueError(f"not an IP address: {value!r} (use e.g. 0.0.0.0, ::, 127.0.0.1)") from None

    @field_validator("public_host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().strip("[]")
        if not value or (any(c in value for c in "/:@ ") and not _is_ip(value)):
            raise ValueError(f"not a host name or address: {value!r}")
        return value

    @model_validator(mode="after")
    def _cert_and_key(self) -> BrokerConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give both cert_file and key_file, or neither")
        return self


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True

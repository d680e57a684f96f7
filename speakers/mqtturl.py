"""``mqtt://user:pass@host:port`` URLs (stdlib only): shared by the agent and the controller."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field


class MqttUrlError(ValueError):
    """A malformed ``mqtt://`` URL."""


@dataclass(frozen=True)
class MqttUrl:
    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in logs or reprs
    tls: bool = False

    def with_credentials(self, username: str | None, password: str | None) -> MqttUrl:
        return MqttUrl(self.host, self.port, username, password, self.tls)

    def redacted(self) -> str:
        user = f"{self.username}:***@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


def parse_mqtt_url(url: str) -> MqttUrl:
    """``mqtt://user:pass@host:port`` (or ``mqtts://`` for TLS) -> :class:`MqttUrl`."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise MqttUrlError(f"MQTT URL must start with mqtt:// or mqtts://, got {url!r}")
    if not parsed.hostname:
        raise MqttUrlError(f"MQTT URL has no host: {url!r}")
    tls = parsed.scheme in ("mqtts", "ssl")
    try:
        port = parsed.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise MqttUrlError(f"bad port in MQTT URL {url!r}") from exc
    unquote = urllib.parse.unquote
    return MqttUrl(
        host=parsed.hostname,
        port=port,
        username=unquote(parsed.username) if parsed.username else None,
        password=unquote(parsed.password) if parsed.password else None,
        tls=tls,
    )

"""One typed settings object, validated once at start-up.

Sources, later wins: defaults < optional YAML file (``--config`` or ``BROADCASTER_CONFIG``)
< ``BROADCASTER_*`` environment variables < command-line flags. Each domain owns its own
section model (``tts``, ``audio``, ...); unknown keys are an error, so a typo in a config
file is reported instead of silently ignored.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from broadcaster.alerts.config import AlertsConfig
from broadcaster.audio.config import AudioConfig
from broadcaster.broadcasts.config import BroadcastsConfig
from broadcaster.broker.config import BrokerConfig
from broadcaster.federation.config import FederationConfig
from broadcaster.fleet.config import FleetConfig
from broadcaster.live.config import LiveConfig
from broadcaster.scheduling.config import SchedulingConfig
from broadcaster.textnorm.config import TextnormConfig
from broadcaster.tts.config import TtsConfig
from broadcaster.web.config import WebConfig
from speakers.yamlio import YamlError, deep_merge, parse_yaml

ENV_PREFIX = "BROADCASTER_"


class SettingsError(Exception):
    """A configuration problem, with a message meant for the operator."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instance: Path = Field(
        Path("instance"), description="Folder for the database, secrets, broker data, audio."
    )
    host: str = Field("127.0.0.1", description="Address the web server listens on.")
    port: int = Field(8080, ge=1, le=65535, description="Port of the web server.")
    db: str | None = Field(None, description="SQLAlchemy URL; default sqlite:///<instance>/broadcaster.db.")
    mqtt_url: str | None = Field(
        None, description="mqtt://user:pass@host:port of an external broker; unset: a managed Mosquitto."
    )
    mqtt_prefix: str = Field("loa", description="Topic prefix of the wire protocol.")
    timezone: str = Field("Asia/Ho_Chi_Minh", description="Time zone of schedules and quiet hours.")
    secret_key: str | None = Field(
        None, description="Flask secret; default: generated once into the instance."
    )
    demo: bool = Field(False, description="Also run nine simulated clusters in three zones.")
    textnorm: TextnormConfig = Field(default_factory=TextnormConfig)
    tts: TtsConfig = Field(default_factory=TtsConfig)
    audio: AudioConfig = Field(default_factory=AudioConfig)
    scheduling: SchedulingConfig = Field(default_factory=SchedulingConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    fleet: FleetConfig = Field(
        default_factory=FleetConfig,
        description="Fleet monitor; the demo uses a 10 s health interval unless set.",
    )
    broadcasts: BroadcastsConfig = Field(default_factory=BroadcastsConfig)
    live: LiveConfig = Field(
        default_factory=LiveConfig, description="Relays (tiếp sóng) and live speech from the browser."
    )
    alerts: AlertsConfig = Field(
        default_factory=AlertsConfig,
        description="Fleet alerts sent by e-mail and webhook (docs/configuration.md, 'Alert channels').",
    )
    broker: BrokerConfig = Field(
        default_factory=BrokerConfig,
        description="The managed broker's TLS listener for clusters (unused with mqtt_url).",
    )
    federation: FederationConfig = Field(
        default_factory=FederationConfig,
        description="The link to the district/province and CAP feeds (docs/federation.md).",
    )

    @property
    def db_url(self) -> str:
        return self.db or f"sqlite:///{(self.instance / 'broadcaster.db').resolve()}"

    @property
    def cache_dir(self) -> Path:
        return self.audio.cache_dir or self.instance / "audio_cache"

    def ensure_instance(self) -> None:
        """Create the instance folder and a persistent secret key."""
        self.instance.mkdir(parents=True, exist_ok=True)
        if self.secret_key is None:
            key_file = self.instance / "secret_key"
            if not key_file.exists():
                key_file.write_text(secrets.token_hex(32))
                key_file.chmod(0o600)
            self.secret_key = key_file.read_text().strip()


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """``BROADCASTER_PORT=9000`` -> ``{"port": "9000"}``; ``BROADCASTER_TTS__ORDER`` nests."""
    out: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX + "CONFIG":
            continue
        path = key[len(ENV_PREFIX) :].lower().split("__")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        leaf = path[-1]
        if value[:1] in "[{":
            try:
                node[leaf] = parse_yaml(value)
            except YamlError as exc:
                raise SettingsError(
                    f"environment variable {key}: not a valid YAML list or mapping: {exc}"
                ) from exc
        else:
            node[leaf] = value
    return out


def load_settings(
    overrides: dict[str, Any] | None = None,
    config_file: Path | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Build settings from file, environment and overrides (flags); raise SettingsError with
    a readable message on anything invalid."""
    environ = dict(os.environ if environ is None else environ)
    data: dict[str, Any] = {}
    config_file = config_file or (
        Path(environ[ENV_PREFIX + "CONFIG"]) if ENV_PREFIX + "CONFIG" in environ else None
    )
    if config_file is not None:
        try:
            loaded = parse_yaml(config_file.read_text(encoding="utf-8")) or {}
        except (OSError, YamlError) as exc:
            raise SettingsError(f"cannot read config file {config_file}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise SettingsError(f"config file {config_file} must hold a mapping")
        data = loaded
    data = deep_merge(data, _env_overrides(environ))
    data = deep_merge(data, {k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
        ]
        raise SettingsError("invalid settings:\n" + "\n".join(lines)) from exc


def reference_markdown() -> str:
    """Every setting with its default and description, as a Markdown table (docs/configuration.md)."""
    rows = ["| setting | environment variable | default | meaning |", "|---|---|---|---|"]

    def walk(model: type[BaseModel], path: tuple[str, ...]) -> None:
        for name, info in model.model_fields.items():
            annotation = info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, (*path, name))
                continue
            default = info.default_factory() if info.default_factory is not None else info.default  # type: ignore[call-arg]
            key = ".".join((*path, name))
            env = ENV_PREFIX + "__".join((*path, name)).upper()
            description = (info.description or "").replace("|", "\\|")
            rows.append(f"| `{key}` | `{env}` | `{default}` | {description} |")

    walk(Settings, ())
    return "\n".join(rows) + "\n"

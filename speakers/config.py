"""The agent's configuration: one YAML file validated once at start, plus command-line flags.

Unknown keys are errors (a typo is reported, not ignored). ``docs/agent.md`` documents every key.
The file written by ``broadcaster speaker enroll`` needs nothing else (flat keys)::

    id: loa-01
    zone: thon-1
    mqtt_url: mqtts://broker.xa-dong-tam.vn:8883
    password: "s3cr3t"
    ca_pem: |
      -----BEGIN CERTIFICATE-----
      ...
      -----END CERTIFICATE-----

``mqtt_url``, ``password``, ``ca_pem`` and ``cache_dir`` are the same settings as ``mqtt.url``,
``mqtt.password``, ``mqtt.ca_pem`` and ``audio.cache_dir`` (give one spelling, not both). A
hand-written file may tune the rest::

    player:
      kind: real
    amplifier:
      kind: gpioset
      chip: gpiochip0
      line: 17
      lead_s: 1.5
      idle_off_s: 60
    volume:
      default: 80
      quiet_hours: {start: "21:30", end: "05:30", volume: 40}
    audio:
      device: "plughw:CARD=Device"
      cache_max_mb: 512
    health:
      interval_s: 30
      signal_command: "mmcli -m 0 --signal-get"
    power:
      voltage_file: /sys/bus/iio/devices/iio:device0/in_voltage0_input
      voltage_scale: 0.001
      backup_command: "cat /run/ups/on_battery"
"""

from __future__ import annotations

import datetime as dt
import ssl
import zoneinfo
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from speakers.mqtturl import MqttUrl, MqttUrlError, parse_mqtt_url
from speakers.protocol import DEFAULT_PREFIX, DEFAULT_SESSION_EXPIRY_S, valid_id
from speakers.tls import TlsConfigError, client_context
from speakers.yamlio import YamlError, deep_merge, parse_yaml

# Flat keys of the enrollment file -> the nested setting they are (section, key).
FLAT_KEYS = {
    "mqtt_url": ("mqtt", "url"),
    "password": ("mqtt", "password"),
    "ca_pem": ("mqtt", "ca_pem"),
    "cache_dir": ("audio", "cache_dir"),
}


class ConfigError(Exception):
    """A configuration problem, with a message meant for the installer."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MqttConfig(_Section):
    url: str = Field(
        "mqtt://127.0.0.1:1883",
        description="mqtts://host:8883 (TLS) or mqtt://host:1883; user and password may be in the URL.",
    )
    password: str | None = Field(
        None, description="MQTT password (user name: the URL's, else the speaker id). Flat key: password."
    )
    ca_pem: str | None = Field(
        None,
        description="The broker's CA certificate (PEM, inline). Only this CA is trusted; without it the "
        "system's CAs are. Needs mqtts://. Flat key: ca_pem.",
    )
    prefix: str = Field(DEFAULT_PREFIX, description="Topic prefix of the wire protocol.")
    keepalive_s: int = Field(30, ge=2, le=3600, description="MQTT keepalive; the will fires after 1.5x this.")
    session_expiry_s: int = Field(
        DEFAULT_SESSION_EXPIRY_S,
        ge=0,
        description="How long the broker keeps the session while the node is away.",
    )
    reconnect_min_s: float = Field(1.0, gt=0, description="First reconnect delay; doubles up to the max.")
    reconnect_max_s: float = Field(60.0, gt=0, description="Longest reconnect delay.")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            parse_mqtt_url(value)
        except MqttUrlError as exc:
            raise ValueError(str(exc)) from exc
        return value

    @field_validator("ca_pem")
    @classmethod
    def _ca(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                client_context(value)
            except TlsConfigError as exc:
                raise ValueError(str(exc)) from exc
        return value

    @model_validator(mode="after")
    def _consistent(self) -> MqttConfig:
        url = parse_mqtt_url(self.url)
        if self.ca_pem and not url.tls:
            raise ValueError("ca_pem is set but the URL is not mqtts:// (TLS)")
        if self.password is not None and url.password is not None:
            raise ValueError("the password is both in the URL and in 'password': give it once")
        return self


class PlayerConfig(_Section):
    kind: Literal["real", "null", "file"] = Field(
        "real", description="real: sound card; null: simulate; file: write."
    )
    command: list[str] | None = Field(
        None,
        description="Output program reading s16le 48 kHz stereo PCM on stdin (default aplay, else ffplay).",
    )
    output_dir: Path | None = Field(None, description="Folder of the file player.")
    prepare_lead_s: float = Field(1.0, ge=0, le=30, description="Decode and open the output this early.")
    max_late_s: float = Field(
        300.0, ge=0, description="Without valid_until, a play more than this late after start_at is expired."
    )


class AmplifierConfig(_Section):
    kind: Literal["none", "gpio-sysfs", "gpioset"] = Field(
        "none", description="How the amplifier is switched."
    )
    chip: str = Field("gpiochip0", description="GPIO chip (gpioset).")
    line: int | None = Field(None, ge=0, description="GPIO line number.")
    active_low: bool = Field(False, description="The relay switches on at a low level.")
    sysfs_root: Path | None = Field(
        None, description="Root of the sysfs GPIO interface (default /sys/class/gpio)."
    )
    lead_s: float = Field(1.0, ge=0, le=30, description="Switch on this long before playback.")
    idle_off_s: float = Field(30.0, ge=0, description="Switch off after this long without playback.")

    @model_validator(mode="after")
    def _line_needed(self) -> AmplifierConfig:
        if self.kind != "none" and self.line is None:
            raise ValueError(f"amplifier kind {self.kind!r} needs 'line' (the GPIO line number)")
        return self


def _parse_hhmm(value: str) -> dt.time:
    try:
        hours, minutes = value.split(":")
        return dt.time(int(hours), int(minutes))
    except ValueError as exc:
        raise ValueError(f"time must be HH:MM, got {value!r}") from exc


class QuietHours(_Section):
    start: str = Field(..., description="HH:MM local time when quiet hours begin.")
    end: str = Field(..., description="HH:MM local time when they end (may be after midnight).")
    volume: int = Field(..., ge=0, le=100, description="Volume of normal and priority items in quiet hours.")

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        _parse_hhmm(value)
        return value

    def contains(self, moment: dt.time) -> bool:
        start, end = _parse_hhmm(self.start), _parse_hhmm(self.end)
        if start <= end:
            return start <= moment < end
        return moment >= start or moment < end


class VolumeConfig(_Section):
    default: int = Field(80, ge=0, le=100, description="Volume until the controller sets one.")
    quiet_hours: QuietHours | None = Field(None, description="Night volume; emergencies stay at full volume.")
    timezone: str = Field("Asia/Ho_Chi_Minh", description="Time zone of the quiet hours.")
    mixer_command: str | None = Field(
        None,
        description="Hardware volume command, '{volume}' is replaced (e.g. 'amixer -q sset Master {volume}%').",
    )

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


class AudioConfig(_Section):
    device: str | None = Field(
        None,
        description="ALSA device of the loudspeaker output (aplay -D), e.g. 'default' or "
        "'plughw:CARD=Device'; default: the system's default output.",
    )
    cache_dir: Path | None = Field(
        None, description="Audio cache folder (default ~/.cache/loa-agent/<id>). Flat key: cache_dir."
    )
    cache_max_mb: float = Field(
        512, gt=0, description="Cache size limit; least recently used files go first."
    )
    request_timeout_s: float = Field(
        3.0, gt=0, description="Ask again for missing chunks after this long idle."
    )
    request_backoff_max_s: float = Field(30.0, gt=0, description="Longest wait between two requests.")
    max_requests: int = Field(
        10,
        ge=1,
        description="Give up (event failed) after this many requests in a row that brought nothing new.",
    )


class TimeSyncConfig(_Section):
    samples: int = Field(
        5, ge=1, le=50, description="Samples per sync; the one with the shortest round trip wins."
    )
    interval_s: float = Field(300.0, gt=0, description="Resync period.")
    timeout_s: float = Field(2.0, gt=0, description="Wait this long for one answer.")
    retry_s: float = Field(5.0, gt=0, description="Retry this soon when a sync got no answer.")


class HealthConfig(_Section):
    interval_s: float = Field(30.0, gt=0, description="Seconds between health messages.")
    signal_command: str | None = Field(None, description="Command printing the signal strength in dBm.")
    signal_file: Path | None = Field(None, description="File holding the signal strength in dBm.")


class PowerConfig(_Section):
    voltage_file: Path | None = Field(None, description="File whose first number is the supply voltage.")
    voltage_command: str | None = Field(None, description="Command printing the supply voltage.")
    voltage_scale: float = Field(
        1.0, gt=0, description="Multiply the number read by this to get volts (0.001 for millivolts)."
    )
    backup_file: Path | None = Field(
        None,
        description="File saying whether the node runs on backup power (1/0, true/false, battery/mains).",
    )
    backup_command: str | None = Field(
        None, description="Command printing the backup-power state (as above)."
    )
    backup_invert: bool = Field(False, description="The file/command says 1 when on mains, 0 on backup.")


class LookaheadConfig(_Section):
    enabled: bool = Field(True, description="Hold scheduled bulletins ahead and air them when offline.")
    offline_after_s: float = Field(
        5.0,
        ge=0,
        description="Air a scheduled slot on its own only after the broker has been unreachable this long.",
    )
    refetch_s: float = Field(
        60.0, gt=0, description="Retry fetching a slot's audio this long after a failure."
    )


class AgentConfig(_Section):
    id: str = Field(..., description="Speaker id; also the MQTT user name and client id.")
    zone: str | None = Field(None, description="Zone (thôn) id; the node also follows its zone's commands.")
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    player: PlayerConfig = Field(default_factory=PlayerConfig)
    amplifier: AmplifierConfig = Field(default_factory=AmplifierConfig)
    volume: VolumeConfig = Field(default_factory=VolumeConfig)
    audio: AudioConfig = Field(default_factory=AudioConfig)
    time_sync: TimeSyncConfig = Field(default_factory=TimeSyncConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    power: PowerConfig = Field(default_factory=PowerConfig)
    lookahead: LookaheadConfig = Field(default_factory=LookaheadConfig)

    @model_validator(mode="before")
    @classmethod
    def _flat_keys(cls, data: Any) -> Any:
        return nest_flat_keys(data)

    @field_validator("id", "zone")
    @classmethod
    def _ident(cls, value: str | None) -> str | None:
        if value is not None and not valid_id(value):
            raise ValueError(f"{value!r} is not a valid id (letters, digits, '_', '.', '-'; at most 64)")
        return value

    def cache_dir(self) -> Path:
        return self.audio.cache_dir or Path.home() / ".cache" / "loa-agent" / self.id

    def broker_url(self) -> MqttUrl:
        """The broker URL with the node's credentials (user: the URL's, else the speaker id)."""
        url = parse_mqtt_url(self.mqtt.url)
        if self.mqtt.password is not None:
            url = url.with_credentials(url.username or self.id, self.mqtt.password)
        return url

    def tls_context(self) -> ssl.SSLContext | None:
        """The ``ssl.SSLContext`` of an ``mqtts://`` URL (None for plain MQTT)."""
        return client_context(self.mqtt.ca_pem) if self.broker_url().tls else None


def nest_flat_keys(data: Any) -> Any:
    """Move the enrollment file's flat keys (``mqtt_url``...) into their sections; a setting given
    both ways is an error."""
    if not isinstance(data, dict) or not FLAT_KEYS.keys() & data.keys():
        return data
    data = dict(data)
    for flat, (section, key) in FLAT_KEYS.items():
        if flat not in data:
            continue
        value = data.pop(flat)
        nested = data.get(section)
        nested = dict(nested) if isinstance(nested, dict) else {}
        if nested.get(key) is not None and value is not None:
            raise ValueError(f"'{flat}' and '{section}.{key}' are the same setting: give it once")
        if value is not None:
            nested[key] = value
        data[section] = nested
    return data


def _prune(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            value = _prune(value)
            if value:
                out[key] = value
        elif value is not None:
            out[key] = value
    return out


def format_validation_error(exc: ValidationError, flat_used: set[str] | frozenset[str] = frozenset()) -> str:
    """One line per problem; a setting given by its flat key (``mqtt_url``) is named that way."""
    flat_names = {f"{section}.{key}": flat for flat, (section, key) in FLAT_KEYS.items() if flat in flat_used}
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        if where in flat_names:
            where = flat_names[where]
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> AgentConfig:
    """Config file (optional) < overrides (flags; None values ignored). Raises ConfigError."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = parse_yaml(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, YamlError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of settings")
        data = loaded
    flat_used = data.keys() & FLAT_KEYS.keys()
    try:
        data = nest_flat_keys(data)  # so that a flag (mqtt.url, audio.cache_dir) overrides a flat key
    except ValueError as exc:
        raise ConfigError(f"invalid agent configuration in {path}:\n  {exc}") from exc
    data = deep_merge(data, _prune(overrides or {}))
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        source = f" in {path}" if path is not None else ""
        detail = format_validation_error(exc, flat_used)
        raise ConfigError(f"invalid agent configuration{source}:\n{detail}") from exc

"""``broadcaster serve --demo``: a living commune at once.

- Seeds three zones (Thôn Đông, Thôn Đoài, Thôn Trung) and nine clusters ``loa-01``..``loa-09``
  when they are absent, through the registry (so each gets MQTT credentials and the managed broker
  learns them). The clusters' clear passwords are kept in ``<instance>/demo/credentials.json``
  (mode 600) because the simulator must log in as them; a cluster whose password is unknown gets a
  new one.
- Creates an administrator account when there is no account at all, and prints its name and
  password once on the console.
- Runs the nine clusters in-process with the simulator (the real agent code, null player) against
  the broker, with clocks skewed by up to half a second (the time sync corrects it).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from broadcaster.services import Services

_LOGGER = logging.getLogger(__name__)

DEMO_ZONES = (("thon-1", "Thôn Đông"), ("thon-2", "Thôn Đoài"), ("thon-3", "Thôn Trung"))
DEMO_PLACES = (
    "Nhà văn hoá thôn",
    "Cổng làng",
    "Chợ",
    "Trường tiểu học",
    "Trạm y tế",
    "Sân bóng",
    "Đình làng",
    "Ngã ba đường liên xã",
    "Bến đò",
)
DEMO_SPEAKERS = tuple(
    (f"loa-{i:02d}", f"Cụm loa {i:02d} – {DEMO_PLACES[i - 1]}", DEMO_ZONES[(i - 1) // 3][0])
    for i in range(1, 10)
)
DEMO_ADMIN = "admin"
# The demo's clocks are off by up to this much; the agents' time sync makes them start together.
DEMO_CLOCK_SKEW_S = 0.5


def _credentials_file(services: Services) -> Path:
    return services.settings.instance / "demo" / "credentials.json"


def _load_credentials(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _save_credentials(path: Path, creds: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(creds, out, indent=2, sort_keys=True)
    os.replace(tmp, path)


def seed(services: Services) -> dict[str, str]:
    """Create the demo zones and clusters that are missing; return ``{speaker id: password}``."""
    from broadcaster.fleet.registry import verify_mosquitto_hash
    from broadcaster.models import Speaker

    registry = services.registry
    path = _credentials_file(services)
    creds = _load_credentials(path)
    zones = {z["id"] for z in registry.list_zones()}
    for zone_id, name in DEMO_ZONES:
        if zone_id not in zones:
            registry.create_zone(zone_id, name)
    speakers = {s["id"]: s for s in registry.list_speakers()}
    for speaker_id, name, zone in DEMO_SPEAKERS:
        if speaker_id not in speakers:
            _, password = registry.create_speaker(
                speaker_id, name, zone, DEMO_PLACES[int(speaker_id[-2:]) - 1]
            )
            creds[speaker_id] = password
            continue
        with services.sessions() as session:
            row = session.get(Speaker, speaker_id)
            hashed = row.mqtt_password_hash if row is not None else None
        known = creds.get(speaker_id)
        if not hashed or not known or not verify_mosquitto_hash(known, hashed):
            creds[speaker_id] = registry.reset_speaker_password(speaker_id)
    _save_credentials(path, creds)
    return {sid: creds[sid] for sid, _, _ in DEMO_SPEAKERS}


def ensure_admin(services: Services) -> tuple[str, str] | None:
    """Create the demo administrator when no account exists; print its credentials once."""
    try:
        from broadcaster.web.users import add_user, count_users
    except ImportError:  # pragma: no cover - the web layer ships with the controller
        return None
    if count_users(services.sessions) > 0:
        return None
    password = secrets.token_urlsafe(9)
    add_user(services.sessions, DEMO_ADMIN, password, "admin", display_name="Quản trị (demo)")
    print(
        f"Tài khoản quản trị demo / demo admin account: {DEMO_ADMIN}  mật khẩu / password: {password}",
        flush=True,
    )
    return DEMO_ADMIN, password


def start_simulator(services: Services, credentials: dict[str, str], **overrides: Any) -> Any:
    """Start the nine simulated clusters against the controller's broker; returns the Simulator."""
    from speakers.simulator import Simulator

    broker = services.broker
    if broker is not None:
        base = f"mqtt://{broker.host}:{broker.port}"
    else:
        url = urlsplit(services.settings.mqtt_url or "")
        base = f"mqtt://{url.hostname}:{url.port or 1883}"
        _LOGGER.warning("demo on an external broker: it must accept the demo clusters' credentials")
    interval = services.fleet_config.health_interval_s if services.fleet_config else 10.0
    options: dict[str, Any] = {
        "prefix": services.settings.mqtt_prefix,
        "credentials": lambda sid: (sid, credentials[sid]),
        "clock_skew_s": DEMO_CLOCK_SKEW_S,
        "health_interval_s": interval,
        "cache_root": services.settings.instance / "demo" / "cache",
        "nodes": {sid: zone for sid, _, zone in DEMO_SPEAKERS},
        **overrides,
    }
    sim = Simulator(base, len(DEMO_SPEAKERS), [z for z, _ in DEMO_ZONES], **options)
    sim.start_in_thread()
    _LOGGER.info("demo: %s simulated clusters running", len(DEMO_SPEAKERS))
    return sim


class Demo:
    """``serve --demo`` around the controller: ``prepare()`` before ``Services.start()`` (the
    managed broker must know the clusters' accounts when it starts), ``start()`` after it,
    ``stop()`` before ``Services.stop()``."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.credentials: dict[str, str] = {}
        self.admin: tuple[str, str] | None = None
        self.simulator: Any = None

    def prepare(self) -> None:
        self.credentials = seed(self.services)
        self.admin = ensure_admin(self.services)

    def start(self, **overrides: Any) -> Any:
        if not self.credentials:
            self.prepare()
        self.simulator = start_simulator(self.services, self.credentials, **overrides)
        return self.simulator

    def stop(self) -> None:
        simulator, self.simulator = self.simulator, None
        if simulator is not None:
            simulator.stop()


__all__ = ["DEMO_SPEAKERS", "DEMO_ZONES", "Demo", "ensure_admin", "seed", "start_simulator"]

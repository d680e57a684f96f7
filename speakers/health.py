"""Host readings for the health message: CPU temperature, free disk, signal strength, power.

Signal strength, supply voltage and backup-power state come from a configured file (sysfs, a
file a UPS daemon writes) or command (``mmcli``, a HAT's tool); the first number (or word) of
its output is the reading.

Each reading is None when the host cannot give it. Readings are cached for a few seconds, so a
simulator with thousands of nodes on one host reads ``/sys`` once per interval, not per node.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

_LOGGER = logging.getLogger(__name__)

_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")
_TTL_S = 5.0


def read_cpu_temp_c(root: Path = Path("/sys/class/thermal")) -> float | None:
    """Highest temperature of the thermal zones (millidegrees in sysfs), or None."""
    best: float | None = None
    try:
        zones = sorted(root.glob("thermal_zone*/temp"))
    except OSError:
        return None
    for zone in zones:
        try:
            value = int(zone.read_text().strip()) / 1000.0
        except (OSError, ValueError):
            continue
        if -40.0 < value < 150.0:
            best = value if best is None else max(best, value)
    return best


def read_disk_free(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def parse_signal(text: str) -> float | None:
    """First number in the text (e.g. ``-71`` from ``"rssi: -71 dBm"``)."""
    match = _NUMBER_RE.search(text)
    return float(match.group()) if match else None


_BACKUP_WORDS = {
    **dict.fromkeys(("1", "true", "yes", "on", "battery", "backup", "discharging"), True),
    **dict.fromkeys(("0", "false", "no", "off", "mains", "ac", "online", "charging", "full"), False),
}


def parse_backup(text: str, invert: bool = False) -> bool | None:
    """Backup-power state from the first word: ``1``/``true``/``battery``... -> True (on backup),
    ``0``/``false``/``mains``... -> False; anything else -> None. ``invert`` for a signal that
    says 1 on mains."""
    words = text.strip().lower().split()
    state = _BACKUP_WORDS.get(words[0]) if words else None
    return None if state is None else state != invert


@dataclass
class HostReadings:
    cpu_temp_c: float | None
    disk_free_bytes: int | None
    signal_dbm: float | None
    supply_v: float | None = None
    on_backup: bool | None = None


@dataclass(frozen=True)
class Source:
    """Where a reading comes from: a file, else a command (shell-like command line)."""

    file: Path | None = None
    command: str | None = None

    def __bool__(self) -> bool:
        return self.file is not None or bool(self.command)


async def read_source(source: Source, timeout: float = 5.0) -> str | None:
    """The text of ``source`` (None when unset, unreadable, failing or too slow)."""
    if source.file is not None:
        try:
            return Path(source.file).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            _LOGGER.debug("cannot read %s: %s", source.file, exc)
            return None
    if not source.command:
        return None
    try:
        proc = await asyncio.create_subprocess_exec(
            *shlex.split(source.command), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
    except (OSError, ValueError) as exc:
        _LOGGER.debug("command %r failed: %s", source.command, exc)
        return None
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None
    if proc.returncode != 0:
        return None
    return out.decode("utf-8", "replace")


class HostProbe:
    """Reads the host; ``signal_command`` (a shell-like command line printing dBm, e.g.
    ``mmcli -m 0 --signal-get``) or ``signal_file`` give the signal strength; ``voltage`` and
    ``backup`` the supply voltage (times ``voltage_scale``) and the backup-power state."""

    def __init__(
        self,
        disk_path: Path,
        *,
        signal_command: str | None = None,
        signal_file: Path | None = None,
        thermal_root: Path = Path("/sys/class/thermal"),
        voltage: Source = Source(),
        voltage_scale: float = 1.0,
        backup: Source = Source(),
        backup_invert: bool = False,
    ) -> None:
        self.disk_path = Path(disk_path)
        self.signal = Source(Path(signal_file) if signal_file else None, signal_command)
        self.thermal_root = thermal_root
        self.voltage = voltage
        self.voltage_scale = voltage_scale
        self.backup = backup
        self.backup_invert = backup_invert
        self._cached: HostReadings | None = None
        self._cached_at = 0.0
        self._lock = asyncio.Lock()

    async def read(self) -> HostReadings:
        async with self._lock:
            if self._cached is not None and time.monotonic() - self._cached_at < _TTL_S:
                return self._cached
            readings = HostReadings(
                cpu_temp_c=read_cpu_temp_c(self.thermal_root),
                disk_free_bytes=read_disk_free(self.disk_path),
                signal_dbm=await self._number(self.signal),
                supply_v=await self.supply_v(),
                on_backup=await self.on_backup(),
            )
            self._cached, self._cached_at = readings, time.monotonic()
            return readings

    async def _number(self, source: Source) -> float | None:
        text = await read_source(source) if source else None
        return None if text is None else parse_signal(text)

    async def supply_v(self) -> float | None:
        value = await self._number(self.voltage)
        return None if value is None else round(value * self.voltage_scale, 3)

    async def on_backup(self) -> bool | None:
        text = await read_source(self.backup) if self.backup else None
        return None if text is None else parse_backup(text, self.backup_invert)

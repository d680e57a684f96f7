"""Host readings for the health message: CPU temperature, free disk, signal strength.

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


@dataclass
class HostReadings:
    cpu_temp_c: float | None
    disk_free_bytes: int | None
    signal_dbm: float | None


class HostProbe:
    """Reads the host; ``signal_command`` (a shell-like command line printing dBm, e.g.
    ``mmcli -m 0 --signal-get``) or ``signal_file`` give the signal strength."""

    def __init__(
        self,
        disk_path: Path,
        *,
        signal_command: str | None = None,
        signal_file: Path | None = None,
        thermal_root: Path = Path("/sys/class/thermal"),
    ) -> None:
        self.disk_path = Path(disk_path)
        self.signal_command = signal_command
        self.signal_file = Path(signal_file) if signal_file else None
        self.thermal_root = thermal_root
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
                signal_dbm=await self._signal(),
            )
            self._cached, self._cached_at = readings, time.monotonic()
            return readings

    async def _signal(self) -> float | None:
        if self.signal_file is not None:
            try:
                return parse_signal(self.signal_file.read_text(encoding="utf-8", errors="replace"))
            except OSError:
                return None
        if self.signal_command:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *shlex.split(self.signal_command),
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.DEVNULL,
                )
            except (OSError, ValueError) as exc:
                _LOGGER.debug("signal command failed: %s", exc)
                return None
            try:
                out, _ = await asyncio.wait_for(proc.communicate(), 5.0)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                return None
            return parse_signal(out.decode("utf-8", "replace"))
        return None

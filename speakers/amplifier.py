"""Amplifier power control: switched on shortly before playback and off after an idle time.

An :class:`Amplifier` is a relay or an amplifier's enable pin. Implementations:

* :class:`NoAmplifier`: the amplifier is always on (or not switchable); only the state is kept.
* :class:`SysfsGpioAmplifier`: the legacy ``/sys/class/gpio`` interface (export, direction,
  value); the root folder is configurable so it can be checked without hardware.
* :class:`GpiosetAmplifier`: libgpiod's ``gpioset`` tool. ``gpioset`` only holds a line while it
  runs, so a holder process is kept running for the "on" value and replaced by one for "off".

:class:`AmplifierControl` applies the timing policy (lead time, idle time) for the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from pathlib import Path
from typing import Protocol

_LOGGER = logging.getLogger(__name__)


class AmplifierError(Exception):
    """The amplifier could not be switched; the message says why."""


class Amplifier(Protocol):
    name: str

    @property
    def is_on(self) -> bool: ...

    async def set(self, on: bool) -> None: ...

    async def close(self) -> None: ...


class NoAmplifier:
    name = "none"

    def __init__(self) -> None:
        self._on = False

    @property
    def is_on(self) -> bool:
        return self._on

    async def set(self, on: bool) -> None:
        self._on = on

    async def close(self) -> None:
        self._on = False


class SysfsGpioAmplifier:
    """``/sys/class/gpio/gpio<line>/value``; ``active_low`` for relays switched by a low level."""

    name = "gpio-sysfs"

    def __init__(self, line: int, *, active_low: bool = False, root: Path = Path("/sys/class/gpio")) -> None:
        self.line = line
        self.active_low = active_low
        self.root = Path(root)
        self._on = False
        self._ready = False

    @property
    def pin(self) -> Path:
        return self.root / f"gpio{self.line}"

    @property
    def is_on(self) -> bool:
        return self._on

    def _setup(self) -> None:
        if self._ready:
            return
        try:
            if not self.pin.exists():
                (self.root / "export").write_text(f"{self.line}\n")
            (self.pin / "direction").write_text("out\n")
        except OSError as exc:
            raise AmplifierError(f"cannot set up GPIO {self.line} under {self.root}: {exc}") from exc
        self._ready = True

    async def set(self, on: bool) -> None:
        level = int(on) ^ int(self.active_low)
        try:
            self._setup()
            (self.pin / "value").write_text(f"{level}\n")
        except OSError as exc:
            raise AmplifierError(f"cannot write GPIO {self.line}: {exc}") from exc
        self._on = on

    async def close(self) -> None:
        with contextlib.suppress(AmplifierError):
            await self.set(False)


class GpiosetAmplifier:
    """libgpiod ``gpioset``: v2 syntax (``gpioset -c CHIP LINE=V``, holds until killed) or v1
    (``gpioset --mode=signal CHIP LINE=V``)."""

    name = "gpioset"

    def __init__(self, chip: str, line: int, *, active_low: bool = False, binary: str = "gpioset") -> None:
        self.chip = chip
        self.line = line
        self.active_low = active_low
        self.binary = binary
        self._on = False
        self._holder: asyncio.subprocess.Process | None = None
        self._v1: bool | None = None

    @property
    def is_on(self) -> bool:
        return self._on

    async def _detect(self) -> bool:
        if self._v1 is None:
            if not shutil.which(self.binary):
                raise AmplifierError("gpioset not found: install gpiod (libgpiod tools)")
            proc = await asyncio.create_subprocess_exec(
                self.binary, "--help", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
            )
            out, _ = await proc.communicate()
            self._v1 = b"--mode" in out
        return self._v1

    async def set(self, on: bool) -> None:
        level = int(on) ^ int(self.active_low)
        v1 = await self._detect()
        args = (
            ["--mode=signal", self.chip, f"{self.line}={level}"]
            if v1
            else ["-c", self.chip, f"{self.line}={level}"]
        )
        await self._stop_holder()
        try:
            self._holder = await asyncio.create_subprocess_exec(
                self.binary, *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
            )
        except OSError as exc:
            raise AmplifierError(f"cannot run gpioset: {exc}") from exc
        # A holder that exits at once failed (busy line, no permission).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._holder.wait(), 0.2)
        if self._holder.returncode not in (None, 0):
            err = b""
            if self._holder.stderr is not None:
                err = await self._holder.stderr.read()
            raise AmplifierError(f"gpioset failed: {err.decode('utf-8', 'replace').strip()}")
        self._on = on

    async def _stop_holder(self) -> None:
        holder, self._holder = self._holder, None
        if holder is not None and holder.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                holder.terminate()
            await holder.wait()

    async def close(self) -> None:
        with contextlib.suppress(AmplifierError):
            await self.set(False)
        await self._stop_holder()


class AmplifierControl:
    """Timing policy: on ``lead_s`` before a start, off ``idle_off_s`` after the last item ended."""

    def __init__(self, amplifier: Amplifier, lead_s: float = 1.0, idle_off_s: float = 30.0) -> None:
        self.amplifier = amplifier
        self.lead_s = lead_s
        self.idle_off_s = idle_off_s
        self.last_error: str | None = None
        self._off_task: asyncio.Task[None] | None = None

    @property
    def is_on(self) -> bool:
        return self.amplifier.is_on

    async def ensure_on(self) -> None:
        """Switch on now (cancels a pending switch-off). Errors are logged and kept, not raised:
        a broken relay must not stop the announcement from reaching a node that has sound."""
        if self._off_task is not None:
            self._off_task.cancel()
            self._off_task = None
        if self.amplifier.is_on:
            return
        try:
            await self.amplifier.set(True)
            _LOGGER.debug("amplifier on")
        except AmplifierError as exc:
            self.last_error = str(exc)
            _LOGGER.error("amplifier: %s", exc)

    def idle(self) -> None:
        """Playback ended: switch off after the idle time unless something plays again."""
        if self._off_task is not None:
            self._off_task.cancel()
        self._off_task = asyncio.create_task(self._off_later())

    async def _off_later(self) -> None:
        await asyncio.sleep(self.idle_off_s)
        try:
            await self.amplifier.set(False)
            _LOGGER.debug("amplifier off after %.0f s idle", self.idle_off_s)
        except AmplifierError as exc:
            self.last_error = str(exc)
            _LOGGER.error("amplifier: %s", exc)

    async def cancel_pending(self) -> None:
        """Drop a pending switch-off (the agent is going away); the amplifier is left as is."""
        task, self._off_task = self._off_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        await self.cancel_pending()
        await self.amplifier.close()


def make_amplifier(
    kind: str,
    *,
    line: int | None = None,
    chip: str = "gpiochip0",
    active_low: bool = False,
    sysfs_root: Path | None = None,
) -> Amplifier:
    if kind == "none":
        return NoAmplifier()
    if line is None:
        raise AmplifierError(f"amplifier {kind!r} needs a GPIO line number")
    if kind == "gpio-sysfs":
        return SysfsGpioAmplifier(line, active_low=active_low, root=sysfs_root or Path("/sys/class/gpio"))
    if kind == "gpioset":
        return GpiosetAmplifier(chip, line, active_low=active_low)
    raise AmplifierError(f"unknown amplifier {kind!r} (none, gpio-sysfs or gpioset)")

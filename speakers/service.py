"""The agent as a systemd service: the unit, ``speaker-agent install``, and sd_notify (stdlib only).

The unit is ``Type=notify`` with ``Restart=always`` and ``WatchdogSec=``: the agent says
``READY=1`` once its loops run, pings ``WATCHDOG=1`` at half the watchdog interval from its event
loop while every loop is alive (a hung loop or a dead runner stops the pings and systemd
restarts it), and says ``STOPPING=1`` on a clean stop. sd_notify is a datagram on the unix socket
named by ``$NOTIFY_SOCKET`` (a leading ``@`` is the abstract namespace), no library needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from speakers.agent import Agent, AgentCrashed
from speakers.config import AgentConfig

_LOGGER = logging.getLogger(__name__)

UNIT_NAME = "loa-agent.service"
CONFIG_PATH = Path("/etc/loa/agent.yaml")
# Where the service keeps its audio cache when the config does not say.
DEFAULT_CACHE_DIR = Path("/var/lib/loa/audio")
# systemd restarts the agent when it has not pinged for this long: long enough for a slow SD card
# and a busy Pi, short enough that a hung node is back within a couple of minutes.
WATCHDOG_S = 60
# Between two restarts: not a tight loop when the agent cannot start at all.
RESTART_S = 5


class _Alive(Protocol):
    def alive(self) -> bool: ...

    @property
    def connected(self) -> asyncio.Event: ...


class Notifier:
    """Talks to systemd through ``$NOTIFY_SOCKET``; ``interval_s`` is half of ``$WATCHDOG_USEC``."""

    def __init__(self, address: str, watchdog_usec: int | None = None) -> None:
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.interval_s = watchdog_usec / 2e6 if watchdog_usec else None
        self.sent: list[str] = []

    @classmethod
    def from_env(cls) -> Notifier | None:
        address = os.environ.get("NOTIFY_SOCKET")
        if not address:
            return None
        usec: int | None = None
        pid = os.environ.get("WATCHDOG_PID")
        if pid is None or pid == str(os.getpid()):
            try:
                usec = int(os.environ.get("WATCHDOG_USEC", "")) or None
            except ValueError:
                usec = None
        return cls(address, usec)

    def notify(self, message: str) -> bool:
        """Send one notification (``READY=1``...); False when it could not be sent. Never blocks:
        a full socket queue (nobody reading) drops the message instead of freezing the agent."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.sendto(message.encode("utf-8"), self.address)
        except OSError:  # BlockingIOError included
            return False
        self.sent.append(message)
        return True

    async def run(self, agent: _Alive) -> None:
        """READY once, then watchdog pings (and a status line) while ``agent`` is alive."""
        await asyncio.sleep(0)  # let the agent start its loops first
        self.notify("READY=1\nSTATUS=starting")
        interval = self.interval_s or 30.0
        while True:
            if agent.alive():
                status = "connected to the broker" if agent.connected.is_set() else "broker unreachable"
                self.notify(f"WATCHDOG=1\nSTATUS={status}" if self.interval_s else f"STATUS={status}")
            await asyncio.sleep(interval)


# ---------------------------------------------------------------------------------- install


def agent_command() -> list[str]:
    """How systemd starts this agent: this Python running the ``speakers`` package."""
    return [sys.executable, "-m", "speakers"]


def render_unit(
    config_path: Path = CONFIG_PATH,
    *,
    user: str | None = None,
    speaker_id: str = "",
    watchdog_s: int = WATCHDOG_S,
) -> str:
    """The systemd unit: ``speaker-agent run --config <config_path>`` and nothing else."""
    command = [*agent_command(), "run", "--config", str(config_path)]
    lines = [
        "# Written by speaker-agent install. Loa xã speaker node agent.",
        "[Unit]",
        f"Description=Loa xa speaker agent {speaker_id}".rstrip(),
        "Wants=network-online.target",
        "After=network-online.target sound.target",
        # Never give up restarting: a cluster on its own must come back by itself.
        "StartLimitIntervalSec=0",
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        f"ExecStart={' '.join(_quote(part) for part in command)}",
        "Restart=always",
        f"RestartSec={RESTART_S}",
        f"WatchdogSec={watchdog_s}",
        "TimeoutStopSec=20",
        "Environment=PYTHONUNBUFFERED=1",
    ]
    if user:
        lines += [f"User={user}", "SupplementaryGroups=audio gpio"]
    lines += ["", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(lines)


def _quote(part: str) -> str:
    return f'"{part}"' if any(c.isspace() for c in part) else part


@dataclass
class InstallPlan:
    """What ``install`` does, as lines a technician reads; ``run`` lists systemctl commands to run."""

    done: list[str] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)


def install(
    source: Path,
    config: AgentConfig,
    *,
    root: Path = Path("/"),
    dry_run: bool = False,
    user: str | None = None,
    systemctl: str | None = None,
) -> InstallPlan:
    """Copy the config to ``/etc/loa/agent.yaml`` (0600), create the cache folder, write the unit,
    and enable and start it with systemctl when it is there (else say how). ``root`` installs into
    another tree (tests, images); ``dry_run`` only says what it would do."""
    plan = InstallPlan()
    verb = "would " if dry_run else ""
    config_dst = root / CONFIG_PATH.relative_to("/")
    cache = Path(config.audio.cache_dir or DEFAULT_CACHE_DIR)
    cache_dst = root / cache.relative_to("/") if cache.is_absolute() else root / cache
    unit_dst = root / "etc/systemd/system" / UNIT_NAME
    unit = render_unit(CONFIG_PATH, user=user, speaker_id=config.id)
    text = Path(source).read_text(encoding="utf-8")
    if config.audio.cache_dir is None:
        # The service's cache goes in the installed file, so `run` and `check` read one setting.
        text += ("" if text.endswith("\n") else "\n") + (
            f"# Added by speaker-agent install: where the service keeps its audio.\ncache_dir: {cache}\n"
        )
        plan.done.append(f"{verb}add 'cache_dir: {cache}' to the installed copy")
    if not dry_run:
        config_dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = config_dst.with_name(f".{config_dst.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, config_dst)
        cache_dst.mkdir(parents=True, exist_ok=True)
        unit_dst.parent.mkdir(parents=True, exist_ok=True)
        unit_dst.write_text(unit, encoding="utf-8")
        if user and os.geteuid() == 0:
            shutil.chown(config_dst, user)
            shutil.chown(cache_dst, user)
    plan.done.append(f"{verb}copy {source} to {config_dst} (mode 0600: it holds the cluster's password)")
    plan.done.append(f"{verb}create the audio cache folder {cache_dst}")
    plan.done.append(f"{verb}write the systemd unit {unit_dst} (restart always, watchdog {WATCHDOG_S} s)")
    commands = [
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", UNIT_NAME],
        ["systemctl", "restart", UNIT_NAME],
    ]
    if systemctl is not None and root == Path("/") and not dry_run:
        for cmd in commands:
            result = subprocess.run([systemctl, *cmd[1:]], capture_output=True, text=True)
            if result.returncode != 0:
                plan.next_steps.append(f"{' '.join(cmd)} failed: {result.stderr.strip()}; run it by hand")
                break
            plan.done.append(" ".join(cmd))
        else:
            plan.next_steps.append("watch it with: journalctl -u loa-agent -f")
    else:
        why = "systemctl is not available here" if systemctl is None else "installed into another root"
        if dry_run:
            why = "dry run"
        plan.next_steps.append(f"{why}: run  systemctl daemon-reload && systemctl enable --now loa-agent")
    plan.next_steps.append(f"check the node with: speaker-agent check --config {CONFIG_PATH}")
    return plan


def find_systemctl() -> str | None:
    """systemctl when this machine runs systemd (not in a container without it)."""
    found = shutil.which("systemctl")
    return found if found and Path("/run/systemd/system").is_dir() else None


# ------------------------------------------------------------------------------------ run


async def run_agent(config: AgentConfig, *, agent: Agent | None = None) -> None:
    """``speaker-agent run``: one agent until SIGINT/SIGTERM, then a clean shutdown. Under systemd
    (``Type=notify``) it says READY, pings the watchdog while its loops run, and says STOPPING.

    Raises :class:`AgentCrashed` when the agent dies on its own (the caller exits non-zero).
    """
    agent = agent or Agent(config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    runner = asyncio.create_task(agent.run())
    _LOGGER.info("agent %s (zone %s) -> %s", agent.id, agent.zone, agent.link.url.redacted())
    if not agent.link.url.tls and agent.link.url.host not in ("127.0.0.1", "::1", "localhost"):
        _LOGGER.warning("the link to %s is not encrypted: use mqtts:// (re-enroll)", agent.link.url.host)
    notifier = Notifier.from_env()
    watchdog = asyncio.create_task(notifier.run(agent), name=f"{agent.id}-watchdog") if notifier else None
    stopper = asyncio.create_task(stop.wait(), name=f"{agent.id}-signals")
    try:
        await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if runner.done():
            stopper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopper
            await agent.amp.close()
            runner.result()  # raises AgentCrashed
            raise AgentCrashed("the agent stopped by itself")
        _LOGGER.info("agent %s stopping", agent.id)
        if notifier is not None:
            notifier.notify("STOPPING=1")
        await agent.stop()
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
    finally:
        if watchdog is not None:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog

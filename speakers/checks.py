"""``speaker-agent check``: what works on this node and what does not, one line each.

For the technician at the cluster: broker reachable (TCP), certificate valid (TLS handshake with
the configured CA, expiry date), login accepted (MQTT CONNACK), clock offset (the controller's
time service, as the agent measures it), audio output (a short test tone through the configured
player and ALSA device), amplifier control (on and off), disk space (cache folder), and the
power and signal readings. The exit status is non-zero when something essential fails.

The login uses the client id ``<id>-check`` with a clean session, so a running agent keeps its
connection and its queued commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from speakers.amplifier import Amplifier, AmplifierError, make_amplifier
from speakers.clocksync import ClockSync, SystemClock
from speakers.config import AgentConfig
from speakers.health import HostProbe, Source
from speakers.mqtt import Incoming, Link
from speakers.player import Player, PlayerError, PlayItem, analyze, find_ffmpeg, make_player
from speakers.protocol import TIME_EXPIRY_S, ProtocolError, TimeRequest, TimeSync, Topics, decode_command
from speakers.tls import explain_connect_error, peer_certificate

# Less free space than this where the cache lives and the node cannot take a long bulletin.
MIN_FREE_BYTES = 50 * 1024 * 1024
# A certificate this close to its end is still valid, but say so.
WARN_DAYS = 14
# The volume of the test tone (0-100): audible at the cluster without waking the village.
TONE_VOLUME = 50
TONE_SECONDS = 1.0

MARKS = {True: "✓", False: "✗", None: "–"}


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: not checked or not configured (informative)
    detail: str
    essential: bool = True

    def line(self) -> str:
        return f"{MARKS[self.ok]} {self.name}: {self.detail}"


def failed_essential(results: list[Check]) -> bool:
    return any(r.ok is False and r.essential for r in results)


class NodeChecker:
    """Runs the checks of one config. ``player``/``amplifier`` replace the configured ones (tests)."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        player: Player | None = None,
        amplifier: Amplifier | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.config = config
        self.url = config.broker_url()
        self.player = player
        self.amplifier = amplifier
        self.timeout_s = timeout_s

    async def run(self) -> list[Check]:
        tcp = await self.tcp()
        no_clock = Check("clock", None, "not measured (no login)", False)
        if tcp.ok is not True:
            results = [
                tcp,
                Check("certificate", None, "not checked (the broker is not reachable)", False),
                Check("login", None, "not tried (the broker is not reachable)", False),
                no_clock,
            ]
        else:
            cert = await self.certificate()
            if cert.ok is False:
                results = [
                    tcp,
                    cert,
                    Check("login", None, "not tried (the certificate was refused)", False),
                    no_clock,
                ]
            else:
                results = [tcp, cert, *await self.login_and_clock()]
        amp_check, audio_check = await self.amplifier_and_audio()
        results += [amp_check, audio_check, self.disk(), await self.power()]
        return results

    # -------------------------------------------------------------------------- network

    async def tcp(self) -> Check:
        host, port = self.url.host, self.url.port
        started = time.monotonic()
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), self.timeout_s)
        except (OSError, TimeoutError) as exc:
            return Check("broker reachable", False, explain_connect_error(exc, host, port))
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        ms = (time.monotonic() - started) * 1000
        return Check("broker reachable", True, f"{host}:{port} answers (TCP, {ms:.0f} ms)")

    async def certificate(self) -> Check:
        host, port = self.url.host, self.url.port
        context = self.config.tls_context()
        if context is None:
            return Check(
                "certificate", None, f"TLS not used ({self.url.redacted()}): the link is not encrypted", False
            )
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=context, server_hostname=host), self.timeout_s
            )
        except (OSError, TimeoutError) as exc:
            return Check("certificate", False, explain_connect_error(exc, host, port))
        cert = peer_certificate(writer.get_extra_info("ssl_object"))
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        trusted = "the CA in the config (pinned)" if self.config.mqtt.ca_pem else "the system's CAs"
        if cert is None:
            return Check("certificate", True, f"accepted, signed by {trusted}")
        days = cert.days_left()
        detail = (
            f"{cert.subject} issued by {cert.issuer}, trusted through {trusted}, "
            f"expires {cert.not_after:%Y-%m-%d} ({days:.0f} days)"
        )
        if days < WARN_DAYS:
            detail += " — renew it soon"
        return Check("certificate", True, detail)

    async def login_and_clock(self) -> list[Check]:
        topics = Topics(self.config.mqtt.prefix)
        speaker = self.config.id
        sync: ClockSync | None = None

        def on_message(msg: Incoming) -> None:
            with contextlib.suppress(ProtocolError):
                cmd = decode_command(msg.payload)
                if isinstance(cmd, TimeSync) and sync is not None:
                    sync.on_answer(cmd)

        link = Link(
            f"{speaker}-check",
            self.url,
            on_message=on_message,
            tls_context=self.config.tls_context(),
            clean_start=True,
            session_expiry_s=0,
            max_attempts=1,
            keepalive_s=10,
            connect_timeout_s=self.timeout_s,
        )
        link.want(topics.cmd(speaker))
        runner = asyncio.create_task(link.run())
        connected = asyncio.create_task(link.connected.wait())
        try:
            await asyncio.wait(
                {runner, connected}, timeout=self.timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
            if not link.connected.is_set():
                reason = link.last_error or f"no answer within {self.timeout_s:.0f} s"
                return [
                    Check("login", False, reason),
                    Check("clock", None, "not measured (no login)", False),
                ]
            login = Check("login", True, f"accepted as {self.url.username or '(anonymous)'}")

            def send(request: TimeRequest, on_send: Callable[[], None]) -> None:
                link.publish(
                    topics.time_request(speaker),
                    request.encode(),
                    qos=0,
                    expiry_s=TIME_EXPIRY_S,
                    on_send=on_send,
                )

            sync = ClockSync(f"{speaker}-check", SystemClock(), self.config.time_sync, send)
            return [login, await self._clock(sync)]
        finally:
            connected.cancel()
            await link.close(timeout=2.0)
            runner.cancel()
            await asyncio.gather(runner, connected, return_exceptions=True)

    @staticmethod
    async def _clock(sync: ClockSync) -> Check:
        if not await sync.burst() or sync.wall_offset_s is None:
            return Check(
                "clock",
                False,
                "the controller did not answer time requests (is the controller running?)",
                False,
            )
        offset = sync.wall_offset_s
        side = "behind" if offset > 0 else "ahead of"
        rtt_ms = (sync.rtt_s or 0.0) * 1000
        detail = f"this computer is {abs(offset):.3f} s {side} the controller (round trip {rtt_ms:.0f} ms)"
        if abs(offset) > 60:
            detail += "; playback follows the controller's clock, but fix this computer's time (NTP)"
        return Check("clock", True, detail, False)

    # ---------------------------------------------------------------------------- local

    async def amplifier_and_audio(self) -> tuple[Check, Check]:
        cfg = self.config.amplifier
        amp = self.amplifier
        amp_check: Check
        if amp is None and cfg.kind == "none":
            amp_check = Check("amplifier control", None, "not configured (amplifier.kind: none)", False)
        else:
            try:
                amp = amp or make_amplifier(
                    cfg.kind,
                    line=cfg.line,
                    chip=cfg.chip,
                    active_low=cfg.active_low,
                    sysfs_root=cfg.sysfs_root,
                )
                await amp.set(True)
                amp_check = Check("amplifier control", True, f"switched on ({amp.name}, line {cfg.line})")
            except AmplifierError as exc:
                amp_check, amp = Check("amplifier control", False, str(exc)), None
        audio_check = await self.audio()
        if amp is not None and amp_check.ok:
            try:
                await amp.set(False)
                amp_check = Check(
                    "amplifier control", True, amp_check.detail.replace("switched on", "switched on and off")
                )
            except AmplifierError as exc:
                amp_check = Check("amplifier control", False, f"switched on but not off: {exc}")
            with contextlib.suppress(AmplifierError):
                await amp.close()
        return amp_check, audio_check

    async def audio(self) -> Check:
        cfg = self.config
        where = cfg.audio.device or "the default output"
        try:
            player = self.player or make_player(
                cfg.player.kind,
                output_dir=cfg.player.output_dir,
                command=cfg.player.command,
                device=cfg.audio.device,
            )
        except PlayerError as exc:
            return Check("audio output", False, str(exc))
        item: PlayItem | None = None
        with tempfile.TemporaryDirectory(prefix="loa-check-") as folder:
            tone = Path(folder) / "tone.wav"
            try:
                await asyncio.to_thread(_make_tone, tone, TONE_SECONDS)
                analysis = await analyze(tone)
                item = PlayItem(
                    broadcast_id=f"check-{uuid.uuid4().hex[:8]}",
                    audio_id="0" * 64,
                    path=tone,
                    start_at=time.time(),
                    duration_s=analysis.duration_s,
                    volume=TONE_VOLUME,
                    title="test tone",
                    speaker_id=cfg.id,
                )
                await asyncio.wait_for(player.prepare(item), self.timeout_s)
                started = time.monotonic()
                await asyncio.wait_for(player.play(item), analysis.duration_s + self.timeout_s)
                took = time.monotonic() - started
            except (PlayerError, OSError, subprocess.CalledProcessError) as exc:
                return Check("audio output", False, f"test tone failed on {where}: {exc}")
            except TimeoutError:
                return Check("audio output", False, f"test tone did not finish on {where} (output blocked?)")
            finally:
                if item is not None:
                    with contextlib.suppress(Exception):
                        await player.release(item)
        return Check(
            "audio output",
            True,
            f"played a {analysis.duration_s:.1f} s test tone on {where} ({player.name} player, {took:.1f} s)",
        )

    def disk(self) -> Check:
        folder = self.config.cache_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".check-{uuid.uuid4().hex[:8]}"
            probe.write_bytes(b"ok")
            probe.unlink()
            free = shutil.disk_usage(folder).free
        except OSError as exc:
            return Check("disk space", False, f"cannot write to the cache folder {folder}: {exc}")
        limit = int(self.config.audio.cache_max_mb * 1024 * 1024)
        detail = f"{_size(free)} free in {folder} (cache limit {_size(limit)})"
        if free < MIN_FREE_BYTES:
            return Check("disk space", False, f"only {detail}")
        if free < limit:
            detail += "; less free space than the cache limit"
        return Check("disk space", True, detail)

    async def power(self) -> Check:
        cfg = self.config
        probe = HostProbe(
            cfg.cache_dir(),
            signal_command=cfg.health.signal_command,
            signal_file=cfg.health.signal_file,
            voltage=Source(cfg.power.voltage_file, cfg.power.voltage_command),
            voltage_scale=cfg.power.voltage_scale,
            backup=Source(cfg.power.backup_file, cfg.power.backup_command),
            backup_invert=cfg.power.backup_invert,
        )
        readings = await probe.read()
        parts = []
        configured = {
            "supply voltage": bool(probe.voltage),
            "backup power": bool(probe.backup),
            "4G signal": bool(probe.signal),
        }
        missing = [name for name, ok in configured.items() if ok and _unread(name, readings)]
        if readings.supply_v is not None:
            parts.append(f"supply {readings.supply_v:.2f} V")
        if readings.on_backup is not None:
            parts.append("on backup power" if readings.on_backup else "on mains")
        if readings.signal_dbm is not None:
            parts.append(f"4G signal {readings.signal_dbm:.0f} dBm")
        if missing:
            return Check("power and signal", False, f"cannot read the {', '.join(missing)}", False)
        if not parts:
            return Check("power and signal", None, "not configured (power.*, health.signal_*)", False)
        return Check("power and signal", True, ", ".join(parts), False)


def _unread(name: str, readings: object) -> bool:
    attr = {"supply voltage": "supply_v", "backup power": "on_backup", "4G signal": "signal_dbm"}[name]
    return getattr(readings, attr) is None


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit in ("B", "KB") else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _make_tone(path: Path, seconds: float) -> None:
    subprocess.run(
        [find_ffmpeg(), "-nostdin", "-v", "error", "-f", "lavfi", "-i", f"sine=frequency=880:duration={seconds}",
         "-ac", "1", "-ar", "22050", "-y", str(path)],
        check=True,
        capture_output=True,
    )  # fmt: skip

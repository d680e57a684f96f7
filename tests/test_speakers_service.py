"""The agent as a service: ``speaker-agent install`` (into a temporary root), sd_notify, and
``speaker-agent check`` run as a real process against a real TLS mosquitto."""

from __future__ import annotations

import asyncio
import configparser
import os
import shlex
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from speakers.config import load_config
from speakers.service import Notifier, render_unit
from tests.mini_controller import MiniController, run

pytest_plugins = ["tests.fixtures_tls"]

AGENT = [sys.executable, "-m", "speakers"]


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  (keys are case-sensitive)
    parser.read(path, encoding="utf-8")
    return parser


def _config(tmp_path: Path, body: str = "") -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(
        f"id: loa-07\nzone: thon-2\nmqtt_url: mqtts://broker.example:8883\npassword: s3cret\n{body}"
    )
    return path


# ---------------------------------------------------------------------------------- install


def test_install_into_a_root_writes_config_unit_and_cache(tmp_path: Path) -> None:
    source = _config(tmp_path)
    root = tmp_path / "root"
    result = subprocess.run([*AGENT, "install", "--config", str(source), "--root", str(root)],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    installed = root / "etc/loa/agent.yaml"
    assert installed.read_text().startswith(source.read_text())  # the file as enrolled...
    assert load_config(installed).cache_dir() == Path("/var/lib/loa/audio")  # ...plus the service's cache
    assert stat.S_IMODE(installed.stat().st_mode) == 0o600  # it holds the cluster's password
    assert (root / "var/lib/loa/audio").is_dir()
    unit = _unit(root / "etc/systemd/system/loa-agent.service")
    service = unit["Service"]
    assert service["Type"] == "notify" and service["Restart"] == "always"
    assert int(service["WatchdogSec"]) > 0 and unit["Unit"]["StartLimitIntervalSec"] == "0"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    command = shlex.split(service["ExecStart"])
    assert command[:3] == [sys.executable, "-m", "speakers"]
    assert command[3:] == ["run", "--config", "/etc/loa/agent.yaml"]  # needs nothing else
    # What systemd will start is a working command line (checked against the installed copy).
    check = subprocess.run([*command[:3], "check-config", str(installed)], capture_output=True, text=True)
    assert check.returncode == 0 and "loa-07" in check.stdout
    out = result.stdout
    assert f"copy {source} to {installed}" in out and "mode 0600" in out
    assert "run  systemctl daemon-reload && systemctl enable --now loa-agent" in out
    assert "speaker-agent check --config /etc/loa/agent.yaml" in out


def test_install_dry_run_writes_nothing_and_a_configured_cache_is_kept(tmp_path: Path) -> None:
    source = _config(tmp_path, f"cache_dir: {tmp_path / 'my-cache'}\n")
    root = tmp_path / "root"
    result = subprocess.run([*AGENT, "install", "--config", str(source), "--root", str(root), "--dry-run"],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert not root.exists()
    assert "would copy" in result.stdout and "would write the systemd unit" in result.stdout
    assert f"create the audio cache folder {root / str(tmp_path / 'my-cache').lstrip('/')}" in result.stdout
    assert "add 'cache_dir" not in result.stdout  # the file's own cache folder is kept
    unit = render_unit(user="loa", speaker_id="loa-07")
    assert "User=loa" in unit and "SupplementaryGroups=audio gpio" in unit


def test_install_refuses_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "agent.yaml"
    bad.write_text("id: loa-07\nmqtt_url: http://nowhere\n")
    result = subprocess.run([*AGENT, "install", "--config", str(bad), "--root", str(tmp_path / "r")],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 2 and "mqtt_url: MQTT URL must start with" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "r").exists()


# -------------------------------------------------------------------------------- sd_notify


def test_sd_notify_reaches_the_socket_and_never_blocks(tmp_path: Path) -> None:
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(tmp_path / "notify"))
    try:
        notifier = Notifier(str(tmp_path / "notify"), watchdog_usec=30_000_000)
        assert notifier.interval_s == 15.0
        assert notifier.notify("READY=1")
        assert receiver.recv(100) == b"READY=1"
        # Nobody reads: the queue fills, and then messages are dropped, not waited for.
        t0 = time.monotonic()
        results = [notifier.notify("WATCHDOG=1") for _ in range(200)]
        assert time.monotonic() - t0 < 5 and results[0] and not results[-1]
    finally:
        receiver.close()
    assert not Notifier(str(tmp_path / "gone")).notify("READY=1")


def test_notifier_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert Notifier.from_env() is None
    monkeypatch.setenv("NOTIFY_SOCKET", "@loa-test")
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    notifier = Notifier.from_env()
    assert notifier is not None and notifier.address == "\0loa-test" and notifier.interval_s == 1.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # the watchdog is meant for another process
    notifier = Notifier.from_env()
    assert notifier is not None and notifier.interval_s is None


# ------------------------------------------------------------------------------------ check


def _check_config(tmp_path: Path, broker, *, password: str | None = None) -> Path:  # type: ignore[no-untyped-def]
    gpio = tmp_path / "gpio"
    (gpio / "gpio17").mkdir(parents=True, exist_ok=True)  # what the kernel creates on export
    (gpio / "export").write_text("")
    (tmp_path / "volts").write_text("12400\n")
    (tmp_path / "signal").write_text("rssi: -71 dBm\n")
    ca = "\n".join(f"  {line}" for line in broker.pki.ca_pem.strip().splitlines())
    path = tmp_path / "agent.yaml"
    path.write_text(
        f"id: loa-01\nzone: thon-1\nmqtt_url: {broker.node_url('loa-01')}\n"
        f"password: {password or broker.password('loa-01')}\nca_pem: |\n{ca}\ncache_dir: {tmp_path / 'cache'}\n"
        f"player: {{kind: file, output_dir: {tmp_path / 'played'}}}\n"
        f"amplifier: {{kind: gpio-sysfs, line: 17, sysfs_root: {gpio}}}\n"
        f"health: {{signal_file: {tmp_path / 'signal'}}}\n"
        f"power: {{voltage_file: {tmp_path / 'volts'}, voltage_scale: 0.001, backup_command: 'echo mains'}}\n"
        "time_sync: {samples: 2, timeout_s: 0.5}\n",
        encoding="utf-8",
    )
    return path


async def _check(config: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *AGENT, "check", "--config", str(config), "--timeout", "5",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode("utf-8")


def _line(output: str, name: str) -> str:
    return next(line for line in output.splitlines() if line[2:].startswith(name))


@pytest.mark.integration
def test_check_says_what_works(tls_broker, tmp_path: Path) -> None:
    broker = tls_broker(nodes={"loa-01": "thon-1"})
    config = _check_config(tmp_path, broker)

    async def scenario() -> tuple[int, str]:
        mc = MiniController(broker.url)  # answers time requests, like the controller
        await mc.start()
        try:
            return await _check(config)
        finally:
            await mc.close()

    status, out = run(scenario())
    assert status == 0, out
    assert out.splitlines()[0].startswith("✓ configuration: speaker loa-01 (zone thon-1)")
    assert _line(out, "broker reachable").startswith(
        f"✓ broker reachable: 127.0.0.1:{broker.tls_port} answers"
    )
    cert = _line(out, "certificate")
    assert cert.startswith(
        "✓ certificate: loa-broker issued by Loa test CA, trusted through the CA in the config"
    )
    assert "expires 20" in cert and "days)" in cert
    assert _line(out, "login") == "✓ login: accepted as loa-01"
    assert _line(out, "clock").startswith("✓ clock: this computer is ") and "the controller" in _line(
        out, "clock"
    )
    assert _line(out, "amplifier control") == "✓ amplifier control: switched on and off (gpio-sysfs, line 17)"
    assert (tmp_path / "gpio/gpio17/value").read_text() == "0\n"  # left off
    assert _line(out, "audio output").startswith(
        "✓ audio output: played a 1.0 s test tone on the default output"
    )
    assert len(list((tmp_path / "played").glob("*.wav"))) == 1  # the file player got the tone
    assert _line(out, "disk space").startswith("✓ disk space: ") and "free in" in _line(out, "disk space")
    assert _line(out, "power and signal") == "✓ power and signal: supply 12.40 V, on mains, 4G signal -71 dBm"
    assert out.rstrip().endswith("Everything essential works.")
    assert "loa-01-check" in broker.log()  # its own client id: a running agent keeps its session


@pytest.mark.integration
@pytest.mark.parametrize(
    ("cert", "password", "stop", "expected", "status"),
    [
        ("expired", None, False, "✗ certificate: TLS: the broker's certificate has expired", 1),
        (
            "other-ca",
            None,
            False,
            "✗ certificate: TLS: the broker's certificate is not signed by the trusted CA",
            1,
        ),
        ("good", "wrong", False, "✗ login: login refused: not authorized", 1),
        ("good", None, True, "✗ broker reachable: the broker refused the connection at 127.0.0.1", 1),
        ("good", None, False, "✗ clock: the controller did not answer time requests", 0),  # not essential
    ],
)
def test_check_says_what_does_not_work(
    tls_broker, tmp_path: Path, cert: str, password: str | None, stop: bool, expected: str, status: int
) -> None:
    broker = tls_broker(cert=cert, nodes={"loa-01": "thon-1"})
    if stop:
        broker.stop()
    config = _check_config(tmp_path, broker, password=password)
    code, out = run(_check(config))  # no controller answers time requests here
    assert expected in out, out
    assert code == status, out
    assert "Traceback" not in out
    if status:
        assert out.rstrip().endswith("Something essential does not work: see the lines marked ✗.")
    assert _line(out, "audio output").startswith("✓")  # the local checks still ran
    if stop:
        assert "– certificate: not checked (the broker is not reachable)" in out
        assert "– login: not tried (the broker is not reachable)" in out
    elif cert != "good":
        assert "– login: not tried (the certificate was refused)" in out


def test_check_reports_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "agent.yaml"
    bad.write_text("id: loa 01\n")
    result = subprocess.run([*AGENT, "check", "--config", str(bad)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stdout.startswith("✗ configuration: invalid agent configuration")
    assert "id: 'loa 01' is not a valid id" in result.stdout


def test_docs_agent_md_names_every_config_key() -> None:
    """docs/agent.md is the reference of the agent's configuration: no key may be missing."""
    from pydantic import BaseModel

    from speakers.config import FLAT_KEYS, AgentConfig

    text = (Path(__file__).resolve().parent.parent / "docs" / "agent.md").read_text(encoding="utf-8")

    def keys(model: type[BaseModel], prefix: str = "") -> list[str]:
        out = []
        for name, field in model.model_fields.items():
            sub = field.annotation
            if isinstance(sub, type) and issubclass(sub, BaseModel) and name != "quiet_hours":
                out += keys(sub, f"{prefix}{name}.")
            else:
                out.append(prefix + name)
        return out

    missing = [k for k in [*keys(AgentConfig), *FLAT_KEYS] if f"`{k}`" not in text and f" `{k}" not in text]
    assert missing == []

"""``broadcaster broker export DIR``: the files an operator's own mosquitto needs, tried on a real
mosquitto (TLS for clusters, the controller on loopback), and kept in step by re-export + SIGHUP."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from broadcaster.__main__ import main
from broadcaster.broker import find_mosquitto, free_port, probe_login
from broadcaster.broker.export import export_broker_files
from broadcaster.broker.tls import TlsMaterial
from broadcaster.fleet.registry import Registry
from broadcaster.services import open_database
from broadcaster.settings import load_settings
from tests.fixtures_broker import TlsNode
from tests.fixtures_controller import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="loa-export-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_exported_files_run_an_operators_mosquitto_and_follow_the_registry(root: Path) -> None:
    cert = TlsMaterial(root / "cert", "127.0.0.1")  # stands in for the operator's certificate
    cert.ensure()
    plain_port, tls_port = free_port(), free_port()
    settings = load_settings(
        {
            "instance": root / "instance",
            "broker": {
                "tls_port": tls_port,
                "cert_file": cert.server_cert_path,
                "key_file": cert.server_key_path,
            },
        },
        environ={},
    )
    settings.ensure_instance()
    registry = Registry(open_database(settings))
    registry.create_zone("thon-1", "Thôn Đông")
    _, pw1 = registry.create_speaker("loa-01", "Cụm loa 1", "thon-1")
    _, pw2 = registry.create_speaker("loa-02", "Cụm loa 2", None)
    registry.update_speaker("loa-02", enabled=False)
    out = root / "export"

    result = export_broker_files(settings, registry, out)
    assert result.clusters == 1 and result.generated_password is not None
    passwd = (out / "passwd").read_text()
    assert [line.split(":")[0] for line in passwd.splitlines()] == ["controller", "loa-01"]
    assert pw1 not in passwd and (out / "passwd").stat().st_mode & 0o077 == 0
    acl = (out / "acl").read_text()
    assert (
        "user loa-01\ntopic read loa/zones/thon-1/cmd" in acl
        and "pattern write loa/speakers/%u/status" in acl
    )
    assert (out / "controller.secret").read_text().strip() == result.generated_password
    readme = (out / "README.txt").read_text()
    assert "kill -HUP" in readme and "broadcaster broker export" in readme
    snippet = (out / "loa-xa.conf").read_text()
    assert f"certfile {cert.server_cert_path}" in snippet and "tls_version tlsv1.2" in snippet
    assert "listener 1883 127.0.0.1" in snippet
    snippet = snippet.replace("listener 1883 127.0.0.1", f"listener {plain_port} 127.0.0.1")
    (out / "loa-xa.conf").write_text(snippet)

    main_conf = root / "mosquitto.conf"
    # The operator's own main config: runs as root here only because the test owns the files.
    main_conf.write_text(f"user root\nlog_dest stderr\ninclude_dir {out}\n")
    log = (root / "mosquitto.log").open("wb")
    proc = subprocess.Popen([str(find_mosquitto()), "-c", str(main_conf)], stdout=log, stderr=log)
    ctx = TlsNode.context(cert.ca_cert_path)
    try:
        controller_pw = result.generated_password

        def up() -> bool:
            assert proc.poll() is None, (root / "mosquitto.log").read_text()
            return probe_login("127.0.0.1", plain_port, "controller", controller_pw) == 0

        wait_until(up, what="the operator's mosquitto")
        assert probe_login("127.0.0.1", tls_port, "loa-01", pw1, ssl_context=ctx) == 0
        assert probe_login("127.0.0.1", tls_port, "loa-02", pw2, ssl_context=ctx) == 5  # disabled

        # Keeping it in step: a reset and a re-enabled cluster, re-export, SIGHUP.
        new_pw1 = registry.reset_speaker_password("loa-01")
        registry.update_speaker("loa-02", enabled=True)
        again = export_broker_files(settings, registry, out)
        assert again.clusters == 2 and again.generated_password == controller_pw  # kept
        (out / "loa-xa.conf").write_text(snippet)  # the operator's edit of the port, kept
        proc.send_signal(signal.SIGHUP)
        wait_until(
            lambda: probe_login("127.0.0.1", tls_port, "loa-01", new_pw1, ssl_context=ctx) == 0,
            what="the reset password after the reload",
        )
        assert probe_login("127.0.0.1", tls_port, "loa-01", pw1, ssl_context=ctx) == 5
        assert probe_login("127.0.0.1", tls_port, "loa-02", pw2, ssl_context=ctx) == 0
        assert probe_login("127.0.0.1", plain_port, "controller", controller_pw) == 0
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_export_cli_uses_the_controller_account_of_mqtt_url(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = root / "export"
    code = main(
        [
            "--instance",
            str(root / "instance"),
            "broker",
            "export",
            str(out),
        ]
    )
    assert code == 0 and "0 cluster(s) exported" in capsys.readouterr().out
    settings = load_settings(
        {"instance": root / "instance", "mqtt_url": "mqtt://dieu-khien:b%C3%AD-m%E1%BA%ADt@broker.xa:1884"},
        environ={},
    )
    result = export_broker_files(settings, Registry(open_database(settings)), out)
    assert result.controller_user == "dieu-khien" and result.generated_password is None
    from broadcaster.broker import verify_password

    user, stored = (out / "passwd").read_text().strip().split(":", 1)
    assert user == "dieu-khien" and verify_password("bí-mật", stored)
    assert "listener 1884 127.0.0.1" in (out / "loa-xa.conf").read_text()
    assert main(["--instance", str(root / "instance"), "broker", "export", "/proc/nope"]) == 1
    assert "error:" in capsys.readouterr().err

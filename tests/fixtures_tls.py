"""A real mosquitto with a TLS listener for nodes, and certificates made with openssl.

``pki`` (session): two CAs and server certificates made once per test session::

    pki.ca_pem                 # the CA the nodes pin (PEM text, as in an enrolled agent.yaml)
    pki.server("good")         # (cert, key) for 127.0.0.1/localhost signed by that CA
    pki.server("expired")      # the same, expired last year
    pki.server("other-ca")     # a valid certificate signed by another CA
    pki.server("wrong-host")   # signed by the CA, but for elsewhere.example only

``tls_broker(cert="good", nodes={"loa-01": "thon-1"})``: a started broker with a TLS listener
(nodes, ``mqtts://``) and a plain loopback listener (the controller), persistence on, password
file and the ACL of docs/protocol.md section 9 (including the node's lookahead topic). The
brokers are stopped after the test; ``stop()``/``start()``/``restart()`` keep ports and state.

Test modules that use them say ``pytest_plugins = ["tests.fixtures_tls"]``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

NODE_PASSWORD = "pw-{id}"
CONTROLLER = ("controller", "controller-secret")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


class Pki:
    """Test CAs and server certificates (EC P-256: quick to make)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._ca("ca", "Loa test CA")
        self._ca("ca2", "Some other CA")
        self._server("good", "ca", "IP:127.0.0.1,DNS:localhost")
        self._server("other-ca", "ca2", "IP:127.0.0.1,DNS:localhost")
        self._server("wrong-host", "ca", "DNS:elsewhere.example")
        self._server(
            "expired", "ca", "IP:127.0.0.1,DNS:localhost", dates=("20240101000000Z", "20240201000000Z")
        )

    def _key_args(self) -> list[str]:
        return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def _ca(self, name: str, cn: str) -> None:
        _openssl("req", "-x509", *self._key_args(), "-keyout", f"{name}.key", "-out", f"{name}.crt",
                 "-days", "30", "-subj", f"/CN={cn}",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=self.folder)  # fmt: skip

    def _server(self, name: str, ca: str, san: str, dates: tuple[str, str] | None = None) -> None:
        f = self.folder
        _openssl("req", "-new", *self._key_args(), "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", "/CN=loa-broker", cwd=f)  # fmt: skip
        (f / f"{name}.ext").write_text(
            f"subjectAltName={san}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
            encoding="utf-8",
        )
        if dates is None:
            _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
                     "-CAcreateserial", "-out", f"{name}.crt", "-days", "30", "-extfile", f"{name}.ext", cwd=f)  # fmt: skip
            return
        # `openssl x509` cannot backdate; `openssl ca` can (a minimal CA database).
        (f / "index.txt").write_text("", encoding="utf-8")
        (f / "serial").write_text("1000\n", encoding="utf-8")
        (f / "newcerts").mkdir(exist_ok=True)
        (f / "ca.cnf").write_text(
            "[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=newcerts\nserial=serial\n"
            "default_md=sha256\npolicy=p\nunique_subject=no\n[p]\ncommonName=supplied\n",
            encoding="utf-8",
        )
        _openssl("ca", "-batch", "-config", "ca.cnf", "-cert", f"{ca}.crt", "-keyfile", f"{ca}.key",
                 "-in", f"{name}.csr", "-out", f"{name}.crt", "-startdate", dates[0], "-enddate", dates[1],
                 "-extfile", f"{name}.ext", "-notext", cwd=f)  # fmt: skip

    @property
    def ca_pem(self) -> str:
        return (self.folder / "ca.crt").read_text(encoding="utf-8")

    @property
    def other_ca_pem(self) -> str:
        return (self.folder / "ca2.crt").read_text(encoding="utf-8")

    def server(self, name: str) -> tuple[Path, Path]:
        return self.folder / f"{name}.crt", self.folder / f"{name}.key"


class TlsBroker:
    """One mosquitto process: TLS listener for nodes, plain loopback listener for the controller."""

    def __init__(self, folder: Path, pki: Pki, cert: str, nodes: Mapping[str, str | None]) -> None:
        self.folder = folder
        self.pki = pki
        self.cert = cert
        self.port = _free_port()
        self.tls_port = _free_port()
        self.nodes = dict(nodes)
        self.proc: subprocess.Popen[bytes] | None = None
        self._write_files()

    # ------------------------------------------------------------------------ addresses

    @property
    def url(self) -> str:
        """The controller's URL (plain, loopback)."""
        user, password = CONTROLLER
        return f"mqtt://{user}:{password}@127.0.0.1:{self.port}"

    @staticmethod
    def password(speaker_id: str) -> str:
        return NODE_PASSWORD.replace("{id}", speaker_id)

    def node_url(self, speaker_id: str) -> str:
        """A node's URL over TLS (the password goes in the config's ``password``)."""
        return f"mqtts://127.0.0.1:{self.tls_port}"

    def node_mqtt(self, speaker_id: str) -> dict[str, Any]:
        """The flat keys of an enrolled agent.yaml for ``speaker_id``."""
        return {
            "mqtt_url": self.node_url(speaker_id),
            "password": self.password(speaker_id),
            "ca_pem": self.pki.ca_pem,
        }

    # --------------------------------------------------------------------------- files

    def _write_files(self) -> None:
        f = self.folder
        passwd = f / "passwd"
        passwd.write_text("", encoding="utf-8")
        users = {CONTROLLER[0]: CONTROLLER[1], **{n: self.password(n) for n in self.nodes}}
        for user, password in users.items():
            subprocess.run(
                ["mosquitto_passwd", "-b", str(passwd), user, password], check=True, capture_output=True
            )
        acl = [
            "pattern write loa/speakers/%u/status",
            "pattern write loa/speakers/%u/health",
            "pattern write loa/speakers/%u/events",
            "pattern write loa/speakers/%u/time",
            "pattern read loa/speakers/%u/cmd",
            "pattern read loa/speakers/%u/lookahead",
            "pattern read loa/audio/#",
            "",
            f"user {CONTROLLER[0]}",
            "topic readwrite loa/#",
            "",
        ]
        for node, zone in self.nodes.items():
            if zone:
                acl += [f"user {node}", f"topic read loa/zones/{zone}/cmd", ""]
        (f / "acl").write_text("\n".join(acl), encoding="utf-8")
        cert, key = self.pki.server(self.cert)
        (f / "data").mkdir(exist_ok=True)
        conf = [
            "per_listener_settings false",
            "allow_anonymous false",
            f"password_file {f / 'passwd'}",
            f"acl_file {f / 'acl'}",
            "persistence true",
            f"persistence_location {f / 'data'}/",
            f"log_dest file {f / 'mosquitto.log'}",
            "log_type all",
            f"listener {self.port} 127.0.0.1",
            f"listener {self.tls_port} 127.0.0.1",
            f"cafile {self.pki.folder / 'ca.crt'}",
            f"certfile {cert}",
            f"keyfile {key}",
        ]
        if os.geteuid() == 0:
            conf.append("user root")  # the test's files stay readable; never in production
        (f / "mosquitto.conf").write_text("\n".join(conf) + "\n", encoding="utf-8")

    # ----------------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 10.0) -> None:
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(self.folder / "mosquitto.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        for port in (self.port, self.tls_port):
            while True:
                if self.proc.poll() is not None:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    raise RuntimeError(f"mosquitto exited: {err}\n{self.log()[-2000:]}")
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"mosquitto did not listen on {port}: {self.log()[-2000:]}"
                        ) from None
                    time.sleep(0.01)  # polling a port that is about to open

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)  # mosquitto saves its persistence database on SIGTERM
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        try:
            return (self.folder / "mosquitto.log").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""


@pytest.fixture(scope="session")
def pki() -> Iterator[Pki]:
    if not shutil.which("openssl"):
        pytest.fail("openssl is not installed (apt-get install openssl)")
    folder = Path(tempfile.mkdtemp(prefix="loa-pki-"))
    try:
        yield Pki(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def tls_broker(pki: Pki, request: pytest.FixtureRequest) -> Iterator[Callable[..., TlsBroker]]:
    started: list[TlsBroker] = []

    def make(cert: str = "good", nodes: Mapping[str, str | None] | None = None) -> TlsBroker:
        folder = Path(tempfile.mkdtemp(prefix="loa-tls-broker-"))
        folder.chmod(0o755)
        broker = TlsBroker(folder, pki, cert, nodes or {})
        started.append(broker)
        broker.start()
        return broker

    yield make
    failed = getattr(request.node, "rep_call", None)
    for broker in started:
        broker.stop()
        if failed is not None and failed.failed:
            print(f"--- mosquitto log ({broker.folder}) ---\n{broker.log()[-4000:]}")
        shutil.rmtree(broker.folder, ignore_errors=True)

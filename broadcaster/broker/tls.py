"""TLS material of the node listener: a local CA and a server certificate, or an operator's own.

Without operator files, the controller creates once, in ``<instance>/mosquitto/tls/``:

* ``ca.key`` / ``ca.crt``: a local certificate authority (EC P-256, ten years). Nodes pin
  ``ca.crt`` (enrollment writes it into their configuration), so it is kept for good: renewing the
  server certificate never replaces it.
* ``server.key`` / ``server.crt``: the broker's certificate, signed by that CA for
  ``public_host``, the listen address, the machine's own name and addresses, and loopback.
  It is reissued when it is missing, not signed by the current CA, no longer names
  ``public_host``, or has less than ``renew_before_days`` left (checked at every broker start and
  by the broker's supervisor twice a day; mosquitto re-reads it on SIGHUP, so no cluster is
  disconnected).

With ``cert_file``/``key_file`` (for example Let's Encrypt's ``fullchain.pem``/``privkey.pem``)
those are checked (the key must match) and copied to ``server.crt``/``server.key`` at each start,
so the broker, which runs as the ``mosquitto`` user, can read them; nodes then trust the public CA
of their system and there is no CA to pin. A renewal by certbot is taken in within twelve hours
(the supervisor's check), or at once by restarting the controller (e.g. a certbot ``--deploy-hook``).

Private keys are written 0600. The ``openssl`` command does the cryptography (Debian's
``openssl`` package), so no Python cryptography library is needed.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import logging
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from broadcaster.broker.base import BrokerError, atomic_write, is_wildcard

_LOGGER = logging.getLogger(__name__)

# The CA outlives any cluster's computer; nodes pin it, so it must not need replacing.
CA_VALID_DAYS = 3650
# A year: short enough that a leaked server key does not stay valid for long, long enough that a
# controller restarted rarely still renews in time (the supervisor also checks twice a day).
SERVER_VALID_DAYS = 365
RENEW_BEFORE_DAYS = 30
# Certificates are backdated a little so a node whose clock is a few minutes behind accepts them.
_BACKDATE = timedelta(hours=1)
_OPENSSL_TIMEOUT_S = 30


@dataclass(frozen=True)
class CertInfo:
    not_after: datetime
    names: frozenset[str]  # DNS names and IP addresses of subjectAltName


def _openssl(*args: str, input_text: str | None = None) -> str:
    binary = shutil.which("openssl")
    if binary is None:
        raise BrokerError("openssl is not installed (Debian/Ubuntu: apt-get install openssl)")
    try:
        done = subprocess.run(
            [binary, *args],
            input=input_text,
            capture_output=True,
            text=True,
            timeout=_OPENSSL_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BrokerError(f"openssl {args[0]} did not finish in {_OPENSSL_TIMEOUT_S} s") from exc
    if done.returncode != 0:
        raise BrokerError(f"openssl {args[0]} failed: {(done.stderr or done.stdout).strip()[-500:]}")
    return done.stdout


def _asn1_time(when: datetime) -> str:
    when = when.astimezone(UTC)
    # UTCTime until 2049, GeneralizedTime after (RFC 5280).
    return when.strftime("%y%m%d%H%M%SZ" if when.year < 2050 else "%Y%m%d%H%M%SZ")


def cert_info(cert: Path) -> CertInfo:
    """Expiry and subjectAltName entries of a PEM certificate."""
    text = _openssl("x509", "-in", str(cert), "-noout", "-enddate", "-ext", "subjectAltName")
    not_after: datetime | None = None
    names: set[str] = set()
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("notAfter="):
            not_after = datetime.strptime(line[len("notAfter=") :], "%b %d %H:%M:%S %Y %Z").replace(
                tzinfo=UTC
            )
        elif line.startswith(("DNS:", "IP Address:")):
            for item in line.split(","):
                kind, _, value = item.strip().partition(":")
                if kind in ("DNS", "IP Address"):
                    names.add(_canonical_name(value.strip()))
    if not_after is None:
        raise BrokerError(f"{cert}: no expiry date found")
    return CertInfo(not_after, frozenset(names))


def _canonical_name(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return value.lower()


def machine_names() -> list[str]:
    """This machine's host name and the addresses it is reached at, without asking any DNS
    server: the name, what /etc/hosts says about it, and the source address of the default route."""
    names = [socket.gethostname()]
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(socket.gethostname(), None, proto=socket.IPPROTO_TCP):
            names.append(str(info[4][0]))
    for family, probe in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((probe, 9))  # UDP connect sends nothing: it only picks a route
            names.append(str(sock.getsockname()[0]))
    return names


def server_names(public_host: str, listen: str, extra: list[str] | None = None) -> list[str]:
    """subjectAltName entries for the server certificate, ``public_host`` first, no duplicates."""
    wanted = [public_host]
    if not is_wildcard(listen):
        wanted.append(listen)
    wanted += list(extra if extra is not None else machine_names())
    wanted += ["localhost", "127.0.0.1", "::1"]
    out: list[str] = []
    for name in wanted:
        name = _canonical_name(name.strip().strip("[]"))
        if name and name not in out and not name.startswith("fe80:"):
            out.append(name)
    return out


def _san_config(names: list[str]) -> str:
    lines, dns, ip = [], 0, 0
    for name in names:
        try:
            ipaddress.ip_address(name)
        except ValueError:
            dns += 1
            lines.append(f"DNS.{dns} = {name}")
        else:
            ip += 1
            lines.append(f"IP.{ip} = {name}")
    return "\n".join(lines)


class TlsMaterial:
    """The files of the node listener in ``directory`` (see the module docstring)."""

    def __init__(
        self,
        directory: Path,
        public_host: str,
        *,
        listen: str = "127.0.0.1",
        cert_file: Path | None = None,
        key_file: Path | None = None,
        extra_names: list[str] | None = None,
        valid_days: int = SERVER_VALID_DAYS,
        renew_before_days: int = RENEW_BEFORE_DAYS,
        server_name: str = "server",
    ) -> None:
        """``server_name``: the stem of the server files; another server of the controller (the
        web interface's HTTPS, ``web/serve.py``) gets its own certificate from the same CA."""
        if (cert_file is None) != (key_file is None):
            raise BrokerError("give both broker.cert_file and broker.key_file, or neither")
        self.directory = Path(directory).absolute()
        self.public_host = public_host
        self.listen = listen
        self.cert_file = cert_file
        self.key_file = key_file
        self.extra_names = extra_names
        self.valid_days = valid_days
        self.renew_before_days = renew_before_days
        self.server_name = server_name

    @property
    def operator(self) -> bool:
        return self.cert_file is not None

    @property
    def ca_cert_path(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key_path(self) -> Path:
        return self.directory / "ca.key"

    @property
    def server_cert_path(self) -> Path:
        return self.directory / f"{self.server_name}.crt"

    @property
    def server_key_path(self) -> Path:
        return self.directory / f"{self.server_name}.key"

    def ca_pem(self) -> str | None:
        """The CA certificate nodes pin (PEM), or None with an operator's certificate (nodes then
        use their system's trusted CAs). Creates the CA when there is none yet."""
        if self.operator:
            return None
        with self._locked():
            self._ensure_ca()
        return self.ca_cert_path.read_text(encoding="ascii")

    # ------------------------------------------------------------------ checks

    def needs_renewal(self, now: datetime | None = None) -> str | None:
        """Why the server certificate must be (re)issued now, or None."""
        if self.operator:
            return None
        now = now or datetime.now(UTC)
        if not self.server_cert_path.exists() or not self.server_key_path.exists():
            return "no server certificate yet"
        try:
            _openssl(
                "verify", "-CAfile", str(self.ca_cert_path), "-no_check_time", str(self.server_cert_path)
            )
            info = cert_info(self.server_cert_path)
        except BrokerError as exc:
            return f"the server certificate is not valid for this CA ({exc})"
        if _canonical_name(self.public_host) not in info.names:
            return f"the server certificate does not name {self.public_host}"
        if info.not_after - now < timedelta(days=self.renew_before_days):
            return f"the server certificate expires on {info.not_after:%Y-%m-%d}"
        return None

    # ------------------------------------------------------------------ creation

    def ensure(self, now: datetime | None = None) -> bool:
        """Make ``server.crt``/``server.key`` usable; True when they changed."""
        with self._locked():
            if self.operator:
                return self._copy_operator_files(now or datetime.now(UTC))
            self._ensure_ca()
            reason = self.needs_renewal(now)
            if reason is None:
                return False
            _LOGGER.info("issuing the broker's server certificate for %s: %s", self.public_host, reason)
            start = (now or datetime.now(UTC)) - _BACKDATE
            self.issue_server_cert(start, start + _BACKDATE + timedelta(days=self.valid_days))
            return True

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # The CLI (enrollment) and a running controller may both create the CA: one at a time.
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o755)
        with (self.directory / ".lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _ensure_ca(self) -> None:
        if self.ca_cert_path.exists() and self.ca_key_path.exists():
            return
        _LOGGER.info("creating the broker's local certificate authority in %s", self.directory)
        key = _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256")
        atomic_write(self.ca_key_path, key, mode=0o600)
        config = (
            "[req]\ndistinguished_name = dn\nprompt = no\nx509_extensions = ca_ext\n"
            f"[dn]\nCN = Loa xa broker CA {secrets.token_hex(4)}\nO = Loa xa\n"
            "[ca_ext]\nbasicConstraints = critical,CA:TRUE,pathlen:0\n"
            "keyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n"
        )
        with tempfile.TemporaryDirectory(prefix="loa-ca-") as tmp:
            conf = Path(tmp) / "ca.cnf"
            conf.write_text(config, encoding="ascii")
            cert = _openssl(
                "req", "-x509", "-new", "-key", str(self.ca_key_path), "-sha256",
                "-days", str(CA_VALID_DAYS), "-config", str(conf),
            )  # fmt: skip
        atomic_write(self.ca_cert_path, cert, mode=0o644)

    def issue_server_cert(self, not_before: datetime, not_after: datetime) -> None:
        """Sign a new server key for :func:`server_names` with the local CA, valid between the two
        dates (tests issue an expired one this way)."""
        names = server_names(self.public_host, self.listen, self.extra_names)
        key = _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256")
        with tempfile.TemporaryDirectory(prefix="loa-cert-") as tmp:
            work = Path(tmp)
            key_tmp = work / "server.key"
            key_tmp.write_text(key, encoding="ascii")
            key_tmp.chmod(0o600)
            (work / "index.txt").write_text("")
            (work / "serial").write_text(secrets.token_hex(16) + "\n")
            cn = names[0] if len(names[0]) <= 64 else "loa-broker"
            (work / "ca.cnf").write_text(
                "[ca]\ndefault_ca = loa\n"
                f"[loa]\ndatabase = {work}/index.txt\nnew_certs_dir = {work}\nserial = {work}/serial\n"
                "default_md = sha256\npolicy = anything\nunique_subject = no\ncopy_extensions = none\n"
                "x509_extensions = server_ext\n"
                "[anything]\ncommonName = supplied\n"
                "[req]\ndistinguished_name = dn\nprompt = no\n"
                f"[dn]\nCN = {cn}\n"
                "[server_ext]\nbasicConstraints = critical,CA:FALSE\n"
                "keyUsage = critical,digitalSignature,keyEncipherment\nextendedKeyUsage = serverAuth\n"
                "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid,issuer\n"
                f"subjectAltName = @alt\n[alt]\n{_san_config(names)}\n",
                encoding="ascii",
            )
            _openssl("req", "-new", "-key", str(key_tmp), "-config", str(work / "ca.cnf"),
                     "-out", str(work / "server.csr"))  # fmt: skip
            _openssl(
                "ca", "-batch", "-notext", "-config", str(work / "ca.cnf"),
                "-cert", str(self.ca_cert_path), "-keyfile", str(self.ca_key_path),
                "-in", str(work / "server.csr"), "-out", str(work / "server.crt"),
                "-startdate", _asn1_time(not_before), "-enddate", _asn1_time(not_after),
            )  # fmt: skip
            cert = (work / "server.crt").read_text(encoding="ascii")
        atomic_write(self.server_key_path, key, mode=0o600)
        atomic_write(self.server_cert_path, cert, mode=0o644)

    def _copy_operator_files(self, now: datetime) -> bool:
        assert self.cert_file is not None and self.key_file is not None
        try:
            cert = Path(self.cert_file).read_bytes()
            key = Path(self.key_file).read_bytes()
        except OSError as exc:
            raise BrokerError(f"cannot read the broker certificate or key: {exc}") from exc
        cert_pub = _openssl("x509", "-in", str(self.cert_file), "-noout", "-pubkey")
        key_pub = _openssl("pkey", "-in", str(self.key_file), "-pubout")
        if cert_pub.strip() != key_pub.strip():
            raise BrokerError(
                f"broker.key_file {self.key_file} is not the key of broker.cert_file {self.cert_file}"
            )
        info = cert_info(Path(self.cert_file))
        if info.not_after <= now:
            _LOGGER.error("the broker certificate %s expired on %s: clusters will refuse it",
                          self.cert_file, f"{info.not_after:%Y-%m-%d}")  # fmt: skip
        elif info.not_after - now < timedelta(days=14):
            _LOGGER.warning(
                "the broker certificate %s expires on %s", self.cert_file, f"{info.not_after:%Y-%m-%d}"
            )
        if _canonical_name(self.public_host) not in info.names:
            _LOGGER.warning("the broker certificate %s does not name broker.public_host %s",
                            self.cert_file, self.public_host)  # fmt: skip
        changed = not (
            self.server_cert_path.exists()
            and self.server_key_path.exists()
            and self.server_cert_path.read_bytes() == cert
            and self.server_key_path.read_bytes() == key
        )
        if changed:
            atomic_write(self.server_key_path, key, mode=0o600)
            atomic_write(self.server_cert_path, cert, mode=0o644)
        return changed

    def broker_files(self) -> list[Path]:
        """The files mosquitto itself reads (handed to the ``mosquitto`` user); never the CA key."""
        return [self.server_cert_path, self.server_key_path]


@dataclass
class TlsListener:
    """The node listener: address, port (None: a free one at the first start), name and files."""

    material: TlsMaterial
    listen: str = "127.0.0.1"
    port: int | None = None
    public_host: str = "127.0.0.1"


def format_host(host: str) -> str:
    """``host`` for a URL (IPv6 addresses in brackets)."""
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


def node_url(public_host: str, tls_port: int) -> str:
    """The URL nodes use: ``mqtts://public_host:tls_port`` (credentials are added by enrollment)."""
    return f"mqtts://{format_host(public_host)}:{tls_port}"


def default_public_host(listen: str) -> str:
    """The listen address when it is one address, else this machine's host name."""
    return socket.gethostname() if is_wildcard(listen) else listen


__all__ = [
    "CertInfo",
    "TlsListener",
    "TlsMaterial",
    "cert_info",
    "default_public_host",
    "node_url",
    "server_names",
]

"""Small shared pieces of the managed broker: the error type, finding the binaries, ports, files."""

from __future__ import annotations

import contextlib
import glob
import ipaddress
import os
import shutil
import socket
from pathlib import Path

# Addresses that mean "every interface" in a listener line.
WILDCARD_ADDRESSES = frozenset({"", "0.0.0.0", "::"})
# The dynamic security plugin ships in Debian's mosquitto package under the multiarch folder.
_DYNSEC_GLOBS = (
    "/usr/lib/*/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/*/mosquitto_dynamic_security.so",
    "/opt/homebrew/lib/mosquitto_dynamic_security.so",
)


class BrokerError(RuntimeError):
    """The managed broker cannot be set up or started; the message says why."""


class PortInUseError(BrokerError):
    """A listener's port is held by a program that is not a broker of this instance."""

    def __init__(self, host: str, port: int, what: str) -> None:
        super().__init__(
            f"the {what} port {port} on {host} is in use by another program "
            f"(not a broker of this instance): free it or choose another port"
        )
        self.host = host
        self.port = port
        self.what = what


def find_mosquitto() -> Path:
    """Path of the ``mosquitto`` binary; :class:`BrokerError` with an install hint if missing."""
    found = shutil.which("mosquitto")
    if found:
        return Path(found)
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto"):
        if os.access(candidate, os.X_OK):
            return Path(candidate)
    raise BrokerError(
        "mosquitto is not installed: install the broker (Debian/Ubuntu: apt-get install mosquitto) "
        "or give an external broker with --mqtt-url"
    )


def find_dynsec_plugin() -> Path | None:
    """Path of mosquitto's dynamic security plugin, or None when this mosquitto has none."""
    for pattern in _DYNSEC_GLOBS:
        for found in sorted(glob.glob(pattern)):
            if os.access(found, os.R_OK):
                return Path(found)
    return None


def is_wildcard(address: str) -> bool:
    return address in WILDCARD_ADDRESSES


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def connect_host(address: str) -> str:
    """The address a local client uses to reach a listener bound to ``address``."""
    if address == "::":
        return "::1"
    return "127.0.0.1" if is_wildcard(address) else address


def _family(address: str) -> socket.AddressFamily:
    try:
        return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    except ValueError:
        return socket.AF_INET


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    host = "0.0.0.0" if host == "" else host
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_bindable(host: str, port: int) -> bool:
    """Whether a listener could bind ``host:port`` now (SO_REUSEADDR, as mosquitto sets it, so a
    connection in TIME_WAIT does not count as busy)."""
    host = "0.0.0.0" if host == "" else host
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def read_from(path: Path, offset: int) -> bytes:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            return fh.read()
    except OSError:
        return b""


def atomic_write(path: Path, text: str | bytes, mode: int) -> None:
    """Write to a temporary file and rename it, so a crash never leaves half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = text.encode("utf-8") if isinstance(text, str) else text
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise

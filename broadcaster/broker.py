"""A managed Mosquitto broker: generated config, password file and ACL, supervised subprocess.

The controller's ``serve`` uses it when no external broker is configured; the tests and the
benchmarks use it to run a real broker on a free loopback port::

    broker = ManagedBroker(workdir, users={"loa-01": "pw"}, node_zones={"loa-01": "thon-1"})
    broker.start()                       # returns once mosquitto accepts MQTT logins
    url = broker.controller_url          # mqtt://controller:<generated>@127.0.0.1:<port>
    broker.add_or_update_user("loa-02", "pw2", zone="thon-1"); broker.reload()
    broker.restart(); broker.stop()

The access rules are those of ``docs/protocol.md`` ("Access control"): a node logs in with its
speaker id as user name and may only publish its own status/health/events/time topics, read its
own cmd topic, its zone's cmd topic and the audio chunks; the controller user has full access
below the prefix.

Mosquitto drops privileges to the ``mosquitto`` user when started as root, so the broker's
folder and files are handed to that user. When that user cannot reach the folder (a parent is
not traversable, e.g. pytest's private ``/tmp/pytest-of-root``), the broker is told to keep
running as root instead and a warning is logged.

No MQTT client library is imported here (paho lives in ``broadcaster/transport/mqtt.py``): the
readiness probe speaks the few bytes of an MQTT 3.1.1 CONNECT itself.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import hashlib
import hmac
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import struct
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from speakers.protocol import DEFAULT_PREFIX, valid_id

_LOGGER = logging.getLogger(__name__)

# Mosquitto 2.x ``$7$`` hashes: PBKDF2-HMAC-SHA512, 12-byte salt, 64-byte digest, both base64.
# 101 iterations is mosquitto_passwd's own default; keep it so hashes are interchangeable.
PBKDF2_ITERATIONS = 101
_SALT_BYTES = 12

# A chunk is 64 KiB by default; the largest play command (a long file's chunk hashes) is a few
# tens of KiB. 4 MiB leaves room for bigger chunks without letting a client exhaust memory.
DEFAULT_MAX_PACKET_SIZE = 4 * 1024 * 1024
# A zone publish of a 360 KB file is ~6 chunks per node; a node offline for a day must not
# lose its queued commands, and 2,000 nodes share one broker.
DEFAULT_MAX_QUEUED = 100_000
# Mosquitto's default of 20 in-flight QoS 1 messages per client throttles chunk delivery.
DEFAULT_MAX_INFLIGHT = 1000
# Seconds between persistence saves: a crash loses at most this much broker state.
DEFAULT_AUTOSAVE_S = 5

_START_TIMEOUT_S = 15.0
_STOP_TIMEOUT_S = 10.0
_RESTART_BACKOFF_MAX_S = 30.0
# mosquitto's log is rotated (one old copy kept) once it grows past this.
LOG_MAX_BYTES = 5 * 1024 * 1024


class BrokerError(RuntimeError):
    """The managed broker cannot be set up or started; the message says why."""


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


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------------ passwords


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    """The mosquitto ``$7$`` (PBKDF2-SHA512) hash of ``password``, as mosquitto_passwd writes it."""
    if not isinstance(password, str) or not password:
        raise ValueError("password must be a non-empty string")
    if "\n" in password or "\r" in password:
        raise ValueError("password must not contain line breaks")
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, password_hash: str) -> bool:
    """True when ``password`` matches a ``$7$`` hash."""
    try:
        _, kind, iterations, salt, digest = password_hash.split("$")
        if kind != "7":
            return False
        computed = hashlib.pbkdf2_hmac(
            "sha512", password.encode("utf-8"), base64.b64decode(salt), int(iterations)
        )
        return hmac.compare_digest(computed, base64.b64decode(digest))
    except (ValueError, TypeError):
        return False


def _check_hash(password_hash: str) -> str:
    parts = password_hash.split("$") if isinstance(password_hash, str) else []
    if len(parts) != 5 or parts[0] != "" or parts[1] not in ("6", "7") or ":" in password_hash:
        raise ValueError("not a mosquitto password hash ($6$ or $7$)")
    return password_hash


def _check_user(username: str) -> str:
    # Nodes log in as their speaker id, and the ACL substitutes it into topics (%u), so user
    # names follow the id rules: no '/', '+', '#', ':' or spaces.
    if not isinstance(username, str) or not valid_id(username):
        raise ValueError(f"invalid MQTT user name {username!r}: use letters, digits, '_', '.', '-'")
    return username


# ----------------------------------------------------------------------------------- ACL


def render_acl(prefix: str, controller_users: Iterable[str], node_zones: Mapping[str, str | None]) -> str:
    """The ACL file of docs/protocol.md for ``prefix``."""
    p = prefix
    lines = [
        "# Generated by Loa xa (broadcaster/broker.py); see docs/protocol.md, 'Access control'.",
        "# Edits are overwritten: change users and zones through the controller.",
        "#",
        "# Every user: a node logs in with its speaker id as user name (%u) and may only",
        "# publish its own telemetry and receipts, and read its own commands and the audio.",
        f"pattern write {p}/speakers/%u/status",
        f"pattern write {p}/speakers/%u/health",
        f"pattern write {p}/speakers/%u/events",
        f"pattern write {p}/speakers/%u/time",
        f"pattern read {p}/speakers/%u/cmd",
        f"pattern read {p}/audio/#",
        "",
    ]
    for user in sorted(set(controller_users)):
        lines += [f"user {user}", f"topic readwrite {p}/#", "topic read $SYS/#", ""]
    for node, zone in sorted(node_zones.items()):
        if zone:
            lines += [f"user {node}", f"topic read {p}/zones/{zone}/cmd", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------- probe


def _mqtt_string(value: str) -> bytes:
    data = value.encode("utf-8")
    return struct.pack("!H", len(data)) + data


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def probe_login(host: str, port: int, username: str, password: str, timeout: float = 2.0) -> int | None:
    """Send one MQTT 3.1.1 CONNECT; return the CONNACK return code (0 = accepted, 4/5 = refused)
    or None when the broker does not answer."""
    client_id = f"loa-probe-{secrets.token_hex(4)}"
    variable = _mqtt_string("MQTT") + bytes([4, 0xC2]) + struct.pack("!H", 5)
    payload = _mqtt_string(client_id) + _mqtt_string(username) + _mqtt_string(password)
    packet = bytes([0x10]) + _remaining_length(len(variable) + len(payload)) + variable + payload
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(packet)
            reply = b""
            while len(reply) < 4:
                part = sock.recv(4 - len(reply))
                if not part:
                    return None
                reply += part
            if reply[0] != 0x20:
                return None
            code = reply[3]
            if code == 0:
                with contextlib.suppress(OSError):
                    sock.sendall(b"\xe0\x00")  # DISCONNECT: no last will
            return code
    except OSError:
        return None


# ------------------------------------------------------------------------------ broker


class ManagedBroker:
    """One mosquitto subprocess with its generated files in ``workdir``.

    ``users`` maps user name -> password (plain text, hashed here); ``password_hashes`` maps user
    name -> an existing ``$7$`` hash (e.g. from the speaker registry). ``node_zones`` maps speaker
    id -> zone id for the per-node zone ACL. The controller user gets full access; when it has no
    password in ``users``/``password_hashes`` one is generated and kept in ``workdir`` so that it
    survives restarts of the controller (see :attr:`controller_url`).

    ``port`` None picks a free port at the first start and keeps it across restarts.
    ``bind`` is the listener address (127.0.0.1 by default; 0.0.0.0 for real nodes on the LAN/VPN).
    """

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        users: Mapping[str, str] | None = None,
        node_zones: Mapping[str, str | None] | None = None,
        controller_user: str = "controller",
        prefix: str = DEFAULT_PREFIX,
        *,
        password_hashes: Mapping[str, str] | None = None,
        bind: str = "127.0.0.1",
        autosave_interval_s: int = DEFAULT_AUTOSAVE_S,
        max_queued_messages: int = DEFAULT_MAX_QUEUED,
        max_inflight_messages: int = DEFAULT_MAX_INFLIGHT,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        supervise: bool = True,
        binary: Path | None = None,
    ) -> None:
        if not prefix or not all(valid_id(part) for part in prefix.split("/")):
            raise ValueError(f"invalid topic prefix {prefix!r}")
        self.workdir = Path(workdir).absolute()
        self.prefix = prefix
        self.bind = bind
        self.controller_user = _check_user(controller_user)
        self.autosave_interval_s = int(autosave_interval_s)
        self.max_queued_messages = int(max_queued_messages)
        self.max_inflight_messages = int(max_inflight_messages)
        self.max_packet_size = int(max_packet_size)
        self.supervise = supervise
        self._binary = binary
        self._port = port
        self._lock = threading.RLock()
        self._hashes: dict[str, str] = {}
        self._plain: dict[str, str] = {}  # known plain passwords, for probes and url_for
        self._zones: dict[str, str | None] = {}
        for user, password_hash in (password_hashes or {}).items():
            self._hashes[_check_user(user)] = _check_hash(password_hash)
        for user, password in (users or {}).items():
            self._set_password(user, password)
        for node, zone in (node_zones or {}).items():
            self._zones[_check_user(node)] = self._check_zone(zone)
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._run_as_root = False
        self._set_up = False  # files written once by write_files()
        self._warned_root = False
        self._stderr_start = 0
        self.restarts = 0  # unexpected exits recovered by the supervisor
        self.log_max_bytes = LOG_MAX_BYTES
        self.reloads = 0  # SIGHUPs confirmed by mosquitto
        self._deferred = 0
        self._write_pending = False

    # ------------------------------------------------------------------ paths and urls

    @property
    def conf_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def passwd_path(self) -> Path:
        return self.workdir / "passwd"

    @property
    def acl_path(self) -> Path:
        return self.workdir / "acl"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    @property
    def stderr_path(self) -> Path:
        return self.workdir / "mosquitto.stderr"

    @property
    def port(self) -> int:
        if self._port is None:
            raise BrokerError("the broker has no port before start()")
        return self._port

    @property
    def host(self) -> str:
        return "127.0.0.1" if self.bind in ("0.0.0.0", "", "::") else self.bind

    def url_for(self, user: str, password: str | None = None) -> str:
        """``mqtt://user:password@host:port``; the password defaults to the one given for ``user``."""
        if password is None:
            password = self._plain.get(user)
            if password is None:
                raise BrokerError(f"no known plain password for MQTT user {user!r}")
        quote = urllib.parse.quote
        return f"mqtt://{quote(user, safe='')}:{quote(password, safe='')}@{self.host}:{self.port}"

    @property
    def controller_url(self) -> str:
        """URL with the controller's credentials (generated and kept in workdir if none given)."""
        return self.url_for(self.controller_user)

    @property
    def running(self) -> bool:
        proc = self._proc
        return proc is not None and proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # ------------------------------------------------------------------------ users

    @staticmethod
    def _check_zone(zone: str | None) -> str | None:
        if zone is not None and not valid_id(zone):
            raise ValueError(f"invalid zone id {zone!r}")
        return zone

    def _set_password(self, user: str, password: str) -> None:
        self._hashes[_check_user(user)] = hash_password(password)
        self._plain[user] = password

    def add_or_update_user(
        self,
        username: str,
        password: str | None = None,
        *,
        password_hash: str | None = None,
        zone: str | None = None,
        node: bool = True,
    ) -> None:
        """Add or change a user (plain password or ``$7$`` hash) and, for a node, its zone.

        Writes the files when the broker runs; call :meth:`reload` to apply them."""
        if (password is None) == (password_hash is None):
            raise ValueError("give exactly one of password or password_hash")
        if node:
            self._refuse_controller(username)
        with self._lock:
            if password is not None:
                self._set_password(username, password)
            else:
                self._hashes[_check_user(username)] = _check_hash(password_hash or "")
                self._plain.pop(username, None)
            if node:
                self._zones[username] = self._check_zone(zone)
            self._write_files_if_set_up()

    def _refuse_controller(self, username: str) -> None:
        # A speaker named like the controller's account would take over (or delete) the
        # controller's login and, through the node ACL, get nothing it should.
        if username == self.controller_user:
            raise BrokerError(f"{username!r} is the controller's account, not a node's")

    def remove_user(self, username: str, *, node: bool = True) -> None:
        """Remove a node's account (``node=False`` for another account; never the controller's
        through the node path)."""
        if node:
            self._refuse_controller(username)
        with self._lock:
            self._hashes.pop(username, None)
            self._plain.pop(username, None)
            self._zones.pop(username, None)
            self._write_files_if_set_up()

    def set_node_zone(self, speaker_id: str, zone: str | None) -> None:
        self._refuse_controller(speaker_id)
        with self._lock:
            self._zones[_check_user(speaker_id)] = self._check_zone(zone)
            self._write_files_if_set_up()

    def users(self) -> list[str]:
        return sorted(self._hashes)

    def node_zones(self) -> dict[str, str | None]:
        return dict(self._zones)

    # ------------------------------------------------------------------------ files

    def _ensure_controller_password(self) -> None:
        user = self.controller_user
        if user in self._plain:
            return
        secret_file = self.workdir / "controller.secret"
        if user in self._hashes and not secret_file.exists():
            return  # a hash was given by the caller: its password is theirs to keep
        if secret_file.exists():
            password = secret_file.read_text(encoding="utf-8").strip()
        else:
            password = secrets.token_urlsafe(24)
            _atomic_write(secret_file, password + "\n", mode=0o600)
        if user not in self._hashes or not verify_password(password, self._hashes[user]):
            self._hashes[user] = hash_password(password)
        self._plain[user] = password

    def config_text(self) -> str:
        d = self.data_dir
        lines = [
            "# Generated by Loa xa (broadcaster/broker.py). Edits are overwritten at start.",
            "per_listener_settings false",
            "allow_anonymous false",
            f"password_file {self.passwd_path}",
            f"acl_file {self.acl_path}",
            f"listener {self.port} {self.bind}",
            "protocol mqtt",
            "persistence true",
            f"persistence_location {d}/",
            f"autosave_interval {self.autosave_interval_s}",
            # Sessions of nodes that stay away for two weeks are dropped (MQTT 3.1.1 clients;
            # MQTT 5 clients set their own session expiry interval).
            "persistent_client_expiration 14d",
            f"max_queued_messages {self.max_queued_messages}",
            "max_queued_bytes 0",
            f"max_inflight_messages {self.max_inflight_messages}",
            f"max_packet_size {self.max_packet_size}",
            "set_tcp_nodelay true",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp true",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        ]
        if self._run_as_root:
            lines.append("user root")
        return "\n".join(lines) + "\n"

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Many user changes, the files written once at the end (then call :meth:`reload`)."""
        with self._lock:
            self._deferred += 1
            try:
                yield
            finally:
                self._deferred -= 1
                if not self._deferred and self._write_pending:
                    self._write_pending = False
                    self._write_files_if_set_up()

    def _write_files_if_set_up(self) -> None:
        if self._deferred:
            self._write_pending = True
            return
        if self._set_up:
            self._write_users_and_acl()

    def _write_users_and_acl(self) -> None:
        passwd = "".join(f"{user}:{h}\n" for user, h in sorted(self._hashes.items()))
        _atomic_write(self.passwd_path, passwd, mode=0o600)
        acl = render_acl(self.prefix, [self.controller_user], self._zones)
        _atomic_write(self.acl_path, acl, mode=0o600)
        self._hand_over()

    def write_files(self) -> None:
        """Write mosquitto.conf, the password file and the ACL (done by :meth:`start`)."""
        with self._lock:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.data_dir.mkdir(exist_ok=True)
            self._ensure_controller_password()
            if self._port is None:
                self._port = free_port(self.bind if self.bind not in ("", "::") else "0.0.0.0")
            self._run_as_root = os.geteuid() == 0 and not self._broker_user_can_reach()
            _atomic_write(self.conf_path, self.config_text(), mode=0o644)
            self._write_users_and_acl()
            self._set_up = True

    def _broker_account(self) -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam("mosquitto")
        except KeyError:
            return None

    def _broker_user_can_reach(self) -> bool:
        """Whether the ``mosquitto`` user can traverse every parent of the workdir."""
        account = self._broker_account()
        if account is None:
            return False
        for parent in self.workdir.parents:
            st = parent.stat()
            if st.st_uid == account.pw_uid:
                ok = st.st_mode & stat.S_IXUSR
            elif st.st_gid == account.pw_gid:
                ok = st.st_mode & stat.S_IXGRP
            else:
                ok = st.st_mode & stat.S_IXOTH
            if not ok:
                if self._warned_root:
                    return False
                self._warned_root = True
                _LOGGER.warning(
                    "mosquitto user cannot reach %s (%s is not traversable); running the broker as root",
                    self.workdir,
                    parent,
                )
                return False
        return True

    def _hand_over(self) -> None:
        """Give the broker's folder and files to the ``mosquitto`` user it drops privileges to."""
        account = self._broker_account()
        if account is None or self._run_as_root:
            return
        paths = [self.workdir, self.data_dir, self.passwd_path, self.acl_path, self.conf_path, self.log_path]
        paths += list(self.data_dir.iterdir()) if self.data_dir.exists() else []
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.chown(path, account.pw_uid, account.pw_gid)

    # --------------------------------------------------------------------- process

    def start(self, timeout: float = _START_TIMEOUT_S) -> None:
        """Write the files, start mosquitto and return once it accepts the controller's login."""
        with self._lock:
            if self.running:
                return
            self._stopping.clear()
            self.write_files()
            self._spawn(timeout)
            # mosquitto runs in its own session (a Ctrl-C is ours to handle): make sure it does
            # not outlive an interpreter that exits without calling stop().
            atexit.register(self._stop_at_exit)
            if self.supervise and (self._supervisor is None or not self._supervisor.is_alive()):
                self._supervisor = threading.Thread(
                    target=self._supervise, name=f"mosquitto-supervisor-{self.port}", daemon=True
                )
                self._supervisor.start()

    def _spawn(self, timeout: float) -> None:
        binary = self._binary or find_mosquitto()
        if self.log_path.exists() and self.log_path.stat().st_size > self.log_max_bytes:
            self._rotate_log()
        if not self.log_path.exists():
            self.log_path.touch()
            self._hand_over()
        log_start = self.log_path.stat().st_size
        # stderr goes to a file, not a pipe: nobody reads a pipe while the broker runs, and a
        # full pipe would block it.
        with self.stderr_path.open("ab") as stderr:
            self._stderr_start = stderr.tell()
            self._proc = subprocess.Popen(
                [str(binary), "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,  # a Ctrl-C on the controller's terminal is handled by the controller
            )
        _LOGGER.info("mosquitto started (pid %s) on %s:%s", self._proc.pid, self.bind, self.port)
        self._wait_ready(timeout, log_start)

    def _wait_ready(self, timeout: float, log_start: int) -> None:
        deadline = time.monotonic() + timeout
        password = self._plain[self.controller_user]
        delay = 0.005
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                raise BrokerError(f"mosquitto exited at start: {self._failure_text(log_start)}")
            code = probe_login(self.host, self.port, self.controller_user, password, timeout=1.0)
            if code == 0:
                return
            if code is not None:
                raise BrokerError(f"mosquitto refused the controller login (CONNACK code {code})")
            if time.monotonic() > deadline:
                self._terminate()
                raise BrokerError(
                    f"mosquitto did not accept connections on port {self.port} within {timeout:.0f} s: "
                    f"{self._failure_text(log_start)}"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _failure_text(self, log_start: int) -> str:
        stderr = _read_from(self.stderr_path, self._stderr_start)
        log = _read_from(self.log_path, log_start)
        text = (stderr + b"\n" + log).decode("utf-8", "replace").strip()
        return text[-2000:] or "no output"

    def _supervise(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            proc = self._proc
            if proc is None:
                return
            rc = proc.wait()
            with self._lock:
                if self._stopping.is_set():
                    return
                if proc is not self._proc:
                    continue  # restart() replaced it on purpose
                _LOGGER.error("mosquitto exited unexpectedly (code %s); restarting in %.1f s", rc, backoff)
            if self._stopping.wait(backoff):
                return
            with self._lock:
                if self._stopping.is_set() or proc is not self._proc:
                    continue
                try:
                    self._spawn(_START_TIMEOUT_S)
                    self.restarts += 1
                    backoff = 0.5
                except BrokerError as exc:
                    _LOGGER.error("mosquitto restart failed: %s", exc)
                    backoff = min(backoff * 2, _RESTART_BACKOFF_MAX_S)

    def _terminate(self, kill: bool = False) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _LOGGER.warning("mosquitto did not stop in %s s; killing it", _STOP_TIMEOUT_S)
            proc.kill()
            proc.wait()

    def restart(self, *, kill: bool = False, timeout: float = _START_TIMEOUT_S) -> None:
        """Stop mosquitto (SIGTERM, so it saves its sessions; SIGKILL with ``kill``) and start it
        again on the same port; returns once it accepts logins."""
        with self._lock:
            old = self._proc
            self._terminate(kill=kill)
            if old is not None and old is self._proc:
                self._proc = None
            self.write_files()
            self._spawn(timeout)

    def crash(self) -> None:
        """SIGKILL mosquitto without telling the supervisor (to test recovery)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()

    def reload(self, timeout: float = 5.0) -> None:
        """Rewrite the password file and ACL, and make mosquitto re-read them (SIGHUP).

        Returns after mosquitto logged the reload; as it is single-threaded, every login or
        publish that reaches it afterwards sees the new rules."""
        with self._lock:
            self.write_files()
            proc = self._proc
            if proc is None or proc.poll() is not None:
                return
            needle = b"Reloading config"
            offset = self._log_size()
            rotated = offset > self.log_max_bytes
            if rotated:
                # mosquitto writes "Reloading config" to the old file, then reopens the log.
                self._rotate_log()
            proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + timeout
            # Only what was written since the signal is read, never the whole log again.
            old_path = self._rotated_log_path if rotated else self.log_path
            scans = [[old_path, offset]] + ([[self.log_path, 0]] if rotated else [])
            while not self._found_since(scans, needle):
                if time.monotonic() > deadline:
                    raise BrokerError("mosquitto did not confirm the reload")
                time.sleep(0.005)
            self.reloads += 1

    @staticmethod
    def _found_since(scans: list[list[Any]], needle: bytes) -> bool:
        """Look for ``needle`` in what each file got past its offset; advance the offsets (keeping
        an overlap so a line written in two pieces is still found)."""
        for scan in scans:
            path, offset = scan
            new = _read_from(path, offset)
            if needle in new:
                return True
            scan[1] = offset + max(0, len(new) - len(needle))
        return False

    def _log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    @property
    def _rotated_log_path(self) -> Path:
        return self.log_path.with_name(self.log_path.name + ".1")

    def _rotate_log(self) -> None:
        """Keep one old copy; mosquitto creates the new file when it (re)opens its log."""
        try:
            os.replace(self.log_path, self._rotated_log_path)
        except OSError as exc:
            _LOGGER.warning("cannot rotate the mosquitto log %s: %s", self.log_path, exc)

    def stop(self) -> None:
        """Stop mosquitto and its supervisor (SIGTERM: the sessions are saved)."""
        self._stopping.set()
        with self._lock:
            self._terminate()
        supervisor = self._supervisor
        if supervisor is not None and supervisor is not threading.current_thread():
            supervisor.join(_STOP_TIMEOUT_S)
        self._supervisor = None
        atexit.unregister(self._stop_at_exit)

    def _stop_at_exit(self) -> None:
        if self.running:
            self.stop()

    def __enter__(self) -> ManagedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            return fh.read()
    except OSError:
        return b""


def _atomic_write(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


__all__ = [
    "BrokerError",
    "ManagedBroker",
    "find_mosquitto",
    "free_port",
    "hash_password",
    "probe_login",
    "render_acl",
    "verify_password",
]

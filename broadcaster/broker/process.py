"""A managed Mosquitto: generated files, supervised subprocess, reloads and disconnects.

The controller's ``serve`` uses it when no external broker is configured; the tests and the
benchmarks use it to run a real broker on a free loopback port::

    broker = ManagedBroker(workdir, users={"loa-01": "pw"}, node_zones={"loa-01": "thon-1"})
    broker.start()                       # returns once mosquitto accepts MQTT logins
    url = broker.controller_url          # mqtt://controller:<generated>@127.0.0.1:<port>
    broker.add_or_update_user("loa-02", "pw2", zone="thon-1"); broker.reload()
    broker.restart(); broker.stop()

Two listeners: the plain one on loopback (``bind``, 127.0.0.1) for the controller, and, with
``tls``, the node listener on ``tls.listen``:``tls.port`` (``conffile.py``). Logins are checked
against the password file and rights against the ACL file (``accounts.py``); both are re-read on
SIGHUP (:meth:`ManagedBroker.reload`). A reload disconnects nobody, so right after it the users
that were removed or given a new password are disconnected through mosquitto's dynamic security
plugin (``dynsec.py``): within a second, not at their next reconnection.

Every start, stop, restart and reload runs on the supervisor's thread (``supervisor.py``), which
restarts a crashed broker with a bounded backoff; the broker never outlives the controller
(``orphans.py``).
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import subprocess
import time
import urllib.parse
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

from broadcaster.broker import orphans
from broadcaster.broker.accounts import Accounts, check_user
from broadcaster.broker.base import (
    BrokerError,
    PortInUseError,
    atomic_write,
    connect_host,
    find_mosquitto,
    free_port,
    port_bindable,
)
from broadcaster.broker.conffile import Limits, NodeListener, render_config
from broadcaster.broker.dynsec import Dynsec
from broadcaster.broker.files import BrokerFiles
from broadcaster.broker.supervisor import Supervisor
from broadcaster.broker.tls import TlsListener, node_url
from broadcaster.broker.users import UserAdmin
from broadcaster.broker.wire import probe_login
from speakers.protocol import DEFAULT_PREFIX, valid_id

_LOGGER = logging.getLogger(__name__)

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
# Twice a day is plenty for a certificate renewed 30 days before it expires, and picks up an
# operator's renewed certificate (certbot) the same day.
_CERT_CHECK_INTERVAL_S = 12 * 3600.0
# Ports below this need root to bind: as root, mosquitto then starts as root and drops
# privileges itself (the parent-death signal is lost; the take-over at start still applies).
_PRIVILEGED_PORTS = 1024


class ManagedBroker(UserAdmin):
    """One mosquitto subprocess with its generated files in ``workdir``.

    ``users`` maps user name -> password (plain text, hashed here); ``password_hashes`` maps user
    name -> an existing ``$7$`` hash (e.g. from the speaker registry). ``node_zones`` maps speaker
    id -> zone id for the per-node zone ACL. The controller user gets full access; when it has no
    password in ``users``/``password_hashes`` one is generated and kept in ``workdir`` so that it
    survives restarts of the controller (see :attr:`controller_url`).

    ``port`` None picks a free port at the first start and keeps it across restarts. ``bind`` is
    the plain listener's address: loopback, for the controller (benchmarks may widen it).
    ``tls`` adds the node listener.
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
        tls: TlsListener | None = None,
        autosave_interval_s: int = DEFAULT_AUTOSAVE_S,
        max_queued_messages: int = DEFAULT_MAX_QUEUED,
        max_inflight_messages: int = DEFAULT_MAX_INFLIGHT,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        supervise: bool = True,
        binary: Path | None = None,
        dynsec: bool = True,
    ) -> None:
        if not prefix or not all(valid_id(part) for part in prefix.split("/")):
            raise ValueError(f"invalid topic prefix {prefix!r}")
        self.files = BrokerFiles(workdir)
        self.prefix = prefix
        self.bind = bind
        self.tls = tls
        self.controller_user = check_user(controller_user)
        self.limits = Limits(
            int(autosave_interval_s),
            int(max_queued_messages),
            int(max_inflight_messages),
            int(max_packet_size),
        )
        self._binary = binary
        self.dynsec = Dynsec(self.files, dynsec)
        self._port = port
        self.accounts = Accounts(protected=[self.controller_user])
        for user, password_hash in (password_hashes or {}).items():
            self.accounts.set_hash(user, password_hash)
        for user, password in (users or {}).items():
            self.accounts.set_password(user, password)
        for node, zone in (node_zones or {}).items():
            self.accounts.set_zone(node, zone)
        self._sup = Supervisor(
            "mosquitto",
            lambda: self._spawn(_START_TIMEOUT_S),
            lambda: self.files.output_since(self._stderr_start, None),
            restart=supervise,
            tick=self._check_certificate if tls is not None else None,
            tick_interval_s=_CERT_CHECK_INTERVAL_S,
        )
        self._stderr_start = 0
        self.reloads = 0  # SIGHUPs confirmed by mosquitto
        self.kicked = 0  # connections ended through the dynamic security plugin

    # ------------------------------------------------------------------ paths and urls

    workdir = property(lambda self: self.files.workdir)
    conf_path = property(lambda self: self.files.conf_path)
    passwd_path = property(lambda self: self.files.passwd_path)
    acl_path = property(lambda self: self.files.acl_path)
    dynsec_path = property(lambda self: self.files.dynsec_path)
    data_dir = property(lambda self: self.files.data_dir)
    log_path = property(lambda self: self.files.log_path)
    pid_path = property(lambda self: self.files.pid_path)

    @property
    def log_max_bytes(self) -> int:
        return self.files.log_max_bytes

    @log_max_bytes.setter
    def log_max_bytes(self, value: int) -> None:
        self.files.log_max_bytes = value

    @property
    def port(self) -> int:
        if self._port is None:
            raise BrokerError("the broker has no port before start()")
        return self._port

    @property
    def host(self) -> str:
        return connect_host(self.bind)

    @property
    def tls_port(self) -> int:
        if self.tls is None or self.tls.port is None:
            raise BrokerError("the broker has no node (TLS) listener port before start()")
        return self.tls.port

    @property
    def node_url(self) -> str:
        """``mqtts://public_host:tls_port``: what nodes connect to (credentials not included)."""
        if self.tls is None:
            raise BrokerError("this broker has no TLS listener for nodes")
        return node_url(self.tls.public_host, self.tls_port)

    @property
    def ca_pem(self) -> str | None:
        """The CA certificate nodes pin, or None with an operator's (publicly trusted) certificate."""
        if self.tls is None:
            raise BrokerError("this broker has no TLS listener for nodes")
        return self.tls.material.ca_pem()

    def url_for(self, user: str, password: str | None = None) -> str:
        """``mqtt://user:password@host:port``; the password defaults to the one given for ``user``."""
        if password is None:
            password = self.accounts.plain.get(user)
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
        proc = self._sup.current
        return proc is not None and proc.poll() is None

    @property
    def pid(self) -> int | None:
        proc = self._sup.current
        return proc.pid if proc is not None else None

    @property
    def restarts(self) -> int:
        """Unexpected exits recovered by the supervisor."""
        return self._sup.restarts

    @property
    def failure(self) -> str | None:
        """Why the supervisor gave up restarting mosquitto, or None."""
        return self._sup.failure

    # ------------------------------------------------------------------------ files

    def _hand_over(self) -> None:
        self.files.hand_over(self.tls.material.broker_files() if self.tls is not None else ())

    def config_text(self) -> str:
        node = None
        if self.tls is not None:
            material = self.tls.material
            node = NodeListener(
                self.tls.listen, self.tls_port, material.server_cert_path, material.server_key_path
            )
        return render_config(
            bind=self.bind,
            port=self.port,
            passwd=self.passwd_path,
            acl=self.acl_path,
            data_dir=self.data_dir,
            log=self.log_path,
            limits=self.limits,
            node=node,
            dynsec_plugin=self.dynsec.plugin,
            dynsec_file=self.dynsec_path,
            run_as_root=self.files.run_as_root,
        )

    def write_files(self) -> None:
        """Write mosquitto.conf, the password file and the ACL (done by :meth:`start`)."""
        with self.accounts.lock:
            self.files.make_dirs()
            self._ensure_controller_password()
            self.dynsec.load_secret()
            if self._port is None:
                self._port = free_port(self.bind)
            if self.tls is not None and self.tls.port is None:
                self.tls.port = free_port(self.tls.listen)
            self.files.decide_user()
            atomic_write(self.conf_path, self.config_text(), mode=0o644)
            self._write_users_and_acl()
            self._set_up = True

    # --------------------------------------------------------------------- process

    def start(self, timeout: float = _START_TIMEOUT_S) -> None:
        """Write the files, start mosquitto and return once it accepts the controller's login."""
        try:
            self._sup.call(self._do_start, timeout)
        except BaseException:
            self._sup.close()  # nothing runs: no thread either
            raise
        # Also stop it when the interpreter exits without calling stop().
        atexit.register(self._stop_at_exit)

    def _do_start(self, timeout: float) -> None:
        if self.running:
            return
        self._sup.reset()
        self._spawn(timeout)

    def _spawn(self, timeout: float) -> subprocess.Popen[bytes]:
        """Start mosquitto (on the supervisor's thread) and wait until it accepts logins."""
        binary = self._binary or find_mosquitto()
        orphans.stop_orphans(self.conf_path, self.pid_path)
        if self.tls is not None:
            self.tls.material.ensure()
        self.write_files()
        self.dynsec.write_file()
        self.accounts.take_kicks()  # nobody is connected to a broker that is starting
        self._check_ports()
        self.files.rotate_log_if_big()
        if not self.log_path.exists():
            self.log_path.touch()
        self._hand_over()
        log_start = self.files.log_size()
        kwargs: dict[str, Any] = {}
        account = self.files.broker_account()
        privileged = min([self.port] + ([self.tls_port] if self.tls else [])) < _PRIVILEGED_PORTS
        if account is not None and not self.files.run_as_root and not privileged:
            # Drop privileges here, not in mosquitto: a change of user id would clear the
            # parent-death signal (see orphans.py).
            kwargs = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        # stderr goes to a file, not a pipe: nobody reads a pipe while the broker runs, and a
        # full pipe would block it.
        with self.files.stderr_path.open("ab") as stderr:
            self._stderr_start = stderr.tell()
            proc = subprocess.Popen(
                [str(binary), "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,  # a Ctrl-C on the controller's terminal is handled by the controller
                preexec_fn=orphans.die_with_parent(os.getpid()),
                **kwargs,
            )
        self._sup.started(proc)
        atomic_write(self.pid_path, f"{proc.pid}\n", mode=0o644)
        where = f"{self.bind}:{self.port}" + (
            f", nodes on {self.tls.listen}:{self.tls.port}" if self.tls else ""
        )
        _LOGGER.info("mosquitto started (pid %s) on %s", proc.pid, where)
        self._wait_ready(proc, timeout, log_start)
        return proc

    def _check_ports(self) -> None:
        checks = [(self.bind, self.port, "broker")]
        if self.tls is not None:
            checks.append((self.tls.listen, self.tls_port, "node (TLS)"))
        for host, port, what in checks:
            if not port_bindable(host, port):
                raise PortInUseError(host, port, what)

    def _wait_ready(self, proc: subprocess.Popen[bytes], timeout: float, log_start: int) -> None:
        deadline = time.monotonic() + timeout
        password = self.accounts.plain[self.controller_user]
        delay = 0.005
        while True:
            if proc.poll() is not None:
                self._sup.release()
                raise BrokerError(
                    f"mosquitto exited at start: {self.files.output_since(self._stderr_start, log_start)}"
                )
            code = probe_login(self.host, self.port, self.controller_user, password, timeout=1.0)
            if code == 0:
                return
            if code is not None:
                raise BrokerError(f"mosquitto refused the controller login (CONNACK code {code})")
            if time.monotonic() > deadline:
                self._terminate()
                raise BrokerError(
                    f"mosquitto did not accept connections on port {self.port} within {timeout:.0f} s: "
                    f"{self.files.output_since(self._stderr_start, log_start)}"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _terminate(self, kill: bool = False) -> None:
        proc = self._sup.release()
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
        self._sup.call(self._do_restart, kill, timeout)

    def _do_restart(self, kill: bool, timeout: float) -> None:
        self._terminate(kill=kill)
        self._spawn(timeout)

    def _check_certificate(self) -> None:
        """Renew the local certificate when due, or take in an operator's renewed files (certbot);
        mosquitto re-reads certificates on SIGHUP, so no cluster is disconnected."""
        assert self.tls is not None
        if self.tls.material.ensure():
            _LOGGER.info("the broker's server certificate changed: reloading it")
            self._hand_over()
            self._do_reload(5.0)

    def crash(self) -> None:
        """SIGKILL mosquitto without telling the supervisor (to test recovery)."""
        proc = self._sup.current
        if proc is not None and proc.poll() is None:
            proc.kill()

    def reload(self, timeout: float = 5.0) -> None:
        """Rewrite the password file and ACL, make mosquitto re-read them (SIGHUP), then end the
        connections of users removed or given a new password since the last reload.

        Returns after mosquitto logged the reload and the plugin confirmed the disconnects; as
        it is single-threaded, every login or publish that reaches it afterwards sees the new rules."""
        if not self._sup.alive:
            self.write_files()  # never started: there is nothing to signal
            return
        self._sup.call(self._do_reload, timeout)

    def _do_reload(self, timeout: float) -> None:
        self.write_files()
        kicks = self.accounts.take_kicks()
        proc = self._sup.current
        if proc is None or proc.poll() is not None:
            return
        self.files.sighup_and_wait(proc, timeout)
        # mosquitto logs that line when it *starts* re-reading its files and forgets any SIGHUP
        # that arrives before it is done, so one login round trip: mosquitto is single-threaded
        # and answers it only after the reload, so the next reload's signal is never lost.
        password = self.accounts.plain[self.controller_user]
        if probe_login(self.host, self.port, self.controller_user, password, timeout=timeout) != 0:
            raise BrokerError("mosquitto did not accept the controller's login after the reload")
        self.reloads += 1
        if kicks:
            self.kicked += self.dynsec.kick(self.host, self.port, kicks)

    def stop(self) -> None:
        """Stop mosquitto and its supervisor (SIGTERM: the sessions are saved)."""
        if self._sup.alive:
            self._sup.call(self._stop_process)
            self._sup.close(_STOP_TIMEOUT_S)
        else:
            self._stop_process()
        atexit.unregister(self._stop_at_exit)

    def _stop_process(self) -> None:
        pid = self.pid
        self._terminate()
        with suppress(OSError):
            if pid is not None and self.pid_path.read_text().strip() == str(pid):
                self.pid_path.unlink()

    def _stop_at_exit(self) -> None:
        if self.running:
            self.stop()

    def __enter__(self) -> ManagedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["ManagedBroker", "TlsListener"]

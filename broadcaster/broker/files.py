"""The managed broker's folder: where each file lives, who owns it, and the log.

``<workdir>/`` holds ``mosquitto.conf``, ``passwd`` and ``acl`` (the accounts), the dynamic
security plugin's ``dynamic-security.json``, ``data/`` (persistence), ``mosquitto.log`` (rotated,
one old copy), ``mosquitto.stderr``, ``mosquitto.pid``, the generated ``controller.secret`` and
``dynsec-admin.secret`` (0600), and ``tls/`` (see ``tls.py``).

Mosquitto runs as the ``mosquitto`` user when the controller runs as root, so the folder and the
files it reads or writes are handed to that user; when that user cannot reach the folder (a
parent is not traversable, e.g. pytest's private ``/tmp/pytest-of-root``), the broker runs as
root instead and a warning is logged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import secrets
import signal
import stat
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from broadcaster.broker.base import BrokerError, atomic_write, read_from

_LOGGER = logging.getLogger(__name__)

# mosquitto's log is rotated (one old copy kept) once it grows past this.
LOG_MAX_BYTES = 5 * 1024 * 1024


class BrokerFiles:
    """Paths and ownership of one broker folder."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir).absolute()
        self.log_max_bytes = LOG_MAX_BYTES
        self.run_as_root = False
        self._warned_root = False

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
    def dynsec_path(self) -> Path:
        return self.workdir / "dynamic-security.json"

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
    def pid_path(self) -> Path:
        return self.workdir / "mosquitto.pid"

    @property
    def tls_dir(self) -> Path:
        return self.workdir / "tls"

    def make_dirs(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)

    def secret(self, name: str) -> str:
        """A generated password kept in ``workdir/name`` (0600), the same across restarts."""
        path = self.workdir / name
        if path.exists():
            return path.read_text(encoding="utf-8").strip()
        password = secrets.token_urlsafe(24)
        atomic_write(path, password + "\n", mode=0o600)
        return password

    # ------------------------------------------------------------------ ownership

    def broker_account(self) -> pwd.struct_passwd | None:
        """The ``mosquitto`` user, when we are root and it exists (else mosquitto runs as us)."""
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam("mosquitto")
        except KeyError:
            return None

    def decide_user(self) -> None:
        """Run as root only when root and the ``mosquitto`` user cannot reach the folder."""
        self.run_as_root = os.geteuid() == 0 and not self._broker_user_can_reach()

    def _broker_user_can_reach(self) -> bool:
        account = self.broker_account()
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
                if not self._warned_root:
                    self._warned_root = True
                    _LOGGER.warning(
                        "mosquitto user cannot reach %s (%s is not traversable); running the broker as root",
                        self.workdir,
                        parent,
                    )
                return False
        return True

    def hand_over(self, extra: Iterable[Path] = ()) -> None:
        """Give the folder and the files mosquitto reads or writes to the user it runs as."""
        account = self.broker_account()
        if account is None or self.run_as_root:
            return
        paths = [self.workdir, self.data_dir, self.passwd_path, self.acl_path, self.conf_path]
        paths += [self.log_path, self.dynsec_path, self.stderr_path, *extra]
        paths += list(self.data_dir.iterdir()) if self.data_dir.exists() else []
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.chown(path, account.pw_uid, account.pw_gid)

    # ------------------------------------------------------------------ log

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    @property
    def rotated_log_path(self) -> Path:
        return self.log_path.with_name(self.log_path.name + ".1")

    def rotate_log(self) -> None:
        """Keep one old copy; mosquitto creates the new file when it (re)opens its log."""
        try:
            os.replace(self.log_path, self.rotated_log_path)
        except OSError as exc:
            _LOGGER.warning("cannot rotate the mosquitto log %s: %s", self.log_path, exc)

    def rotate_log_if_big(self) -> None:
        if self.log_size() > self.log_max_bytes:
            self.rotate_log()

    def sighup_and_wait(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        """Make mosquitto re-read its files (SIGHUP) and wait until it logs that it does so."""
        needle = b"Reloading config"
        offset = self.log_size()
        rotated = offset > self.log_max_bytes
        if rotated:
            # mosquitto writes "Reloading config" to the old file, then reopens the log.
            self.rotate_log()
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        # Only what was written since the signal is read, never the whole log again.
        old_path = self.rotated_log_path if rotated else self.log_path
        scans = [[old_path, offset]] + ([[self.log_path, 0]] if rotated else [])
        while not self.found_since(scans, needle):
            if time.monotonic() > deadline:
                raise BrokerError("mosquitto did not confirm the reload")
            time.sleep(0.005)

    @staticmethod
    def found_since(scans: list[list[Any]], needle: bytes) -> bool:
        """Look for ``needle`` in what each file got past its offset; advance the offsets (keeping
        an overlap so a line written in two pieces is still found)."""
        for scan in scans:
            path, offset = scan
            new = read_from(path, offset)
            if needle in new:
                return True
            scan[1] = offset + max(0, len(new) - len(needle))
        return False

    def output_since(self, stderr_start: int, log_start: int | None) -> str:
        """What mosquitto wrote to stderr (and to its log, from ``log_start``), for error messages."""
        stderr = read_from(self.stderr_path, stderr_start)
        log = read_from(self.log_path, log_start) if log_start is not None else b""
        text = (stderr + b"\n" + log).decode("utf-8", "replace").strip()
        return text[-2000:] or "no output"

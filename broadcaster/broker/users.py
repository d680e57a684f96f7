"""The account half of :class:`broadcaster.broker.process.ManagedBroker`: users, zones, files.

Changes go to the in-memory book (``accounts.Accounts``) and, once the broker is set up, straight
to the password file and the ACL (once per :meth:`UserAdmin.batch`); :meth:`reload` makes
mosquitto read them and disconnects the users who lost their access.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from broadcaster.broker.accounts import (
    Accounts,
    check_hash,
    hash_password,
    render_acl,
    render_passwd,
    verify_password,
)
from broadcaster.broker.base import atomic_write

if TYPE_CHECKING:
    from broadcaster.broker.files import BrokerFiles


class UserAdmin:
    """Needs ``accounts``, ``files``, ``prefix``, ``controller_user`` and ``_hand_over()`` from
    the broker class; keeps ``_set_up`` (files written once), ``_deferred``, ``_write_pending``."""

    accounts: Accounts
    files: BrokerFiles
    prefix: str
    controller_user: str
    _set_up = False
    _deferred = 0
    _write_pending = False

    def _hand_over(self) -> None:
        raise NotImplementedError

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

        Writes the files when the broker runs; call :meth:`reload` to apply them (a changed
        password also ends the user's live connections then)."""
        if (password is None) == (password_hash is None):
            raise ValueError("give exactly one of password or password_hash")
        if node:
            self.accounts.refuse_protected(username)
        with self.accounts.lock:
            if password is not None:
                self.accounts.set_password(username, password)
            else:
                self.accounts.set_hash(username, check_hash(password_hash or ""))
            if node:
                self.accounts.set_zone(username, zone)
            self._write_files_if_set_up()

    def remove_user(self, username: str, *, node: bool = True) -> None:
        """Remove a node's account (``node=False`` for another account; never the controller's
        through the node path); its live connections end at the next :meth:`reload`."""
        if node:
            self.accounts.refuse_protected(username)
        with self.accounts.lock:
            self.accounts.remove(username)
            self._write_files_if_set_up()

    def set_node_zone(self, speaker_id: str, zone: str | None) -> None:
        self.accounts.refuse_protected(speaker_id)
        with self.accounts.lock:
            self.accounts.set_zone(speaker_id, zone)
            self._write_files_if_set_up()

    def users(self) -> list[str]:
        return sorted(self.accounts.hashes)

    def node_zones(self) -> dict[str, str | None]:
        return dict(self.accounts.zones)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Many user changes, the files written once at the end (then call :meth:`reload`)."""
        with self.accounts.lock:
            self._deferred += 1
            try:
                yield
            finally:
                self._deferred -= 1
                if not self._deferred and self._write_pending:
                    self._write_pending = False
                    self._write_files_if_set_up()

    def _ensure_controller_password(self) -> None:
        user = self.controller_user
        if user in self.accounts.plain:
            return
        if user in self.accounts.hashes and not (self.files.workdir / "controller.secret").exists():
            return  # a hash was given by the caller: its password is theirs to keep
        password = self.files.secret("controller.secret")
        current = self.accounts.hashes.get(user)
        if current is None or not verify_password(password, current):
            self.accounts.hashes[user] = hash_password(password)
        self.accounts.plain[user] = password

    def _write_files_if_set_up(self) -> None:
        if self._deferred:
            self._write_pending = True
            return
        if self._set_up:
            self._write_users_and_acl()

    def _write_users_and_acl(self) -> None:
        hashes, zones = self.accounts.snapshot()
        atomic_write(self.files.passwd_path, render_passwd(hashes), mode=0o600)
        acl = render_acl(self.prefix, [self.controller_user], zones)
        atomic_write(self.files.acl_path, acl, mode=0o600)
        self._hand_over()

"""Mosquitto's dynamic security plugin, used for one thing: ending the connections of users whose
access was taken away.

A SIGHUP makes mosquitto re-read the password file and the ACL but disconnects nobody, so after a
reload the users that were removed or given a new password are disconnected through the plugin
(``accounts.kick_commands``, sent by ``wire.py`` as its admin user). The plugin's own file holds
only that admin (``accounts.render_dynsec``); its password is generated and kept in the broker
folder. Without the plugin installed, a removed cluster keeps its connection until it reconnects.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from broadcaster.broker.accounts import ADMIN_USER, hash_password, kick_commands, render_dynsec
from broadcaster.broker.base import BrokerError, atomic_write, find_dynsec_plugin
from broadcaster.broker.files import BrokerFiles
from broadcaster.broker.wire import dynsec_control

_LOGGER = logging.getLogger(__name__)


class Dynsec:
    """The plugin (when installed and ``enabled``), its file and its admin's password."""

    def __init__(self, files: BrokerFiles, enabled: bool = True) -> None:
        self.files = files
        self.plugin: Path | None = find_dynsec_plugin() if enabled else None
        if enabled and self.plugin is None:
            _LOGGER.warning(
                "mosquitto's dynamic security plugin is not installed: a deleted or reset cluster "
                "keeps its connection until it reconnects"
            )
        self._admin_password = ""

    def load_secret(self) -> None:
        """Read (or generate) the admin's password; done each time the broker's files are written."""
        self._admin_password = self.files.secret("dynsec-admin.secret")

    def write_file(self) -> None:
        """The plugin's file, only while mosquitto is stopped: the running plugin rewrites it itself."""
        if self.plugin is not None:
            data = render_dynsec(hash_password(self._admin_password))
            atomic_write(self.files.dynsec_path, json.dumps(data, indent=2) + "\n", mode=0o600)

    def kick(self, host: str, port: int, users: list[str]) -> int:
        """End every connection of ``users``; returns how many were disconnected (failures logged)."""
        if self.plugin is None:
            return 0
        try:
            commands = kick_commands(users)
            responses = dynsec_control(host, port, ADMIN_USER, self._admin_password, commands)
        except BrokerError as exc:
            _LOGGER.error("could not disconnect %s removed or reset cluster(s): %s", len(users), exc)
            return 0
        failed = [r for r in responses if r.get("command") == "deleteClient" and r.get("error")]
        for response in failed:
            _LOGGER.error("disconnecting %s failed: %s", response.get("correlationData"), response["error"])
        _LOGGER.info("disconnected %s removed or reset cluster account(s)", len(users) - len(failed))
        return len(users) - len(failed)

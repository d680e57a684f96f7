"""Broker accounts: ``$7$`` password hashes, the password file, the ACL, and the account book.

The access rules are those of ``docs/protocol.md`` ("Access control"): a node logs in with its
speaker id as user name and may only publish its own status/health/events/time topics, read its
own cmd topic, its zone's cmd topic and the audio chunks; the controller user has full access
below the prefix. The same files serve the managed broker and, through ``broadcaster broker
export``, an operator's own mosquitto.

:class:`Accounts` is the in-memory book the files are rendered from. It also remembers which
users lost their access since the last reload (removed, or given a new password): the managed
broker disconnects those right after mosquitto re-read its files (see ``process.py``).

Why the password file and ACL file stay the authority, and the dynamic security plugin only
disconnects (measured with Debian 12's mosquitto 2.0.11):

* Its ACLs have no ``%u`` substitution, so 2,000 clusters would need 2,000 roles; and it rewrites
  its whole JSON file after every command: with 2,000 clients and roles (2.5 MB) a command costs
  ~45 ms, so re-keying a few hundred clusters would take tens of seconds.
* Its commands take plain passwords only, and the registry keeps only ``$7$`` hashes (its JSON
  file does take them: same PBKDF2-SHA512, salt and iterations, verified), and it ignores SIGHUP.
* The password file and the ACL file, by contrast, load 2,000 accounts in one go and reload in
  ~0.1 s, with hashes as they are. Mosquitto checks both files alongside the plugin: a user the
  plugin does not know falls through to them.
* What the files cannot do is end an open connection. The plugin can: deleting a client entry
  disconnects every connection of that user name. So a node about to be cut off gets an entry
  for an instant (:func:`kick_commands`): created without a password (which can never let anyone
  in) and deleted in the same message, after the reload. The plugin's own file then holds only the
  controller's admin account, so each command stays cheap.
* The commands go over the loopback listener with a few bytes of MQTT written in ``wire.py``:
  paho may only be imported by the transport, and ``mosquitto_ctrl`` would cost a process per
  command and put the admin password on a command line.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from speakers.protocol import valid_id

# Mosquitto 2.x ``$7$`` hashes: PBKDF2-HMAC-SHA512, 12-byte salt, 64-byte digest, both base64.
# 101 iterations is mosquitto_passwd's own default; keep it so hashes are interchangeable.
PBKDF2_ITERATIONS = 101
_SALT_BYTES = 12
# The account that sends dynamic-security commands (disconnects). It lives only in the plugin's
# own file, never in the password file; the registry refuses speaker ids starting with
# "loa-controller", so no cluster can ever be given this name.
ADMIN_USER = "loa-controller-admin"
DYNSEC_CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
_ADMIN_ROLE = "loa-admin"


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


def dynsec_password_fields(password_hash: str) -> dict[str, Any]:
    """A ``$7$`` hash as the dynamic security plugin's JSON stores it (same PBKDF2-SHA512 digest,
    salt and iteration count, in separate fields)."""
    _, kind, iterations, salt, digest = check_hash(password_hash).split("$")
    if kind != "7":
        raise ValueError("the dynamic security plugin only takes $7$ (PBKDF2-SHA512) hashes")
    return {"password": digest, "salt": salt, "iterations": int(iterations)}


def check_hash(password_hash: str) -> str:
    parts = password_hash.split("$") if isinstance(password_hash, str) else []
    if len(parts) != 5 or parts[0] != "" or parts[1] not in ("6", "7") or ":" in password_hash:
        raise ValueError("not a mosquitto password hash ($6$ or $7$)")
    return password_hash


def check_user(username: str) -> str:
    # Nodes log in as their speaker id, and the ACL substitutes it into topics (%u), so user
    # names follow the id rules: no '/', '+', '#', ':' or spaces.
    if not isinstance(username, str) or not valid_id(username):
        raise ValueError(f"invalid MQTT user name {username!r}: use letters, digits, '_', '.', '-'")
    return username


def check_zone(zone: str | None) -> str | None:
    if zone is not None and not valid_id(zone):
        raise ValueError(f"invalid zone id {zone!r}")
    return zone


# ----------------------------------------------------------------------------------- files


def render_acl(prefix: str, controller_users: Iterable[str], node_zones: Mapping[str, str | None]) -> str:
    """The ACL file of docs/protocol.md for ``prefix``."""
    p = prefix
    lines = [
        "# Generated by Loa xa (broadcaster/broker/accounts.py); see docs/protocol.md, 'Access control'.",
        "# Edits are overwritten: change users and zones through the controller.",
        "#",
        "# Every user: a node logs in with its speaker id as user name (%u) and may only",
        "# publish its own telemetry and receipts, and read its own commands, its schedule ahead",
        "# (lookahead) and the audio.",
        f"pattern write {p}/speakers/%u/status",
        f"pattern write {p}/speakers/%u/health",
        f"pattern write {p}/speakers/%u/events",
        f"pattern write {p}/speakers/%u/time",
        f"pattern read {p}/speakers/%u/cmd",
        f"pattern read {p}/speakers/%u/lookahead",
        f"pattern read {p}/audio/#",
        f"pattern read {p}/streams/#",
        "",
    ]
    for user in sorted(set(controller_users)):
        lines += [f"user {user}", f"topic readwrite {p}/#", "topic read $SYS/#", ""]
    for node, zone in sorted(node_zones.items()):
        if zone:
            lines += [f"user {node}", f"topic read {p}/zones/{zone}/cmd", ""]
    return "\n".join(lines)


def render_passwd(hashes: Mapping[str, str]) -> str:
    """A mosquitto password file (``user:hash`` lines, sorted)."""
    return "".join(f"{user}:{h}\n" for user, h in sorted(hashes.items()))


def render_dynsec(admin_hash: str) -> dict[str, Any]:
    """The dynamic security plugin's file: only the admin account, allowed nothing but the
    plugin's control topics. Nodes and the controller are not in it: they log in through the
    password file, and the ACL file decides what they may do."""

    def allow(acltype: str) -> dict[str, Any]:
        return {"acltype": acltype, "topic": "$CONTROL/dynamic-security/#", "allow": True, "priority": 0}

    return {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": False,
        },
        "clients": [
            {
                "username": ADMIN_USER,
                "textname": "Loa xa controller: disconnects removed clusters",
                "roles": [{"rolename": _ADMIN_ROLE}],
                **dynsec_password_fields(admin_hash),
            }
        ],
        "groups": [],
        "roles": [
            {
                "rolename": _ADMIN_ROLE,
                "acls": [
                    allow("publishClientSend"),
                    allow("publishClientReceive"),
                    allow("subscribePattern"),
                ],
            }
        ],
    }


def kick_commands(usernames: Iterable[str]) -> list[dict[str, Any]]:
    """Dynamic-security commands that disconnect every live connection of each user at once.

    The plugin disconnects a user's connections when its client entry is deleted; nodes have no
    entry (they log in through the password file), so one is created for the moment and deleted.
    An entry without a password never lets anyone in: the password file still decides."""
    commands: list[dict[str, Any]] = []
    for user in usernames:
        commands.append({"command": "createClient", "username": user, "correlationData": f"kick:{user}"})
        commands.append({"command": "deleteClient", "username": user, "correlationData": f"kick:{user}"})
    return commands


# ------------------------------------------------------------------------------ the book


class Accounts:
    """Users (hash, known plain password), node zones, and the users to disconnect at the next
    reload. Thread-safe; ``protected`` names (the controller's) are refused through the node path."""

    def __init__(self, protected: Iterable[str] = ()) -> None:
        self.lock = threading.RLock()
        self.hashes: dict[str, str] = {}
        self.plain: dict[str, str] = {}  # known plain passwords, for probes and url_for
        self.zones: dict[str, str | None] = {}
        self.protected = frozenset(protected) | {ADMIN_USER}
        self._kicks: set[str] = set()

    def refuse_protected(self, username: str) -> None:
        # A speaker named like the controller's account would take over (or delete) the
        # controller's login and, through the node ACL, get nothing it should.
        if username in self.protected:
            from broadcaster.broker.base import BrokerError

            raise BrokerError(f"{username!r} is the controller's account, not a node's")

    def set_password(self, user: str, password: str) -> None:
        self.set_hash(user, hash_password(password))
        self.plain[user] = password

    def set_hash(self, user: str, password_hash: str) -> None:
        with self.lock:
            old = self.hashes.get(check_user(user))
            self.hashes[user] = check_hash(password_hash)
            self.plain.pop(user, None)
            if old is not None and old != password_hash:
                self._kicks.add(user)  # a reset password ends the sessions opened with the old one

    def remove(self, user: str) -> None:
        with self.lock:
            if self.hashes.pop(user, None) is not None:
                self._kicks.add(user)
            self.plain.pop(user, None)
            self.zones.pop(user, None)

    def set_zone(self, node: str, zone: str | None) -> None:
        with self.lock:
            self.zones[check_user(node)] = check_zone(zone)

    def take_kicks(self) -> list[str]:
        """The users to disconnect since the last call (and forget them)."""
        with self.lock:
            out, self._kicks = sorted(self._kicks), set()
            return out

    def snapshot(self) -> tuple[dict[str, str], dict[str, str | None]]:
        with self.lock:
            return dict(self.hashes), dict(self.zones)

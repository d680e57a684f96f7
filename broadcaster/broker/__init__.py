"""The managed Mosquitto: process supervision, accounts and ACL, TLS material, sync.

* ``process.py``: :class:`ManagedBroker`, one supervised mosquitto with its generated files.
* ``supervisor.py``, ``orphans.py``: the thread that owns the process and restarts it (bounded),
  and the guards that keep a broker from outliving its controller.
* ``accounts.py``: password hashes, the password file and the ACL, the users to disconnect.
* ``dynsec.py``: ending the connections of removed users through the dynamic security plugin.
* ``wire.py``: the login probe and the dynamic-security control client (raw MQTT 3.1.1).
* ``tls.py``: the local CA and the server certificate of the node listener, or the operator's.
* ``conffile.py``, ``files.py``, ``base.py``: mosquitto.conf, the broker folder, shared helpers.
* ``sync.py``: the managed broker of ``serve`` and :class:`BrokerSync`, which keeps it in step
  with the speaker registry.
* ``export.py``: files for an operator's own mosquitto (``broadcaster broker export``).
* ``config.py``: the ``broker`` settings section.
"""

from broadcaster.broker.accounts import hash_password, render_acl, verify_password
from broadcaster.broker.base import BrokerError, PortInUseError, find_mosquitto, free_port
from broadcaster.broker.process import ManagedBroker, TlsListener
from broadcaster.broker.wire import probe_login

__all__ = [
    "BrokerError",
    "BrokerSync",
    "ManagedBroker",
    "NodeEndpoint",
    "PortInUseError",
    "TlsListener",
    "find_mosquitto",
    "free_port",
    "hash_password",
    "node_endpoint",
    "probe_login",
    "render_acl",
    "verify_password",
]


def __getattr__(name: str) -> object:
    # sync.py needs the database models; the registry imports this package for its hashes, so
    # sync.py is loaded on first use to keep that import light and free of cycles.
    if name in ("BrokerSync", "NodeEndpoint", "node_endpoint"):
        from broadcaster.broker import sync

        return getattr(sync, name)
    raise AttributeError(name)

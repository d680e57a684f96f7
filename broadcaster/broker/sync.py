"""The managed broker of ``broadcaster serve``, kept in step with the speaker registry.

It lives in ``<instance>/mosquitto/``; its users are the controller (password generated once and
kept there) and every enabled speaker of the registry with its stored mosquitto hash. The plain
port is chosen once and kept in ``<instance>/mosquitto/port``; the node listener follows the
``broker`` settings (``config.py``), its port kept in ``tls_port`` when chosen freely.

Registry changes (a speaker added, moved, disabled, deleted, its password reset) are applied by
:class:`BrokerSync`, a worker thread that coalesces a burst of changes (an import of thousands of
speakers) into one write of the files and one reload within ``BROKER_SYNC_WINDOW_S``; the
reload also disconnects the clusters that lost their access (``process.py``).

Changes reach the worker two ways:

* from this process, at once: the registry's ``on_change`` hook marks the speaker;
* from any other process (``broadcaster speaker enroll`` while ``serve`` runs, a second web
  worker, an operator's SQL): the database bumps ``registry_revision`` on every change of the
  ``speakers`` table (triggers, ``models.registry_revision_ddl``), and the worker reads that one
  number every ``REGISTRY_POLL_S``. When it moved, every speaker's account (id, hash, enabled,
  zone) is compared with the broker's book and the differences are marked like local changes.
  So a cluster enrolled, reset or deleted elsewhere is applied (and a live connection cut)
  within about ``REGISTRY_POLL_S + BROKER_SYNC_WINDOW_S``. The first poll always compares, so a
  change made between the start of the broker and the first poll is not lost either.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.broker.base import BrokerError, PortInUseError, is_loopback
from broadcaster.broker.process import ManagedBroker, TlsListener
from broadcaster.broker.tls import TlsMaterial, default_public_host, node_url

if TYPE_CHECKING:
    from broadcaster.fleet.registry import Registry, RegistryChange
    from broadcaster.settings import Settings

_LOGGER = logging.getLogger(__name__)

# How long the broker-sync worker gathers registry changes before one reload (~0.1 s each).
BROKER_SYNC_WINDOW_S = 0.1
# How often the worker reads the registry revision for changes made by another process: one tiny
# query a second; a moved revision costs one read of every account (20,000 rows: tens of ms).
REGISTRY_POLL_S = 1.0


def broker_dir(settings: Settings) -> Path:
    return (settings.instance / "mosquitto").resolve()


def tls_material(settings: Settings) -> TlsMaterial:
    cfg = settings.broker
    return TlsMaterial(
        broker_dir(settings) / "tls",
        cfg.public_host or default_public_host(cfg.listen),
        listen=cfg.listen,
        cert_file=cfg.cert_file,
        key_file=cfg.key_file,
    )


def _read_port(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class NodeEndpoint:
    """What a node needs to reach the managed broker: the ``mqtts://`` URL and the CA to pin
    (None with an operator's certificate: the node trusts its system's CAs)."""

    url: str
    ca_pem: str | None


def node_endpoint(settings: Settings) -> NodeEndpoint:
    """The node listener as the settings describe it, for enrollment (creates the local CA on
    first use, the same one a running controller uses)."""
    cfg = settings.broker
    port = cfg.tls_port or _read_port(broker_dir(settings) / "tls_port")
    if not port:
        raise BrokerError(
            "broker.tls_port is 0 and the controller has not chosen a port yet: start it once "
            "(broadcaster serve) or set broker.tls_port"
        )
    material = tls_material(settings)
    return NodeEndpoint(node_url(material.public_host, port), material.ca_pem())


def start_managed_broker(
    settings: Settings, registry: Registry, sessions: sessionmaker[Session], controller_user: str
) -> tuple[ManagedBroker, BrokerSync]:
    """Start the managed broker with the registry's accounts; returns it and its sync worker
    (the caller hooks :meth:`BrokerSync.registry_changed` to the registry)."""
    workdir = broker_dir(settings)
    workdir.mkdir(parents=True, exist_ok=True)
    port_file, tls_port_file = workdir / "port", workdir / "tls_port"
    cfg = settings.broker
    port = _read_port(port_file)
    tls_port = cfg.tls_port or _read_port(tls_port_file)
    hashes = registry.password_hashes()
    zones = registry.zones_of_speakers()

    def make(port: int | None, tls_port: int | None) -> ManagedBroker:
        material = tls_material(settings)
        return ManagedBroker(
            workdir,
            port=port,
            controller_user=controller_user,
            prefix=settings.mqtt_prefix,
            password_hashes=hashes,
            node_zones={sid: zones.get(sid) for sid in hashes},
            tls=TlsListener(material, cfg.listen, tls_port, material.public_host),
        )

    # A busy port is replaced once: the plain one always (nodes never see it), the node one only on
    # loopback (real clusters are configured with it); each retry clears one, so this ends.
    while True:
        broker = make(port, tls_port)
        try:
            broker.start()
            break
        except PortInUseError as exc:
            if exc.what == "broker" and port is not None:
                _LOGGER.warning("managed broker: port %s in use, choosing another", port)
                port = None
            elif exc.what != "broker" and is_loopback(cfg.listen) and tls_port is not None:
                _LOGGER.warning(
                    "managed broker: node port %s on %s in use, using a free one (set broker.tls_port)",
                    tls_port,
                    cfg.listen,
                )
                tls_port = None
            else:
                raise
        except BrokerError:
            if port is None:
                raise
            _LOGGER.warning("managed broker: port %s unusable, choosing another", port)
            port = None
    port_file.write_text(f"{broker.port}\n")
    if cfg.tls_port == 0:
        tls_port_file.write_text(f"{broker.tls_port}\n")
    _LOGGER.info(
        "managed broker on 127.0.0.1:%s, clusters connect to %s (%s clusters)",
        broker.port,
        broker.node_url,
        len(hashes),
    )
    return broker, BrokerSync(broker, sessions)


def stop_managed_broker(broker: ManagedBroker, syncer: BrokerSync | None) -> None:
    """Apply what is pending, then stop the worker and the broker."""
    if syncer is not None:
        syncer.stop()
    broker.stop()


class BrokerSync:
    """Applies registry changes to the managed broker from a worker thread, a burst at a time:
    ``mark(speaker_id)`` is instant; within ``window_s`` every marked speaker is read from the
    database, its account added, changed or removed, the files written once and mosquitto
    reloaded once (which disconnects the speakers removed, disabled or given a new password)."""

    def __init__(
        self,
        broker: ManagedBroker,
        sessions: sessionmaker[Session],
        window_s: float = BROKER_SYNC_WINDOW_S,
        poll_s: float = REGISTRY_POLL_S,
    ) -> None:
        self.broker = broker
        self.sessions = sessions
        self.window_s = window_s
        self.poll_s = poll_s
        self.batches = 0
        self.external_changes = 0  # speakers found changed by another process
        self._revision: int | None = None  # the registry revision last compared
        self._next_poll = 0.0
        self._poll_failed = False
        self._dirty: set[str] = set()
        self._busy = False
        self._stopping = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="broker-sync", daemon=True)
        self._thread.start()

    def registry_changed(self, change: RegistryChange) -> None:
        """Registry hook: a speaker's account may have changed."""
        if change.speaker_id is not None:
            self.mark(change.speaker_id)

    def mark(self, speaker_id: str) -> None:
        with self._cond:
            self._dirty.add(speaker_id)
            self._cond.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every marked change is applied; True when it was."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._dirty or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self._cond.wait(remaining)
            return True

    def stop(self, timeout: float = 10.0) -> None:
        """Apply what is pending, then end the worker."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            if time.monotonic() >= self._next_poll:
                self._next_poll = time.monotonic() + self.poll_s
                self._poll_registry()
            with self._cond:
                while not self._dirty and not self._stopping:
                    left = self._next_poll - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if not self._dirty:
                    if self._stopping:
                        return
                    continue  # time to poll
                # Gather the rest of the burst (each mark() notifies: wait out the whole window).
                deadline = time.monotonic() + self.window_s
                while not self._stopping and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
                batch, self._dirty = self._dirty, set()
                self._busy = True
            try:
                self._apply(batch)
            except Exception:
                _LOGGER.exception("managed broker: applying %s registry change(s) failed", len(batch))
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    # ------------------------------------------------------------ changes of other processes

    def _poll_registry(self) -> None:
        """Mark the speakers changed by another process, when the registry revision moved."""
        from broadcaster.models import RegistryRevision

        try:
            with self.sessions() as session:
                revision = session.scalar(select(RegistryRevision.revision).where(RegistryRevision.id == 1))
            if revision is not None and revision == self._revision:
                return
            changed = self._differences()
        except Exception as exc:  # the database may be briefly unavailable: say it once
            if not self._poll_failed:
                _LOGGER.warning("managed broker: cannot read the registry for outside changes: %s", exc)
            self._poll_failed = True
            return
        self._poll_failed = False
        self._revision = revision
        if changed:
            _LOGGER.info(
                "managed broker: %s cluster account(s) changed outside this process: %s",
                len(changed),
                ", ".join(sorted(changed)[:10]) + (" ..." if len(changed) > 10 else ""),
            )
            self.external_changes += len(changed)
            with self._cond:
                self._dirty.update(changed)
                self._cond.notify_all()

    def _differences(self) -> set[str]:
        """Speakers whose account in the database differs from the broker's book."""
        from broadcaster.models import Speaker

        with self.sessions() as session:
            rows = session.execute(
                select(Speaker.id, Speaker.mqtt_password_hash, Speaker.enabled, Speaker.zone_id)
            ).all()
        wanted = {r.id: (r.mqtt_password_hash, r.zone_id) for r in rows if r.enabled and r.mqtt_password_hash}
        hashes, zones = self.broker.accounts.snapshot()
        hashes.pop(self.broker.controller_user, None)
        current = {sid: (hashed, zones.get(sid)) for sid, hashed in hashes.items()}
        return {sid for sid in wanted.keys() | current.keys() if wanted.get(sid) != current.get(sid)}

    def _apply(self, speaker_ids: set[str]) -> None:
        from broadcaster.models import Speaker

        with self.sessions() as session:
            rows = {sid: session.get(Speaker, sid) for sid in speaker_ids}
            wanted = {
                sid: (row.mqtt_password_hash, row.zone_id)
                for sid, row in rows.items()
                if row is not None and row.enabled and row.mqtt_password_hash
            }
        with self.broker.batch():
            for sid in sorted(speaker_ids):
                try:
                    if sid in wanted:
                        hashed, zone = wanted[sid]
                        self.broker.add_or_update_user(sid, password_hash=hashed, zone=zone)
                    else:
                        self.broker.remove_user(sid)
                except (BrokerError, ValueError) as exc:
                    _LOGGER.error("managed broker: speaker %s not applied: %s", sid, exc)
        self.broker.reload()
        self.batches += 1

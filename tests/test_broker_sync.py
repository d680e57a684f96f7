"""The controller's managed broker follows the registry: a cluster disabled, reset or deleted in
"Loa và khu vực" (or the API) loses its live TLS connection within seconds (real mosquitto)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from broadcaster.broker import probe_login
from broadcaster.broker.sync import node_endpoint
from broadcaster.services import Services, build_services
from broadcaster.settings import load_settings
from tests.fixtures_broker import TlsNode

pytestmark = pytest.mark.integration


def _settings(instance: Path, **overrides: object):  # type: ignore[no-untyped-def]
    return load_settings(
        {
            "instance": instance,
            "tts": {"order": ["espeak-ng"]},
            "scheduling": {"schedules_dir": instance / "schedules"},
            "broker": {"tls_port": 0},
            **overrides,
        },
        environ={},
    )


@pytest.fixture
def instance() -> Iterator[Path]:
    # Traversable by the mosquitto user (pytest's tmp_path is not), as a real instance folder is.
    root = Path(tempfile.mkdtemp(prefix="loa-instance-"))
    root.chmod(0o755)
    yield root / "instance"
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def services(instance: Path) -> Iterator[Services]:
    services = build_services(_settings(instance), scheduler=False)
    services.start()
    yield services
    services.close()


def _node(services: Services, speaker: str, password: str) -> TlsNode:
    broker = services.broker
    return TlsNode(broker.tls_port, speaker, password, broker.tls.material.ca_cert_path)


def test_the_node_listener_is_what_enrollment_hands_out(services: Services) -> None:
    broker = services.broker
    endpoint = node_endpoint(services.settings)
    assert endpoint.url == broker.node_url == f"mqtts://127.0.0.1:{broker.tls_port}"
    assert endpoint.ca_pem == broker.ca_pem and "BEGIN CERTIFICATE" in endpoint.ca_pem
    kept = services.settings.instance.resolve() / "mosquitto" / "tls_port"
    assert kept.read_text().strip() == str(broker.tls_port)  # chosen once, kept
    assert (services.settings.instance / "mosquitto" / "tls" / "ca.key").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("change", ["disabled", "reset", "deleted"])
def test_a_cluster_changed_in_the_registry_is_cut_off_within_5_s(services: Services, change: str) -> None:
    registry = services.registry
    registry.create_zone("thon-1", "Thôn Đông")
    _, password = registry.create_speaker("loa-01", "Cụm loa 1", "thon-1")
    _, other_password = registry.create_speaker("loa-02", "Cụm loa 2", "thon-1")
    assert services.broker_sync.flush(10)
    node, other = _node(services, "loa-01", password), _node(services, "loa-02", other_password)
    try:
        assert node.connected.wait(10), node.refused
        assert other.connected.wait(10), other.refused
        new_password = None
        if change == "disabled":
            registry.update_speaker("loa-01", enabled=False)
        elif change == "reset":
            new_password = registry.reset_speaker_password("loa-01")
        else:
            registry.delete_speaker("loa-01")
        assert node.disconnected.wait(5), f"a {change} cluster kept its connection"
        broker = services.broker
        ctx = TlsNode.context(broker.tls.material.ca_cert_path)
        assert probe_login("127.0.0.1", broker.tls_port, "loa-01", password, ssl_context=ctx) == 5
        if new_password is not None:
            assert probe_login("127.0.0.1", broker.tls_port, "loa-01", new_password, ssl_context=ctx) == 0
        assert other.client.is_connected() and not other.disconnected.is_set()
    finally:
        node.close()
        other.close()


def test_a_busy_node_port_on_loopback_is_replaced_and_the_controller_still_starts(instance: Path) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        services = build_services(_settings(instance, broker={"tls_port": busy}), scheduler=False)
        try:
            services.start()
            broker = services.broker
            assert broker.tls_port != busy and broker.running and services.transport.connected
        finally:
            services.close()

"""The node listener: TLS with the generated CA, refusals, renewal, and disconnects within seconds
(real mosquitto, real openssl, a real paho client as the node)."""

from __future__ import annotations

import logging
import socket
import ssl
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from broadcaster.broker import probe_login
from broadcaster.broker.tls import TlsMaterial, cert_info, machine_names
from tests.fixtures_broker import BrokerFixture, node_password
from tests.fixtures_broker import TlsNode as Node

pytestmark = pytest.mark.integration

ACCEPTED, NOT_AUTHORIZED = 0, 5


@pytest.fixture
def tls_broker(mosquitto_factory) -> BrokerFixture:  # type: ignore[no-untyped-def]
    fx: BrokerFixture = mosquitto_factory(tls=True)
    fx.add_nodes({"loa-01": "thon-1", "loa-02": "thon-1"})
    return fx


def _probe(fx: BrokerFixture, user: str, password: str, cafile: Path | None = None) -> int | None:
    return probe_login("127.0.0.1", fx.broker.tls_port, user, password, ssl_context=fx.tls_context(cafile))


def test_node_logs_in_over_tls_with_the_generated_ca(tls_broker: BrokerFixture) -> None:
    b = tls_broker.broker
    assert b.node_url == f"mqtts://127.0.0.1:{b.tls_port}"
    assert b.ca_pem is not None and b.ca_pem.startswith("-----BEGIN CERTIFICATE-----")
    assert _probe(tls_broker, "loa-01", node_password("loa-01")) == ACCEPTED
    assert _probe(tls_broker, "loa-01", "wrong") == NOT_AUTHORIZED
    node = Node(b.tls_port, "loa-02", node_password("loa-02"), b.tls.material.ca_cert_path)
    try:
        assert node.connected.wait(10), node.refused
    finally:
        node.close()
    # The node listener speaks only TLS: a plain MQTT login gets no answer.
    assert probe_login("127.0.0.1", b.tls_port, "loa-01", node_password("loa-01"), timeout=2) is None


def test_plain_listener_is_loopback_only_and_nodes_get_tls_1_2_or_newer(tls_broker: BrokerFixture) -> None:
    b = tls_broker.broker
    lines = b.conf_path.read_text().splitlines()
    assert f"listener {b.port} 127.0.0.1" in lines
    i = lines.index(f"listener {b.tls_port} 127.0.0.1")
    assert lines[i + 1 : i + 6] == [
        "protocol mqtt",
        f"certfile {b.tls.material.server_cert_path}",
        f"keyfile {b.tls.material.server_key_path}",
        "tls_version tlsv1.2",
        "require_certificate false",
    ]
    assert [line for line in lines if line.startswith("listener ")] == [
        f"listener {b.port} 127.0.0.1",
        f"listener {b.tls_port} 127.0.0.1",
    ]
    old = tls_broker.tls_context()
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer TLS 1.1: the broker must refuse it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError, match="(?i)protocol.version"):
        probe_login("127.0.0.1", b.tls_port, "loa-01", node_password("loa-01"), ssl_context=old)


def test_wrong_ca_is_refused_with_a_clear_error(tls_broker: BrokerFixture, tmp_path: Path) -> None:
    other = TlsMaterial(tmp_path / "other", "127.0.0.1")
    other.ensure()
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        _probe(tls_broker, "loa-01", node_password("loa-01"), cafile=other.ca_cert_path)


def test_expired_server_certificate_is_refused(
    mosquitto_factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    """An operator's certificate that expired (a failed renewal): the broker still starts, says
    so in its log, and nodes refuse it."""
    issuer = TlsMaterial(tmp_path / "issuer", "127.0.0.1")
    issuer.ensure()
    now = datetime.now(UTC)
    issuer.issue_server_cert(now - timedelta(days=400), now - timedelta(days=1))
    assert cert_info(issuer.server_cert_path).not_after < now
    caplog.set_level(logging.ERROR, logger="broadcaster.broker.tls")
    fx: BrokerFixture = mosquitto_factory(tls=True)
    fx.broker.stop()
    material = fx.broker.tls.material
    material.cert_file, material.key_file = issuer.server_cert_path, issuer.server_key_path
    fx.broker.start()
    fx.add_node("loa-01", "thon-1")
    assert any("expired" in r.getMessage() for r in caplog.records)
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate has expired"):
        _probe(fx, "loa-01", node_password("loa-01"), cafile=issuer.ca_cert_path)


def test_renewal_keeps_the_ca_that_nodes_pinned(tls_broker: BrokerFixture) -> None:
    b = tls_broker.broker
    material = b.tls.material
    ca_before = material.ca_cert_path.read_bytes()
    pinned = tls_broker.tls_context()  # what a node enrolled before the renewal holds
    now = datetime.now(UTC)
    material.issue_server_cert(now - timedelta(days=340), now + timedelta(days=10))  # 10 days left
    assert material.needs_renewal() is not None and "expires" in material.needs_renewal()
    node = Node(b.tls_port, "loa-02", node_password("loa-02"), material.ca_cert_path)
    try:
        assert node.connected.wait(10)
        old_pid, reloads = b.pid, b.reloads
        b._sup.call(b._check_certificate)  # what the supervisor runs twice a day
        assert b.pid == old_pid and b.reloads == reloads + 1  # a reload, not a restart
        assert node.client.is_connected() and not node.disconnected.is_set()
    finally:
        node.close()
    assert material.ca_cert_path.read_bytes() == ca_before
    assert cert_info(material.server_cert_path).not_after > now + timedelta(days=300)
    assert material.needs_renewal() is None
    assert probe_login("127.0.0.1", b.tls_port, "loa-01", node_password("loa-01"), ssl_context=pinned) == 0
    with (
        socket.create_connection(("127.0.0.1", b.tls_port)) as raw,
        pinned.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        served = datetime.strptime(tls.getpeercert()["notAfter"], "%b %d %H:%M:%S %Y %Z").replace(tzinfo=UTC)
    assert served > now + timedelta(days=300)  # the renewed certificate is the one served


def test_certificate_names_public_host_and_is_reissued_when_it_changes(tmp_path: Path) -> None:
    material = TlsMaterial(tmp_path / "tls", "loa.xa-dong.vn", listen="0.0.0.0")
    assert material.ensure() is True
    assert material.ensure() is False  # nothing to do the second time
    names = cert_info(material.server_cert_path).names
    assert {"loa.xa-dong.vn", "localhost", "127.0.0.1", "::1"} <= names
    assert {n for n in machine_names() if not n.startswith("fe80")} <= names | {n.lower() for n in names}
    assert material.server_key_path.stat().st_mode & 0o077 == 0
    assert material.ca_key_path.stat().st_mode & 0o077 == 0
    ca = material.ca_cert_path.read_bytes()
    moved = TlsMaterial(tmp_path / "tls", "203.0.113.7", listen="0.0.0.0")
    assert "does not name" in (moved.needs_renewal() or "")
    assert moved.ensure() is True
    assert "203.0.113.7" in cert_info(material.server_cert_path).names
    assert material.ca_cert_path.read_bytes() == ca


def test_disabled_and_reset_clusters_are_refused_at_login(tls_broker: BrokerFixture) -> None:
    b = tls_broker.broker
    b.remove_user("loa-01")  # deleted or disabled in the registry
    b.add_or_update_user("loa-02", "mật-khẩu-mới", zone="thon-1")  # password reset
    b.reload()
    assert _probe(tls_broker, "loa-01", node_password("loa-01")) == NOT_AUTHORIZED
    assert _probe(tls_broker, "loa-02", node_password("loa-02")) == NOT_AUTHORIZED
    assert _probe(tls_broker, "loa-02", "mật-khẩu-mới") == ACCEPTED


@pytest.mark.parametrize("change", ["deleted", "reset"])
def test_a_connected_cluster_is_cut_off_within_5_s(tls_broker: BrokerFixture, change: str) -> None:
    b = tls_broker.broker
    cafile = b.tls.material.ca_cert_path
    victim = Node(b.tls_port, "loa-01", node_password("loa-01"), cafile)
    bystander = Node(b.tls_port, "loa-02", node_password("loa-02"), cafile)
    try:
        assert victim.connected.wait(10) and bystander.connected.wait(10)
        if change == "deleted":
            b.remove_user("loa-01")
        else:
            b.add_or_update_user("loa-01", "mật-khẩu-mới", zone="thon-1")
        b.reload()
        assert victim.disconnected.wait(5), "the cluster kept its connection"
        assert b.kicked == 1
        # It cannot come back with the old password; the other cluster was left alone.
        assert _probe(tls_broker, "loa-01", node_password("loa-01")) == NOT_AUTHORIZED
        assert bystander.client.is_connected() and not bystander.disconnected.is_set()
    finally:
        victim.close()
        bystander.close()


def test_zone_change_alone_cuts_nobody_off(tls_broker: BrokerFixture) -> None:
    b = tls_broker.broker
    node = Node(b.tls_port, "loa-01", node_password("loa-01"), b.tls.material.ca_cert_path)
    try:
        assert node.connected.wait(10)
        b.add_or_update_user("loa-01", password_hash=b.accounts.hashes["loa-01"], zone="thon-2")
        b.reload()
        assert b.kicked == 0 and node.client.is_connected()
        assert "topic read loa/zones/thon-2/cmd" in b.acl_path.read_text()
    finally:
        node.close()


def test_node_listener_on_every_interface_is_reached_by_address_and_the_plain_one_is_not(
    mosquitto_factory,
) -> None:  # type: ignore[no-untyped-def]
    external = [
        n for n in machine_names() if n.count(".") == 3 and not n.startswith("127.") and n != "0.0.0.0"
    ]
    if not external:
        pytest.skip("this machine has no non-loopback IPv4 address")
    address = external[0]
    fx: BrokerFixture = mosquitto_factory(tls=True, tls_listen="0.0.0.0")
    fx.add_node("loa-01", "thon-1")
    b = fx.broker
    ctx = fx.tls_context()
    assert (
        probe_login(
            address, b.tls_port, "loa-01", node_password("loa-01"), ssl_context=ctx, server_hostname=address
        )
        == ACCEPTED
    )
    assert probe_login(address, b.port, "controller", "x", timeout=2) is None  # not listening there
    assert probe_login("127.0.0.1", b.port, "loa-01", node_password("loa-01")) == ACCEPTED


def _served_not_after(port: int, ctx: ssl.SSLContext) -> datetime:
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return datetime.strptime(tls.getpeercert()["notAfter"], "%b %d %H:%M:%S %Y %Z").replace(tzinfo=UTC)


def test_an_operators_renewed_certificate_is_taken_in_without_a_restart(
    mosquitto_factory, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    issuer = TlsMaterial(tmp_path / "issuer", "127.0.0.1")  # stands in for Let's Encrypt + certbot
    issuer.ensure()
    now = datetime.now(UTC)
    issuer.issue_server_cert(now - timedelta(days=80), now + timedelta(days=10))
    fx: BrokerFixture = mosquitto_factory(tls=True)
    b = fx.broker
    b.stop()
    b.tls.material.cert_file, b.tls.material.key_file = issuer.server_cert_path, issuer.server_key_path
    b.start()
    ctx = fx.tls_context(issuer.ca_cert_path)
    assert _served_not_after(b.tls_port, ctx) < now + timedelta(days=11)
    assert b.ca_pem is None  # nodes trust the public CA: nothing to pin
    issuer.issue_server_cert(now, now + timedelta(days=90))  # certbot renewed the files
    pid = b.pid
    b._sup.call(b._check_certificate)
    assert b.pid == pid and _served_not_after(b.tls_port, ctx) > now + timedelta(days=80)

"""The managed Mosquitto: generated files, logins, reload, restart, supervision (real mosquitto)."""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from pathlib import Path

import pytest

from broadcaster.broker import (
    BrokerError,
    ManagedBroker,
    find_mosquitto,
    hash_password,
    probe_login,
    render_acl,
    verify_password,
)
from tests.fixtures_broker import BrokerFixture

pytestmark = pytest.mark.integration

ACCEPTED, BAD_CREDENTIALS, NOT_AUTHORIZED = 0, 4, 5


def wait_until(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_hash_is_what_mosquitto_passwd_writes(tmp_path: Path) -> None:
    passwd = tmp_path / "pw"
    passwd.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "loa-01", "mật-khẩu"], check=True)
    _, stored = passwd.read_text().strip().split(":", 1)
    assert verify_password("mật-khẩu", stored)
    assert not verify_password("mat-khau", stored)
    ours = hash_password("mật-khẩu")
    assert ours.startswith("$7$101$") and verify_password("mật-khẩu", ours)
    assert hash_password("x", salt=b"0" * 12) == hash_password("x", salt=b"0" * 12)
    with pytest.raises(ValueError):
        hash_password("")
    with pytest.raises(ValueError):
        hash_password("a\nb")


def test_acl_confines_nodes_and_gives_controller_the_prefix() -> None:
    acl = render_acl("loa", ["controller"], {"loa-01": "thon-1", "loa-02": None})
    lines = acl.splitlines()
    assert "pattern write loa/speakers/%u/events" in lines
    assert "pattern read loa/speakers/%u/cmd" in lines
    assert "pattern read loa/audio/#" in lines
    assert "pattern read loa/speakers/%u/lookahead" in lines  # docs/protocol.md, offline airing
    i = lines.index("user controller")
    assert lines[i + 1] == "topic readwrite loa/#"
    j = lines.index("user loa-01")
    assert lines[j + 1] == "topic read loa/zones/thon-1/cmd"
    assert "user loa-02" not in lines  # no zone: the patterns alone
    assert not any(line.startswith("pattern readwrite") or line == "topic readwrite #" for line in lines)


def test_logins_are_checked_against_the_password_file(mosquitto_factory) -> None:
    fx: BrokerFixture = mosquitto_factory(users={"loa-01": "pw-1"}, node_zones={"loa-01": "thon-1"})
    b = fx.broker
    assert b.running and b.port > 0
    assert probe_login(b.host, b.port, "loa-01", "pw-1") == ACCEPTED
    assert probe_login(b.host, b.port, "loa-01", "wrong") in (BAD_CREDENTIALS, NOT_AUTHORIZED)
    assert probe_login(b.host, b.port, "nobody", "pw-1") in (BAD_CREDENTIALS, NOT_AUTHORIZED)
    assert fx.url.startswith("mqtt://controller:") and fx.url.endswith(f"@127.0.0.1:{b.port}")
    conf = b.conf_path.read_text()
    for needle in (
        "allow_anonymous false",
        f"listener {b.port} 127.0.0.1",
        "set_tcp_nodelay true",
        "max_queued_messages 100000",
        "autosave_interval 5",
        f"password_file {b.passwd_path}",
        f"acl_file {b.acl_path}",
    ):
        assert needle in conf
    assert "pw-1" not in b.passwd_path.read_text()  # hashes only


def test_files_belong_to_the_mosquitto_user_when_root(mosquitto) -> None:
    if os.geteuid() != 0:
        pytest.skip("privilege drop only happens when started as root")
    try:
        account = pwd.getpwnam("mosquitto")
    except KeyError:
        pytest.skip("no mosquitto user on this host")
    b = mosquitto.broker
    assert "user root" not in b.conf_path.read_text()
    for path in (b.workdir, b.data_dir, b.passwd_path, b.acl_path, b.log_path):
        assert path.stat().st_uid == account.pw_uid, path
    assert b.passwd_path.stat().st_mode & 0o077 == 0  # not readable by others
    # The broker really runs as that user, and can write its persistence file.
    status = Path(f"/proc/{b.pid}/status").read_text()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert int(uid_line.split()[1]) == account.pw_uid
    b.restart()  # SIGTERM: mosquitto saves its database as the unprivileged user
    assert (b.data_dir / "mosquitto.db").exists()


def test_unreachable_folder_falls_back_to_root(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only relevant when started as root")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    broker = ManagedBroker(private / "broker", users={"loa-01": "pw"})
    try:
        broker.start()
        assert "user root" in broker.conf_path.read_text()
        assert probe_login(broker.host, broker.port, "loa-01", "pw") == ACCEPTED
    finally:
        broker.stop()
    assert not broker.running


def test_reload_applies_new_and_removed_users(mosquitto) -> None:
    b = mosquitto.broker
    assert probe_login(b.host, b.port, "loa-07", "pw-loa-07") != ACCEPTED
    url = mosquitto.add_node("loa-07", zone="thon-2")
    assert url == f"mqtt://loa-07:pw-loa-07@127.0.0.1:{b.port}"
    assert probe_login(b.host, b.port, "loa-07", "pw-loa-07") == ACCEPTED
    assert "topic read loa/zones/thon-2/cmd" in b.acl_path.read_text()
    # A hash from the registry works the same as a plain password.
    b.add_or_update_user("loa-08", password_hash=hash_password("từ-sổ-đăng-ký"), zone=None)
    b.remove_user("loa-07")
    b.reload()
    assert probe_login(b.host, b.port, "loa-08", "từ-sổ-đăng-ký") == ACCEPTED
    assert probe_login(b.host, b.port, "loa-07", "pw-loa-07") != ACCEPTED
    with pytest.raises(ValueError):
        b.add_or_update_user("loa/+", "pw")
    with pytest.raises(ValueError):
        b.add_or_update_user("loa-09")


def test_restart_keeps_port_and_controller_password(mosquitto) -> None:
    b = mosquitto.broker
    port, url, pid = b.port, b.controller_url, b.pid
    b.restart()
    assert b.pid != pid and b.port == port and b.controller_url == url
    assert probe_login(b.host, b.port, "controller", url.split(":")[2].split("@")[0]) == ACCEPTED
    # A second ManagedBroker on the same folder reuses the generated controller password.
    b.stop()
    again = ManagedBroker(b.workdir, port=port)
    try:
        again.start()
        assert again.controller_url == url
    finally:
        again.stop()


def test_supervisor_restarts_a_crashed_broker(mosquitto) -> None:
    b = mosquitto.broker
    pid = b.pid
    b.crash()
    wait_until(lambda: b.restarts == 1 and b.running, what="supervisor restart")
    assert b.pid != pid
    assert probe_login(b.host, b.port, "controller", b.controller_url.split(":")[2].split("@")[0]) == ACCEPTED


def test_stop_is_final(mosquitto) -> None:
    b = mosquitto.broker
    b.stop()
    assert not b.running
    assert probe_login(b.host, b.port, "controller", "x", timeout=0.5) is None
    assert b.restarts == 0


def test_start_failure_is_reported(tmp_path: Path) -> None:
    fake = tmp_path / "mosquitto"
    fake.write_text("#!/bin/sh\necho 'Error: something is wrong' >&2\nexit 3\n")
    fake.chmod(0o755)
    broker = ManagedBroker(tmp_path / "b", binary=fake, supervise=False)
    with pytest.raises(BrokerError, match="something is wrong"):
        broker.start()


def test_find_mosquitto() -> None:
    assert find_mosquitto().name == "mosquitto"


def test_a_node_account_can_never_be_the_controllers(mosquitto) -> None:
    b = mosquitto.broker
    password = b.controller_url.split(":")[2].split("@")[0]
    with pytest.raises(BrokerError, match="controller"):
        b.add_or_update_user("controller", "stolen", zone="thon-1")
    with pytest.raises(BrokerError, match="controller"):
        b.add_or_update_user("controller", password_hash=hash_password("stolen"))
    with pytest.raises(BrokerError, match="controller"):
        b.remove_user("controller")
    with pytest.raises(BrokerError, match="controller"):
        b.set_node_zone("controller", "thon-1")
    b.reload()
    # Nothing changed: the controller still logs in with its own password, not the node's.
    assert probe_login(b.host, b.port, "controller", password) == ACCEPTED
    assert probe_login(b.host, b.port, "controller", "stolen") != ACCEPTED
    assert "controller" not in b.node_zones()


def test_reload_reads_only_the_new_log_and_rotates_a_big_log(mosquitto) -> None:
    b = mosquitto.broker
    b.reload()  # the log already says "Reloading config" once: a new one is awaited
    with b.log_path.open("ab") as fh:  # a log grown past the cap
        fh.write(b"x" * 4096 + b"\n")
    b.log_max_bytes = 1024
    b.reload()
    rotated = b.log_path.with_name(b.log_path.name + ".1")
    assert rotated.exists() and rotated.read_bytes().count(b"Reloading config") >= 2
    assert b.log_path.stat().st_size < 1024  # mosquitto reopened a fresh file
    b.add_or_update_user("loa-31", "pw-31")
    b.reload()  # confirmed from the new file
    assert probe_login(b.host, b.port, "loa-31", "pw-31") == ACCEPTED
    assert b.log_path.read_bytes().count(b"Reloading config") == 1
    with b.log_path.open("ab") as fh:
        fh.write(b"y" * 4096 + b"\n")
    b.restart()  # a big log is rotated at start too
    assert b"y" * 4096 in rotated.read_bytes()
    assert b"y" * 4096 not in b.log_path.read_bytes() and b.log_path.stat().st_size < 1024


def _controller_password(b: ManagedBroker) -> str:
    return b.controller_url.split(":")[2].split("@")[0]


def test_a_broker_left_by_an_earlier_run_is_taken_over(mosquitto) -> None:
    """A mosquitto that outlived its controller (started before the parent-death signal existed,
    or by hand) holds the port: the next start stops it instead of logging in to it."""
    from broadcaster.broker.orphans import brokers_of

    b = mosquitto.broker
    port, password = b.port, _controller_password(b)
    b.stop()
    left_over = subprocess.Popen(
        [str(find_mosquitto()), "-c", str(b.conf_path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until(lambda: probe_login(b.host, port, "controller", password) == ACCEPTED, what="left-over up")
        again = ManagedBroker(b.workdir, port=port)
        try:
            again.start()
            assert left_over.wait(10) is not None  # stopped (SIGTERM: it saved its sessions)
            assert again.port == port and again.running
            assert brokers_of(b.conf_path, again.pid_path) == [again.pid]
            assert again.pid_path.read_text().strip() == str(again.pid)
            assert probe_login(b.host, port, "controller", password) == ACCEPTED
        finally:
            again.stop()
        assert brokers_of(b.conf_path) == [] and not again.pid_path.exists()
    finally:
        if left_over.poll() is None:
            left_over.kill()
            left_over.wait()


def test_a_port_held_by_another_program_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    from broadcaster.broker import PortInUseError

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        broker = ManagedBroker(tmp_path / "b", port=port)
        with pytest.raises(PortInUseError, match=f"port {port} on 127.0.0.1 is in use by another program"):
            broker.start()
        assert not broker.running and not broker._sup.alive


def test_restarts_are_bounded_and_end_in_a_clear_error(mosquitto, monkeypatch, caplog) -> None:
    """A broker that cannot come back (here: its port taken while it was down) is retried with
    a growing delay, then given up with the reason, not restarted twice a second for ever."""
    import logging
    import socket

    from broadcaster.broker import supervisor

    monkeypatch.setattr(supervisor, "BACKOFF_MIN_S", 0.01)
    monkeypatch.setattr(supervisor, "BACKOFF_MAX_S", 0.04)
    monkeypatch.setattr(supervisor, "MAX_CONSECUTIVE_FAILURES", 4)
    caplog.set_level(logging.WARNING, logger="broadcaster.broker.supervisor")
    b = mosquitto.broker
    with socket.socket() as thief:
        thief.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        b.crash()
        wait_until(lambda: not b.running, what="crash")
        thief.bind(("127.0.0.1", b.port))
        thief.listen()
        wait_until(lambda: b.failure is not None, what="the supervisor gives up")
    assert "in use by another program" in b.failure and "4 times in a row" in b.failure
    delays = [r.args[1] for r in caplog.records if "restarting in" in r.getMessage()]
    assert delays == [0.01, 0.02, 0.04, 0.04]
    assert b.restarts == 0 and not b.running and b._sup._restart_at is None
    # An explicit start afterwards is a fresh series and works once the port is free again.
    b.start()
    assert b.running and b.failure is None


def test_back_to_back_reloads_are_never_lost(mosquitto_factory) -> None:
    """mosquitto logs "Reloading config" when it starts re-reading its files and forgets a SIGHUP
    that arrives before it is done (with 2,000 accounts that takes long enough to hit): reload()
    returns only once mosquitto is done, so the next batch's reload is never lost."""
    hashed = hash_password("pw")
    nodes = [f"loa-{i:04d}" for i in range(2000)]
    fx: BrokerFixture = mosquitto_factory(
        tls=True,
        password_hashes=dict.fromkeys(nodes, hashed),
        node_zones={n: f"thon-{i % 50}" for i, n in enumerate(nodes)},
    )
    b = fx.broker
    for _ in range(5):
        b.reload()  # raised "mosquitto did not confirm the reload" at the second call
    b.add_or_update_user("loa-0007", "pw-moi", zone="thon-1")
    b.reload()
    assert probe_login(b.host, b.port, "loa-0007", "pw-moi") == ACCEPTED
    assert probe_login(b.host, b.port, "loa-0007", "pw") != ACCEPTED
    assert b.reloads == 6

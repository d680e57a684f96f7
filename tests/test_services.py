"""build_services / Services.start / stop with the managed broker, and serve --demo."""

from __future__ import annotations

from pathlib import Path

import pytest

from broadcaster.domain import Announcement
from broadcaster.services import Services, build_services
from broadcaster.settings import load_settings
from broadcaster.transport.mqtt import MqttTransport
from speakers import protocol as proto
from tests.fixtures_controller import wait_until

pytestmark = pytest.mark.integration


def _settings(instance: Path, **overrides: object):  # type: ignore[no-untyped-def]
    return load_settings(
        {
            "instance": instance,
            "tts": {"order": ["espeak-ng"]},
            "scheduling": {"schedules_dir": instance / "schedules"},
            **overrides,
        },
        environ={},
    )


def _node(services: Services, speaker: str, password: str) -> MqttTransport:
    broker = services.broker
    t = MqttTransport(
        f"mqtt://{speaker}:{password}@127.0.0.1:{broker.port}", f"node-{speaker}", reconnect_min_s=0.2
    )
    t.start()
    return t


def test_nothing_starts_before_start(tmp_path: Path) -> None:
    services = build_services(_settings(tmp_path / "inst"))
    try:
        assert services.broker is None and not services.transport.connected
        assert services.scheduler is not None and not services.scheduler.running
        assert services.scheduler.broadcasts is services.broadcasts
        assert services.broadcasts.validator is services.validator is services.scheduler.book.validator
        assert services.registry is not None and services.normalizer is not None
    finally:
        services.close()


def test_managed_broker_follows_the_registry_and_keeps_its_port(tmp_path: Path) -> None:
    instance = tmp_path / "inst"
    services = build_services(_settings(instance))
    services.start()
    node = None
    try:
        assert services.transport.connected
        services.registry.create_zone("thon-1", "Thôn Đông")
        _, password = services.registry.create_speaker("loa-01", "Cụm loa 1", "thon-1")
        node = _node(services, "loa-01", password)
        assert node.wait_connected(10), "a speaker created in the registry can log in at once"
        node.publish(
            "loa/speakers/loa-01/status", proto.Status(online=True, zone="thon-1").encode(), retain=True
        )
        wait_until(lambda: services.fleet.is_online("loa-01"), what="fleet sees loa-01")
        port = services.broker.port
        node.stop()
        node = None
        services.registry.update_speaker("loa-01", enabled=False)
        refused = _node(services, "loa-01", password)
        try:
            wait_until(lambda: refused.stats["connect_failures"] >= 1, what="disabled speaker refused")
        finally:
            refused.stop()
    finally:
        if node is not None:
            node.stop()
        services.close()
    again = build_services(_settings(instance))
    again.start()
    try:
        assert again.broker.port == port
        assert again.transport.connected
    finally:
        again.close()


def test_serve_demo_gives_a_living_system(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from broadcaster.demo import Demo

    instance = tmp_path / "demo"
    services = build_services(_settings(instance, demo=True))
    demo = Demo(services)
    demo.prepare()
    services.start()
    demo.start()
    try:
        out = capsys.readouterr().out
        assert "admin" in out and "mật khẩu" in out
        wait_until(lambda: len(services.fleet.online_ids()) == 9, timeout=20, what="9 demo clusters online")
        snap = services.fleet.snapshot()
        assert [s["id"] for s in snap] == [f"loa-{i:02d}" for i in range(1, 10)]
        assert {s["zone"] for s in snap} == {"thon-1", "thon-2", "thon-3"}
        zones = {z["id"]: z["name"] for z in services.registry.list_zones()}
        assert zones == {"thon-1": "Thôn Đông", "thon-2": "Thôn Đoài", "thon-3": "Thôn Trung"}
        bid = services.broadcasts.submit(Announcement(text="Chào mừng đến với Loa xã.", targets=("thon-1",)))
        b = wait_until(
            lambda: (x := services.broadcasts.get(bid)) and x["state"] == "done" and x,
            timeout=40,
            what="demo plays",
        )
        assert [d["state"] for d in b["deliveries"]] == ["done"] * 3
    finally:
        demo.stop()
        services.close()
    # A second start reuses the seeded clusters, their credentials and the admin account.
    services = build_services(_settings(instance, demo=True))
    demo = Demo(services)
    demo.prepare()
    services.start()
    demo.start()
    try:
        assert "mật khẩu" not in capsys.readouterr().out
        wait_until(lambda: len(services.fleet.online_ids()) == 9, timeout=20, what="9 clusters online again")
        assert len(services.registry.list_speakers()) == 9
    finally:
        demo.stop()
        services.close()


def test_a_burst_of_registry_changes_costs_one_broker_reload(tmp_path: Path) -> None:
    """Importing many speakers must not reload mosquitto once per speaker (~0.1 s each)."""
    from broadcaster.fleet.registry import RegistryChange

    services = build_services(_settings(tmp_path / "inst"), scheduler=False)
    services.start()
    try:
        services.registry.create_zone("thon-1", "Thôn Đông")
        passwords = {}
        syncer = services.broker_sync
        broker = services.broker
        for i in range(1, 41):
            sid = f"loa-{i:02d}"
            _, passwords[sid] = services.registry.create_speaker(sid, f"Cụm loa {i}", "thon-1")
        assert syncer.flush(30)
        reloads = broker.reloads
        # The registry hook for 40 speakers, as an import calls it: one batch, one reload.
        for sid in passwords:
            services._broker_sync(RegistryChange(kind="speaker_updated", speaker_id=sid))
        assert syncer.flush(30)
        assert broker.reloads - reloads <= 2  # was 40: one reload per change
        assert set(passwords) <= set(broker.users())
        services.registry.update_speaker("loa-07", enabled=False)
        assert syncer.flush(30)
        assert "loa-07" not in broker.users() and "loa-08" in broker.users()
        node = _node(services, "loa-40", passwords["loa-40"])
        try:
            assert node.wait_connected(10), "a batched account logs in"
        finally:
            node.stop()
    finally:
        services.close()

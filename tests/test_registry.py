"""Zones and speakers: validation, MQTT credentials, change hooks, target resolution (real SQLite)."""

from __future__ import annotations

import subprocess
import unicodedata
from pathlib import Path

import pytest
from sqlalchemy import select

from broadcaster.db import create_schema, make_engine, make_session_factory
from broadcaster.fleet.registry import (
    Registry,
    RegistryChange,
    RegistryError,
    mosquitto_hash,
    verify_mosquitto_hash,
)
from broadcaster.models import Speaker


@pytest.fixture
def sessions(tmp_path: Path):
    engine = make_engine(f"sqlite:///{tmp_path / 'reg.db'}")
    create_schema(engine)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def registry(sessions) -> Registry:
    return Registry(sessions)


def test_zone_crud_and_quiet_hours(registry: Registry) -> None:
    zone = registry.create_zone("thon-1", "Thôn Đông", "21:00", "05:00")
    assert zone == {**zone, "id": "thon-1", "name": "Thôn Đông", "quiet_start": "21:00", "speaker_count": 0}
    assert registry.update_zone("thon-1", name="Thôn Đông Hạ")["name"] == "Thôn Đông Hạ"
    with pytest.raises(RegistryError, match="HH:MM") as err:
        registry.update_zone("thon-1", quiet_start="25:00")
    assert err.value.field == "quiet_start"
    with pytest.raises(RegistryError, match="cả giờ bắt đầu và giờ kết thúc"):
        registry.update_zone("thon-1", quiet_end=None)
    with pytest.raises(RegistryError) as err:
        registry.create_zone("thon-1", "Khác")
    assert err.value.code == "conflict"
    registry.delete_zone("thon-1")
    assert registry.list_zones() == []
    with pytest.raises(RegistryError) as err:
        registry.get_zone("thon-1")
    assert err.value.code == "not_found"


@pytest.mark.parametrize("bad", ["", "a/b", "có-dấu", "+", "#", "x" * 65, 7, None])
def test_bad_ids_are_refused(registry: Registry, bad) -> None:
    with pytest.raises(RegistryError, match="không hợp lệ"):
        registry.create_zone(bad, "Tên")
    assert registry.list_zones() == []


@pytest.mark.parametrize("reserved", ["all", "controller", "Controller", "loa-controller-0123456789"])
def test_reserved_ids_are_refused(registry: Registry, sessions, reserved: str) -> None:
    """A cluster logs in with its id as broker user and MQTT client id: 'controller' would get the
    controller's broker account, 'loa-controller-...' could take the controller's client id."""
    with pytest.raises(RegistryError, match="dành riêng") as err:
        registry.create_speaker(reserved, "Loa giả")
    assert err.value.field == "id" and "Reserved id" in err.value.message
    with pytest.raises(RegistryError, match="dành riêng"):
        registry.create_zone(reserved, "Thôn giả")
    assert registry.list_speakers() == [] and registry.list_zones() == []
    assert registry.password_hashes() == {}


def test_reserved_ids_cover_the_controller_account(tmp_path: Path) -> None:
    from broadcaster.fleet.registry import RESERVED_IDS, RESERVED_PREFIXES
    from broadcaster.services import CONTROLLER_USER, controller_client_id
    from broadcaster.settings import load_settings

    assert CONTROLLER_USER in RESERVED_IDS
    client_id = controller_client_id(load_settings({"instance": tmp_path}, environ={}))
    assert client_id.startswith(RESERVED_PREFIXES)


def test_names_are_stored_nfc(registry: Registry, sessions) -> None:
    decomposed = unicodedata.normalize("NFD", "Cụm loa chợ Đồng Xuân")
    registry.create_speaker("loa-1", decomposed)
    with sessions() as session:
        assert session.get(Speaker, "loa-1").name == unicodedata.normalize("NFC", decomposed)


def test_speaker_needs_existing_zone_and_zone_with_speakers_cannot_go(registry: Registry) -> None:
    with pytest.raises(RegistryError, match="Không có khu vực 'nowhere'"):
        registry.create_speaker("loa-1", "Loa 1", zone="nowhere")
    assert registry.list_speakers() == []
    registry.create_zone("z1", "Thôn 1")
    registry.create_speaker("loa-1", "Loa 1", zone="z1", location="Nhà văn hoá")
    with pytest.raises(RegistryError, match="còn 1 cụm loa") as err:
        registry.delete_zone("z1")
    assert err.value.code == "conflict"
    registry.update_speaker("loa-1", zone=None)
    registry.delete_zone("z1")
    assert registry.get_speaker("loa-1")["zone"] is None
    with pytest.raises(RegistryError, match="không được hỗ trợ"):
        registry.update_speaker("loa-1", colour="red")


def test_password_returned_once_and_only_hash_stored(registry: Registry, sessions) -> None:
    changes: list[RegistryChange] = []
    registry.on_change.append(changes.append)
    speaker, password = registry.create_speaker("loa-1", "Loa 1")
    assert "password" not in speaker and speaker["has_credentials"] is True
    with sessions() as session:
        stored = session.get(Speaker, "loa-1").mqtt_password_hash
    assert password not in stored and stored.startswith("$7$101$")
    assert verify_mosquitto_hash(password, stored)
    assert not verify_mosquitto_hash(password + "x", stored)
    assert changes[-1] == RegistryChange(
        "speaker_created", "loa-1", None, password_hash=stored, password=password
    )

    new_password = registry.reset_speaker_password("loa-1")
    assert new_password != password
    with sessions() as session:
        new_stored = session.get(Speaker, "loa-1").mqtt_password_hash
    assert verify_mosquitto_hash(new_password, new_stored) and not verify_mosquitto_hash(password, new_stored)
    assert changes[-1].kind == "speaker_password" and changes[-1].password == new_password
    assert registry.password_hashes() == {"loa-1": new_stored}

    registry.delete_speaker("loa-1")
    assert changes[-1] == RegistryChange("speaker_deleted", "loa-1", None)


def test_a_failing_hook_does_not_undo_the_change(registry: Registry) -> None:
    def broken(change: RegistryChange) -> None:
        raise RuntimeError("broker down")

    registry.on_change.append(broken)
    registry.create_zone("z1", "Thôn 1")
    assert [z["id"] for z in registry.list_zones()] == ["z1"]


def test_hash_matches_mosquitto_passwd(tmp_path: Path) -> None:
    """Our $7$ hash is what mosquitto_passwd computes for the same salt."""
    pwfile = tmp_path / "pw"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pwfile), "node", "bí-mật"], check=True)
    line = pwfile.read_text().strip()
    reference = line.split(":", 1)[1]
    assert verify_mosquitto_hash("bí-mật", reference)
    import base64

    salt = base64.b64decode(reference.split("$")[3])
    assert mosquitto_hash("bí-mật", salt=salt) == reference


def test_the_one_target_resolver(registry: Registry, sessions) -> None:
    from broadcaster.fleet.targets import TargetError, TargetResolver, resolve

    registry.create_zone("z1", "Thôn 1")
    registry.create_zone("z2", "Thôn 2")
    for i, zone in enumerate(["z1", "z1", "z2", None]):
        registry.create_speaker(f"s{i}", f"Loa {i}", zone=zone)
    registry.update_speaker("s1", enabled=False)
    with sessions() as session:
        assert resolve(session, ["all"]).speakers == ("s0", "s2", "s3")
        assert resolve(session, ["all"]).whole_zones == {"z1", "z2"}
        assert resolve(session, ["z1"]).speakers == ("s0",)
        assert resolve(session, ["z2", "s3", "s0"]).speakers == ("s0", "s2", "s3")
        assert resolve(session, ["z2", "s3", "s0"]).whole_zones == {"z2"}
        assert resolve(session, ["z1"], enabled_only=False).speakers == ("s0", "s1")
        with pytest.raises(TargetError, match="nope, z9"):
            resolve(session, ["z1", "nope", "z9"])
        with pytest.raises(TargetError, match="Tất cả loa"):
            resolve(session, ["all", "z1"])  # "all" does not mix with anything else
        with pytest.raises(TargetError, match="không có cụm loa nào|Không có cụm loa nào"):
            resolve(session, ["s1"])  # only a disabled cluster
        assert session.scalars(select(Speaker.id)).all() == ["s0", "s1", "s2", "s3"]
    resolver = TargetResolver(sessions)
    assert resolver.known() == {"all", "z1", "z2", "s0", "s1", "s2", "s3"}
    assert resolver.describe(["z1"]) == "1 cụm loa ở Thôn 1"
    assert resolver.describe(["z2", "s3"]) == "2 cụm loa ở Thôn 2 và Loa 3"
    assert resolver.describe(["all"]) == "tất cả 3 cụm loa"


def test_zone_and_cluster_ids_share_one_namespace(registry: Registry) -> None:
    """A speaker id equal to a zone id made a broadcast to ["thon-3"] reach the zone and that speaker."""
    registry.create_zone("thon-1", "Thôn 1")
    registry.create_zone("thon-3", "Thôn 3")
    with pytest.raises(RegistryError, match="khu vực") as err:
        registry.create_speaker("thon-3", "Loa lạc", zone="thon-1")
    assert err.value.code == "conflict" and err.value.field == "id"
    registry.create_speaker("loa-9", "Loa 9", zone="thon-1")
    with pytest.raises(RegistryError, match="cụm loa") as err:
        registry.create_zone("loa-9", "Khu mới")
    assert err.value.code == "conflict"


def test_zones_and_speakers_named_by_a_schedule_cannot_be_deleted(registry: Registry, sessions) -> None:
    from broadcaster.models import Schedule

    registry.create_zone("z1", "Thôn 1")
    registry.create_speaker("loa-1", "Loa 1")
    with sessions.begin() as session:
        session.add(
            Schedule(name="Bản tin sáng", text="x", kind="daily", time="06:00", targets=["z1", "loa-1"])
        )
    with pytest.raises(RegistryError, match="Bản tin sáng") as err:
        registry.delete_zone("z1")
    assert err.value.code == "conflict"
    with pytest.raises(RegistryError, match="Bản tin sáng"):
        registry.delete_speaker("loa-1")
    assert [z["id"] for z in registry.list_zones()] == ["z1"] and registry.get_speaker("loa-1")

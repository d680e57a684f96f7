"""Enrollment in one step: the agent.yaml of docs/agent.md from the CLI, the API and the web page's
one-time link (real SQLite, real Flask app, the real agent config parser; no broker needed: the
node endpoint comes from the settings and the instance's CA)."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from broadcaster.fleet.enroll import EnrollError, EnrollLinks, enroll
from broadcaster.fleet.registry import RegistryError, verify_mosquitto_hash
from broadcaster.models import EnrollLink, Speaker
from broadcaster.web.tokens import create_token
from speakers.config import load_config
from speakers.yamlio import parse_yaml
from tests.fixtures_web import WebServices, csrf, login

ROOT = Path(__file__).resolve().parent.parent
ENROLL_KEYS = {"id", "zone", "mqtt_url", "password", "ca_pem"}


def _stored_hash(web: WebServices, speaker_id: str) -> str:
    with web.sessions() as session:
        return session.get(Speaker, speaker_id).mqtt_password_hash


def _check_bundle_yaml(text: str, tmp_path: Path, speaker_id: str, zone: str, web: WebServices) -> str:
    """The file has exactly the enrollment keys, the agent loads it, and its password is the one
    the registry stored (as a hash). Returns the password."""
    data = parse_yaml(text)
    assert set(data) == ENROLL_KEYS
    path = tmp_path / f"{speaker_id}.yaml"
    path.write_text(text, encoding="utf-8")
    config = load_config(path)
    assert (config.id, config.zone) == (speaker_id, zone)
    assert config.mqtt.url == "mqtts://127.0.0.1:8883"
    assert (
        config.mqtt.ca_pem.strip()
        == web.settings.instance.joinpath("mosquitto", "tls", "ca.crt").read_text().strip()
    )
    assert config.tls_context() is not None  # the pinned CA loads
    assert verify_mosquitto_hash(data["password"], _stored_hash(web, speaker_id))
    return data["password"]


def test_enroll_creates_then_resets_and_moves(web_services: WebServices, tmp_path: Path) -> None:
    registry = web_services.services.registry
    first = enroll(registry, web_services.settings, "loa-3a", zone="thon-2", name="Loa bến đò")
    assert first.created and first.enabled
    password = _check_bundle_yaml(first.bundle.to_yaml(), tmp_path, "loa-3a", "thon-2", web_services)
    assert registry.get_speaker("loa-3a")["name"] == "Loa bến đò"

    again = enroll(registry, web_services.settings, "loa-3a", zone="thon-1")
    assert not again.created and again.bundle.zone == "thon-1"
    new_password = _check_bundle_yaml(again.bundle.to_yaml(), tmp_path, "loa-3a", "thon-1", web_services)
    assert new_password != password
    assert not verify_mosquitto_hash(password, _stored_hash(web_services, "loa-3a"))
    assert registry.get_speaker("loa-3a")["name"] == "Loa bến đò"  # kept when not given

    with pytest.raises(RegistryError, match="khu vực"):
        enroll(registry, web_services.settings, "loa-9z", zone="khong-co")
    with pytest.raises(RegistryError):
        enroll(registry, web_services.settings, "loa 9", zone="thon-1")
    assert [s["id"] for s in registry.list_speakers() if s["id"].startswith("loa-9")] == []


def test_enroll_without_a_known_node_port_changes_nothing(tmp_path: Path) -> None:
    from tests.fixtures_web import make_web_services

    web = make_web_services(tmp_path, broker={"tls_port": 0})  # the port is chosen at first start
    try:
        before = _stored_hash(web, "loa-1a")
        with pytest.raises(EnrollError, match="tls_port"):
            enroll(web.services.registry, web.settings, "loa-1a", zone="thon-1")
        assert _stored_hash(web, "loa-1a") == before
    finally:
        from tests.fixtures_web import close_web_services

        close_web_services(web)


def test_cli_writes_a_private_agent_yaml(web_services: WebServices, tmp_path: Path) -> None:
    out = tmp_path / "agent.yaml"
    out.write_text("old", encoding="utf-8")
    out.chmod(0o644)
    env = {"BROADCASTER_TTS__ORDER": "[espeak-ng]", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "broadcaster", "--instance", str(web_services.settings.instance),
         "speaker", "enroll", "loa-1b", "--zone", "thon-2", "-o", str(out)],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "cluster loa-1b (new password, zone thon-2)" in done.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    _check_bundle_yaml(out.read_text(encoding="utf-8"), tmp_path, "loa-1b", "thon-2", web_services)
    bad = subprocess.run(
        [sys.executable, "-m", "broadcaster", "--instance", str(web_services.settings.instance),
         "speaker", "enroll", "loa-x", "--zone", "khong-co", "-o", str(tmp_path / "x.yaml")],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 1 and "khong-co" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "x.yaml").exists()


def test_api_enroll_json_and_yaml(web_services: WebServices, web_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client = web_app.test_client()
    auth = {"Authorization": f"Bearer {create_token(web_services.sessions, 'ky-thuat')}"}
    created = client.post(
        "/api/speakers/loa-moi/enroll", json={"zone": "thon-1", "name": "Loa mới"}, headers=auth
    )
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert set(body) == ENROLL_KEYS | {"enabled"} and body["zone"] == "thon-1" and body["enabled"] is True
    assert verify_mosquitto_hash(body["password"], _stored_hash(web_services, "loa-moi"))

    as_yaml = client.post("/api/speakers/loa-moi/enroll?format=yaml", headers=auth)
    assert as_yaml.status_code == 200 and as_yaml.mimetype == "application/yaml"
    assert 'filename="agent.yaml"' in as_yaml.headers["Content-Disposition"]
    _check_bundle_yaml(as_yaml.get_data(as_text=True), tmp_path, "loa-moi", "thon-1", web_services)
    accept = client.post(
        "/api/speakers/loa-moi/enroll", headers={**auth, "Accept": "application/yaml"}
    ).get_data(as_text=True)
    assert accept.startswith("# Loa xa agent configuration")

    before = _stored_hash(web_services, "loa-moi")
    assert client.post("/api/speakers/loa-moi/enroll?format=xml", headers=auth).status_code == 400
    assert client.post("/api/speakers/loa-moi/enroll", json={"zone": 3}, headers=auth).status_code == 422
    assert client.post("/api/speakers/loa-moi/enroll", json={"x": 1}, headers=auth).status_code == 422
    assert _stored_hash(web_services, "loa-moi") == before  # refused requests changed nothing
    assert client.post("/api/speakers/loa-moi/enroll").status_code == 401


def test_one_time_link_from_the_admin_page(web_services: WebServices, web_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    admin = web_app.test_client()
    login(admin, "admin")
    before = _stored_hash(web_services, "loa-2a")
    page = admin.post("/speakers/loa-2a/enroll", data={"csrf_token": csrf(admin, "/speakers")})
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    link = re.search(r'id="enroll-url">(http://[^<]+)<', html).group(1)
    assert "<svg" in html and "Mã QR" in html and "một lần" in html
    assert "điện thoại không mở được địa chỉ này" in html  # the test client's host is localhost
    assert _stored_hash(web_services, "loa-2a") == before  # nothing changes until the download
    token = link.rsplit("/", 1)[1]
    with web_services.sessions() as session:
        stored = session.scalars(EnrollLink.__table__.select()).all()
    assert token not in str(stored) and len(stored) == 1  # only its hash is kept

    phone = web_app.test_client()  # nobody logged in
    path = "/enroll/" + token
    shown = phone.get(path)
    assert shown.status_code == 200 and "loa-2a" in shown.get_data(as_text=True)
    assert _stored_hash(web_services, "loa-2a") == before  # a link preview spends nothing
    download = phone.post(path)
    assert download.status_code == 200 and download.mimetype == "application/yaml"
    assert download.headers["Cache-Control"] == "no-store"
    _check_bundle_yaml(download.get_data(as_text=True), tmp_path, "loa-2a", "thon-2", web_services)
    again = phone.post(path)
    assert again.status_code == 410 and "đã được dùng" in again.get_data(as_text=True)
    assert phone.get(path).status_code == 410
    assert phone.get("/enroll/khong-dung").status_code == 404

    editor = web_app.test_client()
    login(editor, "editor")
    assert editor.post("/speakers/loa-2a/enroll", data={"csrf_token": csrf(editor, "/")}).status_code == 403


def test_link_expires_and_dies_with_its_cluster(web_services: WebServices) -> None:
    svc = web_services.services
    links = EnrollLinks(svc.sessions, svc.registry, svc.settings)
    token, expires = links.create("loa-1a", by="admin")
    assert timedelta(minutes=5) <= expires - datetime.now(UTC) <= timedelta(minutes=15)
    with svc.sessions.begin() as session:
        session.execute(update(EnrollLink).values(expires=datetime.now(UTC) - timedelta(seconds=1)))
    with pytest.raises(EnrollError, match="hết hạn"):
        links.redeem(token)
    token, _ = links.create("loa-1a")
    svc.registry.delete_speaker("loa-1a")
    with pytest.raises(EnrollError):
        links.redeem(token)
    with pytest.raises(RegistryError):
        links.create("loa-1a")

"""Alerts that reach people: the fleet's alerts by e-mail and webhook, end to end.

Real receivers on free loopback ports: an SMTP server (aiosmtpd; plain, STARTTLS and implicit TLS
with a certificate made by openssl, login checked) and a threaded HTTP server that records every
POST. The fleet runs on the in-memory transport with a real SQLite file and fake nodes, driven
through its public API; the notifier is built from the ``alerts`` settings with short delays.
"""

from __future__ import annotations

import email
import email.policy
import json
import logging
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from broadcaster.alerts import AlertNotifier, AlertsConfig
from broadcaster.db import create_schema, make_engine, make_session_factory
from broadcaster.fleet import Fleet, FleetConfig
from broadcaster.models import Speaker, Zone
from broadcaster.transport.memory import MemoryBroker, MemoryTransport
from tests.fakes import FakeNode
from tests.fixtures_controller import wait_until

SMTP_USER = "canbo-xa"
SMTP_PASSWORD = "mk-SMTP-9f3a7c"
WEBHOOK_SECRET = "bi-mat-WEBHOOK-51e0"
COMMUNE = "Xã Hòa Bình"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ----------------------------------------------------------------------------- SMTP receiver


@dataclass
class Mail:
    rcpt_tos: list[str]
    raw: bytes
    message: Any  # email.message.EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        return str(self.message.get_content())


class SmtpReceiver:
    """aiosmtpd on a free port; ``mails`` holds what arrived, parsed as MIME."""

    def __init__(self, security: str, cert: tuple[Path, Path] | None) -> None:
        import ssl

        self.port = _free_port()
        self.mails: list[Mail] = []
        self.logins: list[str] = []
        self._lock = threading.Lock()
        kwargs: dict[str, Any] = {"authenticator": self._auth}
        if security == "plain":
            kwargs["auth_require_tls"] = False
        else:
            assert cert is not None
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(cert[0]), str(cert[1]))
            if security == "ssl":
                kwargs["ssl_context"] = context
                kwargs["auth_require_tls"] = False  # aiosmtpd only counts STARTTLS as TLS; this is TLS too
            else:
                kwargs["tls_context"] = context
                kwargs["require_starttls"] = True
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, **kwargs)

    def _auth(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = auth_data.login == SMTP_USER.encode() and auth_data.password == SMTP_PASSWORD.encode()
        with self._lock:
            self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok, handled=False)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.mails.append(Mail(list(envelope.rcpt_tos), envelope.content, message))
        return "250 OK"

    def received(self) -> list[Mail]:
        with self._lock:
            return list(self.mails)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (the channel trusts it through ``ca_file``)."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is installed by scripts/test"
    folder = tmp_path_factory.mktemp("smtp-tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def smtp_factory(certificate: tuple[Path, Path]) -> Iterator[Any]:
    servers: list[SmtpReceiver] = []

    def start(security: str = "starttls") -> SmtpReceiver:
        server = SmtpReceiver(security, certificate)
        server.controller.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.controller.stop()


# ----------------------------------------------------------------------------- HTTP receiver


class HttpReceiver:
    """A threaded HTTP server recording each POST (path, headers, JSON). ``answers`` are the status
    codes of the next requests (then 200)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: list[int] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    status = receiver.answers.pop(0) if receiver.answers else 200
                    receiver.requests.append(
                        {
                            "path": self.path,
                            "headers": dict(self.headers),
                            "json": json.loads(body),
                            "status": status,
                        }
                    )
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def delivered(self) -> list[dict[str, Any]]:
        """The JSON bodies that were answered 200."""
        with self._lock:
            return [r["json"] for r in self.requests if r["status"] == 200]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver()
    yield receiver
    receiver.close()


# ----------------------------------------------------------------------------- fleet + notifier


@dataclass
class Harness:
    tmp_path: Path
    speakers: int = 3
    alerts: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.engine = make_engine(f"sqlite:///{self.tmp_path / 'fleet.db'}")
        create_schema(self.engine)
        self.sessions = make_session_factory(self.engine)
        ids = [f"loa-{i:02d}" for i in range(1, self.speakers + 1)]
        with self.sessions.begin() as s:
            s.add(Zone(id="thon-1", name="Thôn Đông"))
            for i, sid in enumerate(ids, start=1):
                s.add(Speaker(id=sid, name=f"Loa {i}", zone_id="thon-1"))
        self.broker = MemoryBroker()
        self.transport = MemoryTransport(self.broker)
        self.fleet = Fleet(self.sessions, self.transport, FleetConfig(health_interval_s=600))
        self.nodes = {sid: FakeNode(self.broker, sid, "thon-1") for sid in ids}
        config = AlertsConfig.model_validate({"instance_name": COMMUNE, **self.alerts})
        self.notifier = AlertNotifier(config, self.fleet, timezone="Asia/Ho_Chi_Minh", environ={})
        self.fleet.start()
        self.notifier.start()
        self.transport.start()

    def settle(self) -> None:
        """Everything published so far is through the fleet (committed) and the notifier's policy."""
        self.broker.flush()
        assert self.fleet.flush()
        assert self.notifier.flush()

    def close(self) -> None:
        self.notifier.stop()
        self.fleet.stop()
        for node in self.nodes.values():
            node.stop()
        self.engine.dispose()


@pytest.fixture
def harnesses(tmp_path: Path) -> Iterator[Any]:
    made: list[Harness] = []

    def make(**kwargs: Any) -> Harness:
        harness = Harness(tmp_path, **kwargs)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.close()


def smtp_channel(
    server: SmtpReceiver, security: str, cert: tuple[Path, Path], **extra: Any
) -> dict[str, Any]:
    return {
        "type": "smtp",
        "name": "thu",
        "host": "127.0.0.1",
        "port": server.port,
        "security": security,
        "username": SMTP_USER,
        "password": SMTP_PASSWORD,
        "from": "Loa xã Hòa Bình <loa@hoabinh.example.vn>",
        "to": ["chutich@hoabinh.example.vn", "vanhoa@hoabinh.example.vn"],
        "ca_file": str(cert[0]),
        "timeout_s": 10,
        **extra,
    }


def webhook_channel(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "webhook",
        "name": "zalo",
        "url": url,
        "secret": WEBHOOK_SECRET,
        "fields": {"chat_id": 42},
        **extra,
    }


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("security", ["starttls", "ssl", "plain"])
def test_offline_alert_reaches_mail_and_webhook_after_the_delay_then_resolved(
    security: str,
    smtp_factory: Any,
    certificate: tuple[Path, Path],
    http_receiver: HttpReceiver,
    harnesses: Any,
) -> None:
    smtp = smtp_factory(security)
    h = harnesses(
        alerts={
            "offline_delay_s": 0.3,
            "dashboard_url": "https://loa.hoabinh.example.vn/",
            "channels": [smtp_channel(smtp, security, certificate), webhook_channel(http_receiver.url())],
        }
    )
    node = h.nodes["loa-01"]
    node.connect()
    node.disconnect()
    h.settle()
    mail = wait_until(lambda: smtp.received(), what="the offline e-mail")[0]
    assert mail.subject == f"[Loa xã – {COMMUNE}] Mất kết nối: Loa 1, Thôn Đông"
    assert b"=?utf-8?" in mail.raw.split(b"\r\n\r\n")[0].lower()  # the subject is MIME-encoded UTF-8
    assert sorted(mail.rcpt_tos) == ["chutich@hoabinh.example.vn", "vanhoa@hoabinh.example.vn"]
    assert mail.message["From"].addresses[0].display_name == "Loa xã Hòa Bình"
    body = mail.body
    assert body.splitlines()[0] == "Cảnh báo: Cụm loa mất kết nối"
    for line in (
        f"Đơn vị: {COMMUNE}",
        "Cụm loa: Loa 1 (mã loa-01)",
        "Khu vực: Thôn Đông (mã thon-1)",
        "Từ lúc: ",
    ):
        assert line in body
    assert "https://loa.hoabinh.example.vn/" in body
    assert smtp.logins == [SMTP_USER]
    hook = wait_until(lambda: http_receiver.delivered(), what="the offline webhook")[0]
    assert {k: hook[k] for k in ("kind", "speaker", "zone", "state", "message", "chat_id")} == {
        "kind": "offline",
        "speaker": "loa-01",
        "zone": "thon-1",
        "state": "raised",
        "message": "Cụm loa mất kết nối",
        "chat_id": 42,
    }
    assert hook["raised_at"].startswith("20") and hook["text"].startswith("Cảnh báo: Cụm loa mất kết nối")
    request = http_receiver.requests[0]
    assert request["headers"]["Authorization"] == f"Bearer {WEBHOOK_SECRET}"
    assert request["headers"]["Content-Type"] == "application/json; charset=utf-8"
    # Back online: one "resolved" message on each channel.
    node.reconnect()
    h.settle()
    wait_until(lambda: len(smtp.received()) == 2 and len(http_receiver.delivered()) == 2, what="resolved")
    resolved = smtp.received()[1]
    assert resolved.subject == f"[Loa xã – {COMMUNE}] Đã khắc phục: Mất kết nối: Loa 1, Thôn Đông"
    assert resolved.body.splitlines()[0] == "Đã khắc phục: Cụm loa mất kết nối"
    assert "Khắc phục lúc: " in resolved.body
    assert http_receiver.delivered()[1]["state"] == "resolved"
    assert http_receiver.delivered()[1]["raised_at"] == hook["raised_at"]


def test_a_blip_shorter_than_the_delay_sends_nothing(
    smtp_factory: Any, certificate: tuple[Path, Path], http_receiver: HttpReceiver, harnesses: Any
) -> None:
    smtp = smtp_factory("starttls")
    h = harnesses(
        alerts={
            "offline_delay_s": 600,
            "channels": [smtp_channel(smtp, "starttls", certificate), webhook_channel(http_receiver.url())],
        }
    )
    node = h.nodes["loa-01"]
    node.connect()
    node.disconnect()
    h.settle()
    assert h.notifier.metrics()["pending"] == 1
    node.reconnect()
    h.settle()
    metrics = h.notifier.metrics()
    assert metrics["cancelled"] == 1 and metrics["pending"] == 0
    # Another alert (sent at once) goes through both channels; it is the only message.
    h.nodes["loa-02"].connect()
    h.nodes["loa-02"].send_health(last_error="thẻ nhớ hỏng")
    h.settle()
    wait_until(lambda: smtp.received() and http_receiver.delivered(), what="the error alert")
    assert [m.subject for m in smtp.received()] == [f"[Loa xã – {COMMUNE}] Lỗi: Loa 2, Thôn Đông"]
    assert "Lỗi báo từ cụm loa: thẻ nhớ hỏng" in smtp.received()[0].body
    assert [(j["kind"], j["speaker"]) for j in http_receiver.delivered()] == [("error", "loa-02")]


def test_a_burst_of_50_alerts_is_rate_limited_into_a_digest(
    smtp_factory: Any, certificate: tuple[Path, Path], http_receiver: HttpReceiver, harnesses: Any
) -> None:
    smtp = smtp_factory("starttls")
    h = harnesses(
        speakers=50,
        alerts={
            "rate_limit_count": 5,
            "rate_limit_window_s": 2.0,
            "digest_max_lines": 10,
            "channels": [smtp_channel(smtp, "starttls", certificate), webhook_channel(http_receiver.url())],
        },
    )
    for node in h.nodes.values():
        node.connect()
        node.send_health(last_error="mất thẻ nhớ")
    h.settle()

    def covered(jsons: list[dict[str, Any]]) -> int:
        return sum(j["count"] if j["state"] == "digest" else 1 for j in jsons)

    wait_until(lambda: covered(http_receiver.delivered()) == 50, timeout=20, what="50 alerts by webhook")
    wait_until(lambda: h.notifier.channel_stats["thu"]["alerts_sent"] == 50, timeout=20, what="50 by mail")
    hooks = http_receiver.delivered()
    digests = [j for j in hooks if j["state"] == "digest"]
    assert digests and len(hooks) <= 12  # 50 alerts, a handful of messages
    assert sum(len(j["items"]) for j in digests) == sum(j["count"] for j in digests)
    assert {i["speaker"] for j in hooks for i in (j["items"] if j["state"] == "digest" else [j])} == set(
        h.nodes
    )
    mails = smtp.received()
    assert len(mails) == len(hooks)
    digest_mail = next(m for m in mails if "cảnh báo cụm loa" in m.subject)
    count = int(digest_mail.subject.rsplit("] ", 1)[1].split()[0])
    assert count > 10 and digest_mail.body.count("• ") == 10
    assert f"và {count - 10} cảnh báo khác" in digest_mail.body


def test_a_failing_channel_is_retried_and_holds_up_neither_the_others_nor_the_fleet(
    smtp_factory: Any,
    certificate: tuple[Path, Path],
    http_receiver: HttpReceiver,
    harnesses: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="broadcaster")
    smtp = smtp_factory("starttls")
    http_receiver.answers = [500, 503]  # down twice, then up
    # A receiver that takes the connection and never answers: its channel waits for its timeout.
    hanging = socket.socket()
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(8)
    try:
        h = harnesses(
            alerts={
                "offline_delay_s": 0,
                "retry_backoff_s": 0.05,
                "channels": [
                    smtp_channel(smtp, "starttls", certificate),
                    webhook_channel(http_receiver.url()),
                    webhook_channel(
                        f"http://127.0.0.1:{hanging.getsockname()[1]}/treo", name="treo", timeout_s=120
                    ),
                ],
            }
        )
        node = h.nodes["loa-01"]
        node.connect()
        node.send_health(on_backup=True)
        h.settle()
        wait_until(lambda: smtp.received(), what="mail despite the hanging channel")
        wait_until(lambda: http_receiver.delivered(), what="webhook after two failures")
        # The receiver has the message before the channel has counted its answer: wait for the count.
        wait_until(lambda: h.notifier.channel_stats["zalo"]["sent"] == 1, what="webhook counted as sent")
        stats = h.notifier.channel_stats
        assert stats["zalo"]["attempts"] == 3 and stats["zalo"]["failures"] == 2
        assert "failed (attempt 1 of 5" in caplog.text and "HTTP 500" in caplog.text
        assert smtp.received()[0].subject == f"[Loa xã – {COMMUNE}] Chạy nguồn dự phòng: Loa 1, Thôn Đông"
        # The fleet goes on: more alerts raised, cleared, committed and sent while "treo" still waits.
        node.send_health(on_backup=False)
        node.disconnect()
        h.settle()
        wait_until(lambda: len(smtp.received()) == 3, what="two more mails")
        assert {m.subject.split("] ")[1] for m in smtp.received()[1:]} == {
            "Đã khắc phục: Chạy nguồn dự phòng: Loa 1, Thôn Đông",
            "Mất kết nối: Loa 1, Thôn Đông",
        }
        assert stats["treo"]["sent"] == 0 and stats["treo"]["attempts"] == 1
        assert h.fleet.flush() and not h.fleet.is_online("loa-01")
    finally:
        hanging.close()  # the stuck request fails now; the notifier stops without waiting for it


def test_a_receiver_that_is_down_is_retried_then_dropped_and_secrets_stay_out_of_the_logs(
    smtp_factory: Any,
    certificate: tuple[Path, Path],
    http_receiver: HttpReceiver,
    harnesses: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    smtp = smtp_factory("starttls")
    down = _free_port()  # nothing listens there
    token = "123456789:AAE-tokenCuaBot"
    http_receiver.answers = [401, 401]
    h = harnesses(
        alerts={
            "offline_delay_s": 0,
            "retries": 1,
            "retry_backoff_s": 0.05,
            "channels": [
                smtp_channel(smtp, "starttls", certificate, password="sai-MAT-KHAU-77"),  # refused
                smtp_channel(smtp, "starttls", certificate, name="thu-dung"),
                webhook_channel(http_receiver.url(f"/bot{token}/sendMessage")),  # answers 401 twice
                webhook_channel(
                    f"http://127.0.0.1:{down}/bot{token}/x", name="tat", headers={"X-Key": "khoa-RIENG-42"}
                ),
            ],
        }
    )
    h.nodes["loa-01"].connect()
    h.nodes["loa-01"].send_health(supply_v=10.8)
    h.settle()
    wait_until(
        lambda: all(h.notifier.channel_stats[c]["dropped"] == 1 for c in ("thu", "zalo", "tat")),
        what="three channels gave up",
    )
    wait_until(lambda: h.notifier.channel_stats["thu-dung"]["sent"] == 1, what="the good mail")
    stats = h.notifier.channel_stats
    assert stats["tat"]["attempts"] == 2 and stats["zalo"]["attempts"] == 2 and stats["thu"]["attempts"] == 2
    assert [m.subject for m in smtp.received()] == [f"[Loa xã – {COMMUNE}] Điện áp thấp: Loa 1, Thôn Đông"]
    assert "Điện áp nguồn thấp: 10,8 V (ngưỡng 11,5 V)" in smtp.received()[0].body
    assert [r["headers"]["Authorization"] for r in http_receiver.requests] == [f"Bearer {WEBHOOK_SECRET}"] * 2
    ours = [r for r in caplog.records if r.name.startswith("broadcaster")]
    text = "\n".join(r.getMessage() + (r.exc_text or "") for r in ours)
    assert "dropped after 2 attempt(s) through tat" in text
    assert "dropped after 2 attempt(s) through zalo" in text and "HTTP 401" in text
    assert "dropped after 2 attempt(s) through thu" in text
    for secret in (SMTP_PASSWORD, "sai-MAT-KHAU-77", WEBHOOK_SECRET, token, "tokenCuaBot", "khoa-RIENG-42"):
        assert secret not in text

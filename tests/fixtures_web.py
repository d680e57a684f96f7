"""Fixtures of the web tests.

- ``web_services``: the real controller for Flask test-client tests (the unit harness of
  tests/fixtures_controller.py): a real SQLite file, the real broadcast lifecycle and normalizer,
  the real speech service over espeak-ng (a real audio store in tmp_path), the real scheduler
  service (not started: its CRUD and week view need no running scheduler), the in-memory transport
  and a FakeFleet whose live state a test sets. ``submitted()`` and ``log(kind)`` read back what
  the pages did.
- ``web_app`` / ``client``: the Flask app over them, with three accounts (``admin``, ``editor``,
  ``approver``; password ``PASSWORD``); ``login(client, name)`` logs in; ``csrf(client)`` reads the
  page token.
- ``browser``: one headless Debian Chromium per session (Playwright, never a downloaded browser);
  ``live_server(app)`` serves an app with werkzeug on a free loopback port in a thread.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from broadcaster.domain import Tier

PASSWORD = "mat-khau-123"
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def web_settings(instance: Path, **overrides: Any) -> Any:
    from broadcaster.settings import load_settings

    data: dict[str, Any] = {
        "instance": instance,
        "tts": {"order": ["espeak-ng"]},
        "scheduling": {"schedules_dir": instance / "schedules"},
        **overrides,
    }
    return load_settings(data, environ={})


def add_accounts(sessions: Any) -> None:
    from broadcaster.web.users import add_user

    add_user(sessions, "admin", PASSWORD, "admin", display_name="Quản trị viên")
    add_user(sessions, "editor", PASSWORD, "editor", display_name="Nguyễn Văn Biên")
    add_user(sessions, "approver", PASSWORD, "approver", display_name="Trần Thị Duyệt")


def add_fleet(sessions: Any) -> None:
    """Two zones, three clusters (registry rows, as the admin page would make them)."""
    from broadcaster.fleet.registry import create_speaker, create_zone

    with sessions.begin() as session:
        create_zone(session, "thon-1", "Thôn 1")
        create_zone(session, "thon-2", "Thôn 2")
        create_speaker(session, "loa-1a", "Loa đầu làng", "thon-1")
        create_speaker(session, "loa-1b", "Loa chợ", "thon-1")
        create_speaker(session, "loa-2a", "Loa nhà văn hóa", "thon-2")


@dataclass(frozen=True)
class Submitted:
    """A broadcast as the compose page or the API submitted it (read back from the database)."""

    id: int
    text: str
    title: str
    tier: Tier
    targets: tuple[str, ...]
    at: datetime | None
    approved: bool
    author: str | None
    source: str


@dataclass
class WebServices:
    """The real controller (``unit_services``) for the web tests: FakeSpeech is replaced by the real
    speech service over espeak-ng, the fleet is a FakeFleet whose live state a test sets, and the
    transport a FlakyTransport whose publishes a test can make fail. The broadcast lifecycle is the
    real one (no cluster is online, so items wait)."""

    services: Any
    transport: Any

    @property
    def settings(self) -> Any:
        return self.services.settings

    @property
    def sessions(self) -> Any:
        return self.services.sessions

    @property
    def broadcasts(self) -> Any:
        return self.services.broadcasts

    @property
    def fleet(self) -> Any:
        return self.services.fleet

    @property
    def speech(self) -> Any:
        return self.services.speech

    @property
    def scheduler(self) -> Any:
        return self.services.scheduler

    @property
    def normalizer(self) -> Any:
        return self.services.normalizer

    def submitted(self) -> list[Submitted]:
        """Every broadcast, in submission order."""
        from sqlalchemy import select

        from broadcaster.models import Broadcast

        with self.sessions() as session:
            rows = session.scalars(select(Broadcast).order_by(Broadcast.id)).all()
            return [
                Submitted(
                    id=b.id,
                    text=b.announcement.text,
                    title=b.announcement.title,
                    tier=Tier(b.tier),
                    targets=tuple(b.targets),
                    at=b.scheduled_at,
                    approved=b.announcement.approval == "approved",
                    author=b.announcement.author,
                    source=b.announcement.source,
                )
                for b in rows
            ]

    def log(self, kind: str) -> list[str]:
        """The decision log's messages of one kind (``stop_all``, ``volume``...), oldest first."""
        from sqlalchemy import select

        from broadcaster.models import LogEntry

        with self.sessions() as session:
            query = select(LogEntry.message).where(LogEntry.kind == kind).order_by(LogEntry.id)
            return list(session.scalars(query))

    def cancelled(self) -> list[int]:
        return [b["id"] for b in reversed(self.broadcasts.list(state="cancelled"))]


def make_web_services(tmp_path: Path, **options: Any) -> WebServices:
    """See WebServices; ``options`` go to ``unit_services`` (e.g. ``broadcasts={"max_repeat": 3}``)."""
    from broadcaster.speech import SpeechService
    from broadcaster.transport.memory import MemoryBroker
    from tests.fakes import FlakyTransport
    from tests.fixtures_controller import unit_services, unit_settings

    transport = FlakyTransport(MemoryBroker())
    speech = SpeechService.from_settings(unit_settings(tmp_path / "instance"))
    services = unit_services(
        tmp_path,
        transport=transport,
        speech=speech,
        fake_fleet=True,
        scheduler=True,
        commune=False,
        **options,
    )
    add_accounts(services.sessions)
    add_fleet(services.sessions)
    services.broadcasts.start()
    return WebServices(services, transport)


def close_web_services(web: WebServices) -> None:
    web.broadcasts.stop()
    web.scheduler.shutdown()
    web.services.db_engine.dispose()


@pytest.fixture
def web_services(tmp_path: Path) -> Iterator[WebServices]:
    web = make_web_services(tmp_path)
    yield web
    close_web_services(web)


@pytest.fixture
def web_app(web_services: WebServices) -> Iterator[Any]:
    from broadcaster.web import create_app, shutdown_app

    app = create_app(web_services.settings, web_services.services, {"TESTING": True})
    yield app
    shutdown_app(app)


@pytest.fixture
def client(web_app: Any) -> Any:
    return web_app.test_client()


_CSRF_RE = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def csrf(client: Any, path: str = "/login") -> str:
    """The CSRF token of the client's session, as a page carries it."""
    page = client.get(path).get_data(as_text=True)
    match = _CSRF_RE.search(page)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def login(client: Any, username: str, password: str = PASSWORD) -> Any:
    token = csrf(client)
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token})


# --- a real browser -----------------------------------------------------------------------------


class LiveServer:
    """A WSGI app served by werkzeug on 127.0.0.1:<free port> in a daemon thread."""

    def __init__(self, app: Any) -> None:
        from werkzeug.serving import make_server

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="live-server", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def live_server() -> Iterator[Callable[[Any], LiveServer]]:
    started: list[LiveServer] = []

    def start(app: Any) -> LiveServer:
        server = LiveServer(app)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Debian Chromium per module. Module scope, not session: Playwright's sync API
    keeps an asyncio loop running in the main thread while it is open, and later modules that
    call asyncio.run() (the agent tests) would fail."""
    if not Path(CHROMIUM).exists():
        pytest.fail(
            "chromium is not installed: run bash scripts/test (it installs it) or apt-get install chromium"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # A fake microphone (a beep) so the in-browser recording can be tested; no prompt.
        fake_mic = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS + fake_mic)
        yield browser
        browser.close()


@pytest.fixture
def page_errors() -> list[str]:
    return []


@pytest.fixture
def new_page(browser: Any, page_errors: list[str]) -> Iterator[Callable[..., Any]]:
    """``new_page(base_url, viewport=...)``: a page in a fresh context (own cookies), with console
    errors and page errors collected in ``page_errors``."""
    contexts: list[Any] = []

    def make(base_url: str, **context_args: Any) -> Any:
        context = browser.new_context(base_url=base_url, locale="vi-VN", **context_args)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.on("pageerror", lambda exc: page_errors.append(f"pageerror: {exc}"))
        page.on(
            "console", lambda msg: page_errors.append(f"console: {msg.text}") if msg.type == "error" else None
        )
        return page

    yield make
    for context in contexts:
        context.close()


def browser_login(page: Any, username: str, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.get_by_label("Tên đăng nhập").fill(username)
    page.get_by_label("Mật khẩu").fill(password)
    page.get_by_role("button", name="Đăng nhập").click()
    page.wait_for_url(lambda url: "/login" not in url)


@dataclass
class UiStack:
    url: str
    services: Any
    cluster_count: int
    zone_names: list[str]


@pytest.fixture(scope="module")
def ui_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiStack]:
    """The real controller as ``broadcaster serve --demo`` runs it (managed mosquitto on a free
    loopback port, nine simulated clusters in three zones, SQLite, espeak-ng), the three test
    accounts, and the web app served on loopback. One per test module: starting it takes a second."""
    from broadcaster.demo import Demo
    from broadcaster.services import build_services
    from broadcaster.web import create_app, shutdown_app

    settings = web_settings(tmp_path_factory.mktemp("controller") / "instance", demo=True)
    services = build_services(settings)
    add_accounts(services.sessions)  # before start: the demo then adds no admin of its own
    demo = Demo(services)  # as `serve --demo` runs it
    demo.prepare()
    services.start()
    server = None
    app = None
    try:
        demo.start()
        deadline = time.monotonic() + 60
        while sum(1 for s in services.fleet.snapshot() if s["online"]) < 9:
            assert time.monotonic() < deadline, "the nine simulated clusters did not come online"
            time.sleep(0.05)
        app = create_app(settings, services)
        server = LiveServer(app)
        zones = [z["name"] for z in services.registry.list_zones()]
        yield UiStack(server.url, services, len(services.fleet.snapshot()), zones)
    finally:
        if server is not None:
            server.stop()
        if app is not None:
            shutdown_app(app)
        demo.stop()
        services.close()

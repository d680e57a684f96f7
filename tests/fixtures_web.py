"""Fixtures of the web tests.

- ``web_services``: the services the UI needs for Flask test-client tests: a real SQLite file, the
  real speech service over espeak-ng (a real audio store in tmp_path), the real scheduler service
  (not started: its CRUD and week view need no running scheduler), and from tests/fakes.py a
  broadcast manager, a fleet and a normalizer with ``analyze``.
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
from pathlib import Path
from typing import Any

import pytest

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


@dataclass
class WebServices:
    services: Any
    settings: Any
    sessions: Any
    broadcasts: Any
    fleet: Any
    speech: Any
    scheduler: Any
    normalizer: Any


@pytest.fixture
def web_services(tmp_path: Path) -> Iterator[WebServices]:
    from broadcaster.audio.store import AudioStore
    from broadcaster.db import create_schema, make_engine, make_session_factory
    from broadcaster.fleet.registry import Registry
    from broadcaster.scheduling import SchedulerService
    from broadcaster.services import Services
    from broadcaster.speech import SpeechService
    from broadcaster.tts import build_chain
    from tests.fakes import FakeAnalyzingNormalizer, FakeLiveFleet, WebFakeBroadcasts

    settings = web_settings(tmp_path / "instance")
    settings.ensure_instance()
    engine = make_engine(settings.db_url)
    create_schema(engine)
    sessions = make_session_factory(engine)
    normalizer = FakeAnalyzingNormalizer()
    speech = SpeechService(
        build_chain(settings.tts),
        AudioStore(settings.cache_dir, settings.audio.cache_max_bytes),
        settings.audio,
        normalizer=normalizer,
        max_chars=settings.textnorm.max_chars,
    )
    broadcasts = WebFakeBroadcasts(sessions)
    fleet = FakeLiveFleet(sessions)
    scheduler = SchedulerService(settings, sessions, broadcasts, speech)
    services = Services(
        settings=settings,
        db_engine=engine,
        sessions=sessions,
        speech=speech,
        transport=None,  # type: ignore[arg-type]
        fleet=fleet,  # type: ignore[arg-type]
        broadcasts=broadcasts,  # type: ignore[arg-type]
        scheduler=scheduler,
        registry=Registry(sessions),
        normalizer=normalizer,
    )
    add_accounts(sessions)
    add_fleet(sessions)
    yield WebServices(services, settings, sessions, broadcasts, fleet, speech, scheduler, normalizer)
    scheduler.shutdown()
    engine.dispose()


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
    from broadcaster.services import build_services
    from broadcaster.web import create_app, shutdown_app

    settings = web_settings(tmp_path_factory.mktemp("controller") / "instance", demo=True)
    services = build_services(settings)
    add_accounts(services.sessions)  # before start: the demo then adds no admin of its own
    services.start()
    server = None
    app = None
    try:
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
        services.close()

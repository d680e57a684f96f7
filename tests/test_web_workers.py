"""The web app's workers and shared limits: a lexicon change re-renders the scheduled bulletins on
a worker; ``shutdown_app`` joins the workers; ``repeat`` and engine checks have one source for the
UI and the API."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from broadcaster.broadcasts import Limits
from broadcaster.web import create_app, shutdown_app
from broadcaster.web.engines import engine_choices
from broadcaster.web.tokens import create_token
from broadcaster.web.ui.jobs import JOBS_KEY
from tests.fakes import FakeSpeech
from tests.fixtures_controller import unit_settings
from tests.fixtures_web import close_web_services, csrf, login, make_web_services


def post(client: Any, path: str, data: dict[str, Any] | None = None) -> Any:
    return client.post(path, data={"csrf_token": csrf(client, "/"), **(data or {})})


# --- lexicon -> scheduled bulletins ---------------------------------------------------------------


class RenderAllSpy:
    """Records the calls of the scheduler's ``render_all`` (and the thread each ran on), then
    passes them on."""

    def __init__(self, scheduler: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.inner = scheduler.render_all
        self.threads: list[str] = []
        self.called = threading.Condition()
        monkeypatch.setattr(scheduler, "render_all", self)

    def __call__(self) -> None:
        with self.called:
            self.threads.append(threading.current_thread().name)
            self.called.notify_all()
        self.inner()

    def wait_calls(self, count: int, timeout: float = 10.0) -> bool:
        with self.called:
            return self.called.wait_for(lambda: len(self.threads) >= count, timeout)


def test_lexicon_save_and_delete_rerender_schedules_on_a_worker(
    client: Any, web_services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = RenderAllSpy(web_services.scheduler, monkeypatch)
    login(client, "approver")  # an approver's lexicon change applies at once (an editor's waits)
    saved = post(client, "/lexicon", {"term": "HTX", "reading": "hợp tác xã"})
    assert saved.status_code == 302
    assert recorder.wait_calls(1), "render_all was not called after a lexicon save"
    assert recorder.threads[0].startswith("loa-web-job")  # not the request's thread
    assert "đang được tạo lại theo cách đọc mới" in client.get("/lexicon").get_data(as_text=True)

    from sqlalchemy import select

    from broadcaster.models import LexiconEntry

    with web_services.sessions() as session:
        entry_id = session.scalar(select(LexiconEntry.id).where(LexiconEntry.term == "HTX"))
    assert post(client, f"/lexicon/{entry_id}/delete").status_code == 302
    assert recorder.wait_calls(2), "render_all was not called after a lexicon delete"


def test_a_refused_lexicon_entry_renders_nothing(
    client: Any, web_services: Any, web_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = RenderAllSpy(web_services.scheduler, monkeypatch)
    login(client, "approver")  # an approver's lexicon change applies at once (an editor's waits)
    assert post(client, "/lexicon", {"term": "", "reading": "x"}).status_code == 400
    shutdown_app(web_app)  # joins the workers: anything submitted has run
    assert recorder.threads == []


# --- workers end with the app ------------------------------------------------------------------------


def test_shutdown_app_joins_the_job_threads(client: Any, web_app: Any) -> None:
    runner = web_app.extensions[JOBS_KEY]
    release = threading.Event()
    started = threading.Event()

    def job() -> dict[str, Any]:
        started.set()
        release.wait(10)
        return {"ok": True}

    job_id = runner.submit(1, "test", job)
    assert started.wait(10)
    stopper = threading.Thread(target=shutdown_app, args=(web_app,))
    stopper.start()
    release.set()
    stopper.join(10)
    assert not stopper.is_alive()
    assert runner.status(job_id, 1)["state"] == "done"  # the running job finished, not cut off
    deadline = time.monotonic() + 5
    while any(t.name.startswith("loa-web-job") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "a web job thread outlived shutdown_app"
        time.sleep(0.01)
    shutdown_app(web_app)  # twice is harmless


def test_cmd_serve_stops_the_web_workers_before_the_services() -> None:
    """cmd_serve's cleanup calls shutdown_app before services.stop (the jobs use the services)."""
    import inspect

    from broadcaster.__main__ import cmd_serve

    source = inspect.getsource(cmd_serve)
    cleanup = source[source.index("finally:") :]
    assert cleanup.index("shutdown_app(app)") < cleanup.index("services.stop()")


# --- one source for repeat and engines ---------------------------------------------------------------


def test_repeat_limit_follows_the_broadcasts_setting(tmp_path: Any) -> None:
    web = make_web_services(tmp_path, broadcasts={"max_repeat": 3})
    app = create_app(web.settings, web.services, {"TESTING": True})
    try:
        assert web.services.validator.limits.max_repeat == 3
        client = app.test_client()
        login(client, "approver")
        form = {"title": "Họp", "text": "Mời bà con họp.", "tier": "normal", "targets": ["all"], "repeat": "4",
                "action": "now", "when": "once"}  # fmt: skip
        refused = post(client, "/compose", form)
        assert refused.status_code == 400 and "Số lần phát từ 1 đến 3." in refused.get_data(as_text=True)
        page = client.get("/compose").get_data(as_text=True)
        assert "3 lần (lặp lại)" in page and "4 lần (lặp lại)" not in page
        token = create_token(web.sessions, "kiem-tra")
        api = client.post("/api/broadcasts", json={"text": "Mời họp.", "targets": ["all"], "repeat": 4},
                          headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert api.status_code == 422 and api.get_json()["error"]["field"] == "repeat"
        assert "từ 1 đến 3" in api.get_json()["error"]["message"]
        assert web.submitted() == []
    finally:
        shutdown_app(app)
        close_web_services(web)


def test_the_renderers_own_limit_caps_the_repeat_limit(tmp_path: Any) -> None:
    """A value accepted at the edge never fails at render time."""
    settings = unit_settings(tmp_path, broadcasts={"max_repeat": 10}, audio={"max_repeat": 4})
    assert Limits.from_settings(settings).max_repeat == 4


def test_the_form_reads_the_engines_in_the_real_shape(tmp_path: Any) -> None:
    from broadcaster.speech import SpeechService

    real = engine_choices(SpeechService.from_settings(unit_settings(tmp_path)))
    fake = engine_choices(FakeSpeech())
    assert [e["name"] for e in real] == ["espeak-ng"] and real[0]["voices"]
    assert [e["name"] for e in fake] == ["fake", "espeak-ng"]
    assert {frozenset(e) for e in real} == {frozenset(e) for e in fake}  # one shape


def test_ui_and_api_refuse_the_same_unknown_engine(client: Any, web_services: Any) -> None:
    login(client, "approver")
    form = {"title": "Họp", "text": "Mời bà con họp.", "tier": "normal", "targets": ["all"], "repeat": "1",
            "action": "now", "when": "once", "engine": "robot"}  # fmt: skip
    refused = post(client, "/compose", form)
    assert refused.status_code == 400 and "Giọng đọc không có trên máy chủ này." in refused.get_data(
        as_text=True
    )
    token = create_token(web_services.sessions, "kiem-tra")
    api = client.post("/api/broadcasts", json={"text": "Mời họp.", "targets": ["all"], "engine": "robot"},
                      headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert api.status_code == 422 and api.get_json()["error"]["field"] == "engine"
    assert "espeak-ng" in api.get_json()["error"]["message"]
    assert web_services.submitted() == []

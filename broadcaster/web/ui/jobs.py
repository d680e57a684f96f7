"""The worker pool for slow work a page waits on: a preview's synthesis, converting an uploaded
recording, re-rendering the schedules after a lexicon change. The page polls ``/jobs/<id>``."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from flask import current_app

from broadcaster.speech import SpeechError
from broadcaster.textnorm import NormalizationError
from broadcaster.web.ui import bp, error_text

_LOGGER = logging.getLogger(__name__)

JOBS_KEY = "loa_jobs"


@dataclass
class Job:
    id: str
    owner: int
    kind: str
    created: float
    future: Future[dict[str, Any]]
    finished: float | None = field(default=None)


class JobRunner:
    """A small pool for slow work a page waits on; jobs are visible only to their owner and
    forgotten ``ttl_s`` after they finish."""

    def __init__(self, workers: int, ttl_s: float = 900.0) -> None:
        self.workers = workers
        self.ttl_s = ttl_s
        self._executor: ThreadPoolExecutor | None = None
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def submit(self, owner: int, kind: str, fn: Callable[[], dict[str, Any]]) -> str:
        with self._lock:
            if self._executor is None:  # threads start on first use, never in the app factory
                self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="loa-web-job")
            self._prune()
            job_id = secrets.token_urlsafe(12)
            future = self._executor.submit(fn)
            job = Job(job_id, owner, kind, time.monotonic(), future)
            self._jobs[job_id] = job
        future.add_done_callback(lambda _f: setattr(job, "finished", time.monotonic()))
        return job_id

    def status(self, job_id: str, owner: int) -> dict[str, Any] | None:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None or job.owner != owner:
            return None
        elapsed = round(time.monotonic() - job.created, 1)
        if not job.future.done():
            return {"state": "running", "kind": job.kind, "elapsed_s": elapsed}
        exc = job.future.exception()
        if exc is not None:
            return {
                "state": "error",
                "kind": job.kind,
                "error": _job_error_message(exc),
                "elapsed_s": elapsed,
            }
        return {"state": "done", "kind": job.kind, "elapsed_s": elapsed, **job.future.result()}

    def _prune(self) -> None:
        now = time.monotonic()
        for key in [
            k for k, j in self._jobs.items() if j.finished is not None and now - j.finished > self.ttl_s
        ]:
            del self._jobs[key]

    def shutdown(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True, cancel_futures=True)
                self._executor = None


def _job_error_message(exc: BaseException) -> str:
    if isinstance(exc, SpeechError | NormalizationError):
        return f"Không tạo được âm thanh: {error_text(exc)}"
    _LOGGER.error("web job failed", exc_info=exc)
    return "Không tạo được âm thanh do lỗi hệ thống. Vui lòng thử lại."


@bp.record_once
def _setup(state: Any) -> None:
    services = state.app.extensions["loa"]
    state.app.extensions.setdefault(JOBS_KEY, JobRunner(services.settings.web.preview_workers))


def jobs() -> JobRunner:
    return current_app.extensions[JOBS_KEY]


def render_result_json(result: Any) -> dict[str, Any]:
    """What a finished preview or recording job reports about its audio."""
    key = str(result.key)
    return {
        "key": key,
        "duration_s": round(float(result.duration_s), 1),
        "engine": getattr(result, "engine", None),
        "voice": getattr(result, "voice", None),
        "cache_hit": bool(getattr(result, "cache_hit", False)),
        "normalized_text": getattr(result, "normalized_text", None),
    }

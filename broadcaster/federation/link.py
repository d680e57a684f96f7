"""The lower level's side of the Loa xã link (HTTP through ``federation.http``, stdlib urllib).
The lower level always opens the connection (a commune behind 4G or NAT).

Two threads over one endpoint (``POST {upstream}/federation/v1/sync``):

- ``fed-down`` long-polls: it acknowledges the bulletins it stored (its cursor) and waits up to
  ``federation.poll_wait_s`` for new ones, which it hands to the intake in sequence, moving the
  cursor after each (a crash re-fetches, the inbox refuses a duplicate);
- ``fed-up`` sends the queued reports, in order, as soon as there are any, and forgets those the
  upper level acknowledged.

A failed exchange waits ``retry_min_s``, doubling up to ``retry_max_s`` (with jitter). A refused
time (``stale``) is corrected from the upper level's signed clock and retried at once. A revoked
token stops the link with a clear error (``state`` ``revoked``) until ``upstream set`` again.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from broadcaster.federation import http, signing
from broadcaster.federation.config import FederationConfig
from broadcaster.federation.downstream import AUDIO_PATH, SYNC_PATH
from broadcaster.federation.intake import UPSTREAM, Incoming, Intake
from broadcaster.federation.models import FedLink
from broadcaster.federation.reportqueue import LINK_ROW, ReportQueue
from broadcaster.federation.wire import AudioRef, Bulletin, SyncRequest, SyncResponse, WireError

_LOGGER = logging.getLogger(__name__)


class LinkError(Exception):
    """An exchange that failed: ``code`` (the upper level's error code, or ``network``,
    ``bad_response``) and whether retrying can help."""

    def __init__(
        self, code: str, message: str, *, retry: bool = True, server_time: float | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry = retry
        self.server_time = server_time


class LoaLink:
    """The Loa xã upstream adapter (see the module docstring); implements ``Upstream``."""

    name = "upstream"
    kind = "loa-xa"

    def __init__(
        self,
        sessions: sessionmaker[Session],
        config: FederationConfig,
        queue: ReportQueue,
        intake: Intake,
        lock: threading.RLock,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sessions = sessions
        self.config = config
        self.queue = queue
        self.intake = intake
        self.lock = lock
        self.clock = clock
        self.offset = 0.0  # the upper level's clock minus ours, learned from a 'stale' refusal
        self._poll_after = 0.0
        self._stop = threading.Event()
        self._reports = threading.Event()
        self._threads: list[threading.Thread] = []
        self._apply_lock = threading.Lock()
        self._state = "stopped"
        self._error: str | None = None
        self.stats = {"exchanges": 0, "failures": 0, "items": 0, "reports_sent": 0, "refused_responses": 0}
        intake.fetchers[UPSTREAM] = self.fetch_audio

    # ------------------------------------------------------------------ Upstream

    def start(self) -> None:
        if self._threads:
            return
        self._stop.clear()
        self._state = "starting"
        for name, target in (("fed-down", self._down_loop), ("fed-up", self._up_loop)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self._reports.set()
        for thread in self._threads:
            thread.join(timeout=self.config.poll_wait_s + self.config.timeout_s + 5)
        self._threads = []
        if self._state != "revoked":
            self._state = "stopped"

    @property
    def running(self) -> bool:
        return bool(self._threads) and not self._stop.is_set()

    def status(self) -> dict[str, Any]:
        link = self._link()
        return {
            "name": self.name,
            "kind": self.kind,
            "state": self._state,
            "error": self._error,
            "url": link.url if link else None,
            "unit": link.unit if link else None,
            "queued_reports": self.queue.size(),
            "dropped_reports": link.dropped_reports if link else 0,
            "last_ok": link.last_ok.isoformat() if link and link.last_ok else None,
            **self.stats,
        }

    def reports_waiting(self) -> None:
        """Tell the up thread that reports were queued."""
        self._reports.set()

    # ------------------------------------------------------------------ loops

    def _down_loop(self) -> None:
        def once() -> None:
            self.exchange(wait=self.config.poll_wait_s, with_reports=False)
            if self._poll_after:  # the upper level could not hold our poll: not a busy loop
                self._stop.wait(self._poll_after)

        self._loop(once)

    def _up_loop(self) -> None:
        def once() -> None:
            self._reports.wait(timeout=max(self.config.collect_interval_s, 0.5))
            self._reports.clear()
            while not self._stop.is_set() and self.exchange(wait=0, with_reports=True):
                pass

        self._loop(once)

    def _loop(self, step: Callable[[], Any]) -> None:
        backoff = self.config.retry_min_s
        while not self._stop.is_set():
            try:
                step()
                backoff = self.config.retry_min_s
                continue
            except LinkError as exc:
                self._failed(exc)
                if not exc.retry:
                    return
                if exc.code == "stale" and exc.server_time is not None:
                    continue  # clock corrected: retry at once
            except Exception as exc:  # never let a bug end the link thread
                _LOGGER.exception("federation link: unexpected error")
                self._failed(LinkError("error", f"{type(exc).__name__}: {exc}"))
            wait = backoff * random.uniform(0.8, 1.2)
            backoff = min(backoff * 2, self.config.retry_max_s)
            self._stop.wait(wait)

    def _failed(self, exc: LinkError) -> None:
        self.stats["failures"] += 1
        self._error = exc.message
        if exc.code == "revoked":
            self._state = "revoked"
            self._save_state("revoked", exc.message)  # before stopping: the supervisor must not restart us
            self._stop.set()
            _LOGGER.error("federation link: the upper level revoked this unit's token: the link is cut")
            return
        elif exc.code == "stale" and exc.server_time is not None:
            self.offset = exc.server_time - self.clock()
            _LOGGER.warning(
                "federation link: our clock is off by %.1f s; corrected for the link", -self.offset
            )
        else:
            self._state = "error"
            _LOGGER.warning("federation link: %s (%s)", exc.message, exc.code)
        self._save_state(exc.code if exc.code == "revoked" else "error", exc.message)

    # ------------------------------------------------------------------ one exchange

    def exchange(self, *, wait: float, with_reports: bool) -> bool:
        """One sync; True when reports were acknowledged and more may be waiting."""
        link = self._link()
        if link is None:
            raise LinkError("unconfigured", "no upstream configured", retry=False)
        reports = self.queue.pending(self.config.reports_per_message) if with_reports else []
        if with_reports and not reports:
            return False
        request = SyncRequest(link.unit, link.link_id, link.cursor, wait, tuple(reports))
        body = signing.canonical_json(request.to_dict())
        status, headers, data = self._call(
            link, "POST", SYNC_PATH, body, timeout=wait + self.config.timeout_s
        )
        try:
            response = SyncResponse.from_dict(json.loads(data.decode("utf-8")))
        except (ValueError, WireError) as exc:
            raise LinkError("bad_response", f"malformed answer from the upper level: {exc}") from exc
        self.stats["exchanges"] += 1
        self._state, self._error = "ok", None
        self._save_state("ok", None)
        sent = [r for r in reports if r.seq <= response.acked]
        if sent:
            self.queue.ack(response.acked)
            self.stats["reports_sent"] += len(sent)
        self._apply(response)
        if not with_reports:
            self._poll_after = 0.0 if response.items else response.poll_after
        return bool(sent) and len(reports) == self.config.reports_per_message

    def _apply(self, response: SyncResponse) -> None:
        with self._apply_lock:
            for item in response.items:
                link = self._link()
                if link is None or item.seq <= link.cursor:
                    continue
                try:
                    if item.kind == "bulletin":
                        self.intake.receive(Incoming(UPSTREAM, Bulletin.from_dict(item.data)))
                    else:
                        ref = str(item.data.get("id", ""))[:64]
                        self.intake.cancel(UPSTREAM, ref, "cấp trên rút lại tin")
                except WireError as exc:
                    _LOGGER.warning("federation link: item %s refused: %s", item.seq, exc.message)
                self.stats["items"] += 1
                with self.lock, self.sessions.begin() as session:
                    row = session.get(FedLink, LINK_ROW)
                    if row is not None and row.link_id == link.link_id:
                        row.cursor = max(row.cursor, item.seq)

    def fetch_audio(self, ref: AudioRef) -> bytes:
        link = self._link()
        if link is None:
            raise LinkError("unconfigured", "no upstream configured", retry=False)
        if ref.size > self.config.max_audio_bytes:
            raise LinkError("too_large", f"audio of {ref.size} bytes is over the limit", retry=False)
        _, _, data = self._call(link, "GET", AUDIO_PATH + ref.sha256, b"", timeout=self.config.timeout_s * 4)
        return data

    # ------------------------------------------------------------------ HTTP

    def _call(
        self, link: FedLink, method: str, path: str, body: bytes, *, timeout: float
    ) -> tuple[int, Any, bytes]:
        key = signing.derive_key(link.token)
        headers = signing.sign_request(key, method, path, link.unit, body, self.clock() + self.offset)
        nonce = headers[signing.HEADER_NONCE]
        if body:
            headers["Content-Type"] = "application/json"
        url = link.url.rstrip("/") + path
        try:
            status, reply_headers, data = http.fetch(
                method,
                url,
                body=body if method == "POST" else None,
                headers=headers,
                timeout=timeout,
                limit=self._limit(path),
                verify=self.config.verify_tls,
                ca_file=self.config.ca_file,
            )
        except http.TooLarge as exc:
            raise LinkError("bad_response", str(exc)) from exc
        except http.NetworkError as exc:
            raise LinkError("network", f"upstream {exc}") from exc
        ok, server_time = signing.verify_response(key, status, nonce, reply_headers, data)
        if status != 200:
            code, message = _error_of(data)
            if not ok:  # unsigned (unknown unit, bad signature): reported, never acted on beyond a retry
                raise LinkError(
                    code if code != "revoked" else "refused",
                    f"refused by the upper level: {message} ({code})",
                )
            raise LinkError(
                code,
                f"refused by the upper level: {message}",
                retry=code != "revoked",
                server_time=server_time,
            )
        if not ok:
            self.stats["refused_responses"] += 1
            raise LinkError("bad_response", "the answer is not signed with this unit's key (ignored)")
        return status, reply_headers, data

    def _limit(self, path: str) -> int:
        return (
            self.config.max_audio_bytes if path.startswith(AUDIO_PATH) else self.config.max_message_bytes * 4
        )

    # ------------------------------------------------------------------ the link row

    def _link(self) -> FedLink | None:
        with self.sessions() as session:
            return session.get(FedLink, LINK_ROW)

    def _save_state(self, state: str, error: str | None) -> None:
        try:
            with self.lock, self.sessions.begin() as session:
                row = session.get(FedLink, LINK_ROW)
                if row is None:
                    return
                if row.state != "revoked" or state == "revoked":
                    row.state = state
                row.last_error = error
                if state == "ok":
                    row.last_ok = datetime.now(UTC)
        except Exception:
            _LOGGER.debug("federation link: state not saved", exc_info=True)


def _error_of(data: bytes) -> tuple[str, str]:
    try:
        error = json.loads(data.decode("utf-8"))["error"]
        return str(error["code"])[:40], str(error["message"])[:300]
    except (ValueError, KeyError, TypeError):
        return "http_error", data[:200].decode("utf-8", "replace")


__all__ = ["LinkError", "LoaLink"]

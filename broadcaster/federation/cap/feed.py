"""A CAP 1.2 feed as an upstream (``Upstream``): polled over HTTP(S) and/or pushed to the webhook
``POST /federation/v1/cap/<name>``.

Each alert: not ``status`` Actual (Test, Exercise, System, Draft) -> ignored; ``Cancel`` -> the
items of its ``references`` are cancelled; ``Alert``/``Update`` -> the first matching rule makes an
item (``rules``), an Update first cancelling the items it replaces that have not started airing.
A duplicate (same sender, identifier, sent) is ignored by the intake. Polling sends
``If-None-Match``/``If-Modified-Since`` and fetches each Atom entry's alert once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from broadcaster.federation import http
from broadcaster.federation.cap.parse import CapAlert, CapError, parse_document
from broadcaster.federation.cap.rules import choose_info, match_rule, to_incoming
from broadcaster.federation.config import CapConfig, CapSource
from broadcaster.federation.intake import Intake

_LOGGER = logging.getLogger(__name__)

# Atom entry links already fetched, remembered per feed (the intake refuses duplicates anyway).
_SEEN_LINKS = 2000
# A feed that keeps failing is polled at most this rarely.
_MAX_BACKOFF_S = 3600.0


class CapFeed:
    kind = "cap"

    def __init__(
        self, source: CapSource, config: CapConfig, intake: Intake, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.source = source
        self.name = f"cap:{source.name}"
        self.config = config
        self.intake = intake
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._etag: str | None = None
        self._modified: str | None = None
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._state, self._error = "stopped", None
        self.stats = {"polls": 0, "alerts": 0, "aired": 0, "ignored": 0, "cancelled": 0, "malformed": 0}

    # ------------------------------------------------------------------ Upstream

    def start(self) -> None:
        if self.source.url is None or self._thread is not None:
            self._state = "webhook" if self.source.url is None else self._state
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"cap-{self.source.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.source.timeout_s + 5)
            self._thread = None
        self._state = "stopped"

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "state": self._state,
            "error": self._error,
            **self.stats,
        }

    # ------------------------------------------------------------------ polling

    def _loop(self) -> None:
        wait = self.source.interval_s
        while not self._stop.is_set():
            try:
                self.poll()
                wait = self.source.interval_s
            except (http.NetworkError, CapError) as exc:
                self._state, self._error = "error", str(exc)
                _LOGGER.warning("CAP feed %s: %s", self.source.name, exc)
                wait = min(wait * 2, _MAX_BACKOFF_S)
            except Exception as exc:  # never let a bug end the feed
                self._state, self._error = "error", f"{type(exc).__name__}: {exc}"
                _LOGGER.exception("CAP feed %s: unexpected error", self.source.name)
            self._stop.wait(wait)

    def poll(self) -> list[str]:
        """One poll; the outcome of each alert (for tests and the log)."""
        assert self.source.url is not None
        headers = {"Accept": "application/cap+xml, application/atom+xml, application/xml"}
        if self._etag:
            headers["If-None-Match"] = self._etag
        if self._modified:
            headers["If-Modified-Since"] = self._modified
        status, reply, data = http.fetch(
            "GET",
            self.source.url,
            headers=headers,
            timeout=self.source.timeout_s,
            limit=self.config.max_bytes,
        )
        self.stats["polls"] += 1
        if status == 304:
            self._state, self._error = "ok", None
            return []
        if status != 200:
            raise http.NetworkError(f"answered HTTP {status}")
        self._etag, self._modified = reply.get("ETag"), reply.get("Last-Modified")
        alerts, links = parse_document(data, max_bytes=self.config.max_bytes)
        for link in links:
            if link in self._seen:
                continue
            status, _, entry = http.fetch(
                "GET", link, headers={"Accept": "application/cap+xml"}, timeout=self.source.timeout_s,
                limit=self.config.max_bytes,
            )  # fmt: skip
            if status == 200:
                alerts += parse_document(entry, max_bytes=self.config.max_bytes)[0]
                self._seen[link] = None
                while len(self._seen) > _SEEN_LINKS:
                    self._seen.popitem(last=False)
        self._state, self._error = "ok", None
        return [self.process(a) for a in alerts]

    # ------------------------------------------------------------------ alerts

    def handle_document(self, data: bytes) -> list[str]:
        """A pushed document (the webhook): its alerts processed; CapError when malformed."""
        try:
            alerts, _ = parse_document(data, max_bytes=self.config.max_bytes)
        except CapError:
            self.stats["malformed"] += 1
            raise
        return [self.process(a) for a in alerts]

    def process(self, alert: CapAlert) -> str:
        self.stats["alerts"] += 1
        origin = self.name
        if alert.status != "Actual":
            self.stats["ignored"] += 1
            _LOGGER.info(
                "CAP %s: %s alert %s ignored (status %s)",
                self.source.name,
                alert.msg_type,
                alert.identifier,
                alert.status,
            )
            return "ignored"
        if alert.msg_type == "Cancel":
            done = sum(self.intake.cancel(origin, ref, "cảnh báo đã được hủy") for ref in alert.references)
            self.stats["cancelled"] += done
            _LOGGER.info(
                "CAP %s: cancel of %s: %s item(s) cancelled", self.source.name, alert.references, done
            )
            return "cancelled"
        if alert.msg_type not in ("Alert", "Update"):
            self.stats["ignored"] += 1
            return "ignored"
        info = choose_info(alert, self.config.language)
        rule = match_rule(self.config.rules, self.source.name, info) if info is not None else None
        if info is None or rule is None:
            self.stats["ignored"] += 1
            _LOGGER.info("CAP %s: alert %s matches no rule: not aired", self.source.name, alert.identifier)
            return "no_rule"
        incoming = to_incoming(alert, self.source.name, rule, info)
        if not incoming.bulletin.text.strip():
            self.stats["ignored"] += 1
            return "empty"
        self.intake.receive(incoming)
        self.stats["aired"] += 1
        return "submitted"


__all__ = ["CapFeed"]

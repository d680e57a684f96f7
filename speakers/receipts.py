"""Receipts: the node's ``event`` messages, and the outbox that keeps them across restarts.

Every receipt goes through the link's outbox, in order, and waits there while the broker is
unreachable. Receipts that must not be lost even if the agent restarts before the broker is
back (those of items aired offline, and anything said while disconnected) are also written to
``receipts-outbox.jsonl`` in the cache folder and removed once the broker acknowledged them; at
start the agent sends whatever is left there first.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from speakers.protocol import EVENT_EXPIRY_S, Event

_LOGGER = logging.getLogger(__name__)

# Far more than days of offline airings; beyond it the oldest are dropped with a warning, so a
# node that stays offline for months does not fill its disk with receipts.
MAX_SAVED_RECEIPTS = 5000


class _Link(Protocol):
    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        expiry_s: int | None = None,
        on_done: Callable[[], None] | None = None,
    ) -> None: ...


class ReceiptOutbox:
    """Receipts written to disk until the broker acknowledged them (JSON lines ``{"n", "p"}``)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._pending: dict[int, str] = {}
        self._next = 0
        self._load()

    def _load(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except OSError as exc:
            _LOGGER.warning("cannot read saved receipts %s: %s", self.path, exc)
            return
        for line in text.splitlines():
            try:
                entry = json.loads(line)
                self._pending[int(entry["n"])] = str(entry["p"])
            except (ValueError, KeyError, TypeError):
                _LOGGER.warning("dropping a damaged line of %s", self.path)
        self._next = max(self._pending, default=-1) + 1

    def pending(self) -> list[tuple[int, bytes]]:
        return [(n, p.encode("utf-8")) for n, p in sorted(self._pending.items())]

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, payload: bytes) -> int:
        n = self._next
        self._next += 1
        self._pending[n] = payload.decode("utf-8")
        while len(self._pending) > MAX_SAVED_RECEIPTS:
            oldest = min(self._pending)
            del self._pending[oldest]
            _LOGGER.warning("too many unsent receipts; dropping the oldest")
        line = json.dumps({"n": n, "p": self._pending[n]}, ensure_ascii=False) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            _LOGGER.error("cannot save a receipt to %s: %s (it is still queued in memory)", self.path, exc)
        return n

    def remove(self, n: int) -> None:
        if self._pending.pop(n, None) is None:
            return
        self._rewrite()

    def _rewrite(self) -> None:
        if not self._pending:
            with contextlib.suppress(FileNotFoundError, OSError):
                self.path.unlink()
            return
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                for n, payload in sorted(self._pending.items()):
                    fh.write(json.dumps({"n": n, "p": payload}, ensure_ascii=False) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            _LOGGER.error("cannot rewrite saved receipts %s: %s", self.path, exc)


class Receipts:
    """Sends a node's receipts on its ``events`` topic (QoS 1, 24 h message expiry)."""

    def __init__(self, link: _Link, topic: str, outbox_path: Path) -> None:
        self.link = link
        self.topic = topic
        self.outbox_path = outbox_path
        self._outbox: ReceiptOutbox | None = None  # opened at the first use (thousands of simulated nodes)
        self.sent: collections.Counter[str] = collections.Counter()

    @property
    def outbox(self) -> ReceiptOutbox:
        if self._outbox is None:
            self._outbox = ReceiptOutbox(self.outbox_path)
        return self._outbox

    def resend_saved(self) -> int:
        """Queue the receipts a previous run saved and could not send; returns how many."""
        if not self.outbox_path.exists():
            return 0
        saved = self.outbox.pending()
        for n, payload in saved:
            self._publish(payload, n)
        if saved:
            _LOGGER.info("%d saved receipt(s) queued from the previous run", len(saved))
        return len(saved)

    def send(self, event: Event, *, persist: bool = False, count: bool = True) -> None:
        """Send ``event``; ``persist``: also keep it on disk until acknowledged. ``count`` False for a
        receipt said again (a duplicate command's answer), so :attr:`sent` counts distinct ones."""
        if count:
            self.sent[event.state] += 1
        payload = event.encode()
        self._publish(payload, self.outbox.add(payload) if persist else None)

    def _publish(self, payload: bytes, saved: int | None) -> None:
        on_done = None
        if saved is not None:
            outbox = self.outbox

            def on_done(n: int = saved) -> None:
                outbox.remove(n)

        self.link.publish(self.topic, payload, qos=1, expiry_s=EVENT_EXPIRY_S, on_done=on_done)

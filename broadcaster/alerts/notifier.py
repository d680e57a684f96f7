"""The alert notifier: fleet alerts to e-mail and webhooks, on threads of its own.

::

    notifier = AlertNotifier(settings.alerts, fleet, timezone=settings.timezone)
    notifier.start()   # after fleet.start() or before: it listens to the fleet's alert changes
    ...
    notifier.stop()

The fleet's worker hands each committed alert change to :meth:`AlertNotifier.submit`, which only
enqueues (a bounded queue: when it is full the change is dropped and counted; the fleet never
waits). The ``alerts-notifier`` thread runs the :class:`~broadcaster.alerts.policy.AlertPolicy`
(delays, rate limit, digests) and formats the messages; each channel has its own courier thread
that delivers them in order with retries and a doubling backoff, so a channel that is down or slow
holds up neither the other channels nor the fleet. A message that still fails after the retries is
dropped with an error line in the log.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from broadcaster.alerts.channels import Channel, DeliveryError, build_channel
from broadcaster.alerts.config import AlertsConfig
from broadcaster.alerts.messages import Formatter, Notice
from broadcaster.alerts.policy import AlertPolicy, ChannelRule, Outgoing
from broadcaster.fleet.alerting import AlertChange

_LOGGER = logging.getLogger(__name__)

# Alert changes waiting for the notifier thread. Far more than a whole fleet's worth of changes in
# one pass; past it the fleet's alerts are dropped (counted) rather than the fleet made to wait.
_INBOX_MAX = 20_000
# Messages waiting for one channel; the rate limit keeps this short, so only a bug could fill it.
_OUTBOX_MAX = 1_000
# The longest wait between two retries of one message, whatever retry_backoff_s doubles to.
_MAX_BACKOFF_S = 300.0
# How long stop() waits for each thread; a courier stuck in a send times out by itself later.
_JOIN_TIMEOUT_S = 5.0


class AlertSource(Protocol):
    def add_alert_listener(self, callback: Callable[[AlertChange], None]) -> None: ...


@dataclass
class _Courier:
    channel: Channel
    outbox: queue.Queue[Notice | None]
    thread: threading.Thread | None = None


class AlertNotifier:
    """Sends the fleet's alerts to the configured channels (see the module docstring)."""

    def __init__(
        self,
        config: AlertsConfig,
        fleet: AlertSource | None,
        *,
        timezone: str = "Asia/Ho_Chi_Minh",
        channels: list[Channel] | None = None,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Build the channels (``channels`` replaces those of ``config``). Raises
        :class:`~broadcaster.alerts.config.AlertsConfigError` when a secret's environment variable is
        not set."""
        self.config = config
        self.fleet = fleet
        self.clock = clock
        if channels is None:
            channels = [build_channel(c, environ) for c in config.channels]
        names = [c.name for c in channels]
        if len(set(names)) != len(names):
            raise ValueError(f"alert channels need distinct names (set 'name'): {names}")
        self.formatter = Formatter(
            config.instance_name, timezone, config.dashboard_url, config.digest_max_lines
        )
        self.policy = AlertPolicy(
            [ChannelRule(c.name, c.kinds) for c in channels],
            config.offline_delay_s,
            config.rate_limit_count,
            config.rate_limit_window_s,
        )
        self._couriers = {c.name: _Courier(c, queue.Queue(_OUTBOX_MAX)) for c in channels}
        self._inbox: queue.Queue[AlertChange | threading.Event | None] = queue.Queue(_INBOX_MAX)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._subscribed = False
        self._lock = threading.Lock()
        self.stats: dict[str, int] = {"inbox_dropped": 0}
        self.channel_stats: dict[str, dict[str, int]] = {
            name: {"messages": 0, "attempts": 0, "failures": 0, "sent": 0, "dropped": 0, "alerts_sent": 0}
            for name in self._couriers
        }

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._thread is not None:
            return
        if self.fleet is not None and not self._subscribed:
            self.fleet.add_alert_listener(self.submit)
            self._subscribed = True
        self._stopping.clear()
        for name, courier in self._couriers.items():
            courier.thread = threading.Thread(
                target=self._deliver_loop, args=(courier,), name=f"alerts-{name}", daemon=True
            )
            courier.thread.start()
        self._thread = threading.Thread(target=self._run, name="alerts-notifier", daemon=True)
        self._thread.start()
        _LOGGER.info(
            "alert notifier started with %s channel(s): %s", len(self._couriers), ", ".join(self._couriers)
        )

    def stop(self) -> None:
        """Stop the threads. Alerts still delayed or held for a digest are not sent (logged)."""
        if self._thread is None:
            return
        self._stopping.set()
        try:
            self._inbox.put(None, timeout=_JOIN_TIMEOUT_S)  # behind what is queued; waits if it is full
        except queue.Full:
            _LOGGER.error("alert notifier: queue full at stop; its thread is left to end with the process")
        self._thread.join(timeout=_JOIN_TIMEOUT_S)
        self._thread = None
        for courier in self._couriers.values():
            try:
                courier.outbox.put_nowait(None)
            except queue.Full:
                pass  # the courier sees _stopping after its current message
            if courier.thread is not None:
                courier.thread.join(timeout=_JOIN_TIMEOUT_S)
                courier.thread = None
        held = self.policy.drain()
        unsent = sum(len(entries) for entries in held.values())
        if unsent:
            _LOGGER.warning(
                "alert notifier stopped with %s alert message(s) not sent (delayed or rate-limited)", unsent
            )

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every change submitted so far went through the policy (tests)."""
        done = threading.Event()
        self._put(done)
        return done.wait(timeout)

    # ------------------------------------------------------------------ input

    def submit(self, change: AlertChange) -> None:
        """Fleet alert listener: enqueue and return at once (never blocks, never raises)."""
        self._put(change)

    def _put(self, item: AlertChange | threading.Event | None) -> None:
        try:
            self._inbox.put_nowait(item)
        except queue.Full:
            with self._lock:
                self.stats["inbox_dropped"] += 1
                dropped = self.stats["inbox_dropped"]
            if dropped == 1 or dropped % 1000 == 0:
                _LOGGER.error("alert notifier: queue full, %s alert change(s) dropped so far", dropped)

    def announce(self, subject: str, text: str, payload: dict[str, Any]) -> None:
        """A message that is not a fleet alert (an emergency bulletin from the district, issue 11)
        to every channel at once, bypassing the alert policy; never blocks, never raises."""
        notice = Notice(subject, text, payload, 0)
        for name, courier in self._couriers.items():
            self.channel_stats[name]["messages"] += 1
            try:
                courier.outbox.put_nowait(notice)
            except queue.Full:
                self.channel_stats[name]["dropped"] += 1
                _LOGGER.error("alert channel %s: outbox full, message dropped: %s", name, subject)

    def metrics(self) -> dict[str, Any]:
        return {
            **self.stats,
            **self.policy.stats,
            "pending": self.policy.pending(),
            "backlog": self.policy.backlog(),
            "channels": {name: dict(stats) for name, stats in self.channel_stats.items()},
        }

    # ------------------------------------------------------------------ the notifier thread

    def _run(self) -> None:
        while True:
            due = self.policy.next_due()
            timeout = None if due is None else max(0.0, due - self.clock())
            try:
                item = self._inbox.get(timeout=timeout)
            except queue.Empty:
                item = False  # a timer is due
            try:
                if item is None:
                    return
                if isinstance(item, AlertChange):
                    self._dispatch(self.policy.add(item, self.clock()))
                else:
                    self._dispatch(self.policy.tick(self.clock()))
                    if isinstance(item, threading.Event):
                        item.set()
            except Exception:
                _LOGGER.exception("alert notifier: handling an alert change failed")

    def _dispatch(self, outgoing: list[Outgoing]) -> None:
        for out in outgoing:
            courier = self._couriers[out.channel]
            notice = self.formatter.notice(out)
            self.channel_stats[out.channel]["messages"] += 1
            try:
                courier.outbox.put_nowait(notice)
            except queue.Full:
                self.channel_stats[out.channel]["dropped"] += 1
                _LOGGER.error(
                    "alert channel %s: outbox full, message dropped: %s", out.channel, notice.subject
                )

    # ------------------------------------------------------------------ couriers

    def _deliver_loop(self, courier: _Courier) -> None:
        stats = self.channel_stats[courier.channel.name]
        while not self._stopping.is_set():
            notice = courier.outbox.get()
            if notice is None:
                break
            self._deliver(courier.channel, notice, stats)
        left = courier.outbox.qsize()
        if left:
            _LOGGER.warning(
                "alert channel %s stopped with %s message(s) not sent", courier.channel.name, left
            )

    def _deliver(self, channel: Channel, notice: Notice, stats: dict[str, int]) -> None:
        attempts = self.config.retries + 1
        backoff = self.config.retry_backoff_s
        for attempt in range(1, attempts + 1):
            stats["attempts"] += 1
            try:
                channel.send(notice)
            except DeliveryError as exc:
                error = str(exc)
            except Exception as exc:  # a channel must raise DeliveryError; never let a bug kill the courier
                error = f"{type(exc).__name__} (unexpected)"
            else:
                stats["sent"] += 1
                stats["alerts_sent"] += notice.alert_count
                _LOGGER.info("alert message sent through %s: %s", channel.name, notice.subject)
                return
            stats["failures"] += 1
            if attempt == attempts or self._stopping.is_set():
                stats["dropped"] += 1
                _LOGGER.error(
                    "alert message dropped after %s attempt(s) through %s: %s (%s)",
                    attempt,
                    channel.name,
                    notice.subject,
                    error,
                )
                return
            _LOGGER.warning(
                "alert message through %s failed (attempt %s of %s, retry in %.1f s): %s",
                channel.name,
                attempt,
                attempts,
                backoff,
                error,
            )
            if self._stopping.wait(backoff):
                stats["dropped"] += 1
                return
            backoff = min(backoff * 2, _MAX_BACKOFF_S)

"""When an alert change becomes a message, and on which channel: delays, rate limit, digests.

Sans-I/O: :class:`AlertPolicy` takes alert changes and the time (``add``, ``tick``) and returns the
messages due (:class:`Outgoing`); it has no threads, no clock and sends nothing. The notifier
feeds it and hands what it returns to the channels' couriers.

- **Delay.** A raised ``offline`` or ``stale`` alert waits ``offline_delay_s`` before it is
  released; resolved meanwhile, it is cancelled and nothing at all is sent (a blip pages nobody).
- **Rate limit, per channel.** A fixed window opens with the first message; at most ``count``
  messages go out in it. Beyond, alerts wait in the channel's backlog and go out as one digest when
  the window ends (the digest opens the next window and counts in it). A resolved alert whose raise is
  still in the backlog joins it (one digest line: raised, then resolved). So a channel never sends
  more than ``count`` messages per window, whatever the storm.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from broadcaster.fleet.alerting import AlertChange

# The kinds that mean "this cluster is gone": a blip shorter than the delay is not worth a message.
DELAYED_KINDS = frozenset({"offline", "stale"})


@dataclass(frozen=True)
class Entry:
    """One alert in a message: raised (``resolved`` None), resolved, or raised and resolved since."""

    change: AlertChange
    resolved: AlertChange | None = None


@dataclass(frozen=True)
class Outgoing:
    """A message due on ``channel``: one alert, or a digest of several."""

    channel: str
    entries: tuple[Entry, ...]
    digest: bool = False


@dataclass(frozen=True)
class ChannelRule:
    name: str
    kinds: frozenset[str] | None = None  # None: every kind

    def accepts(self, kind: str) -> bool:
        return self.kinds is None or kind in self.kinds


@dataclass
class _Limiter:
    count: int
    window_s: float
    window_start: float | None = None
    sent: int = 0
    backlog: list[Entry] = field(default_factory=list)

    def due(self) -> float | None:
        if self.backlog and self.window_start is not None:
            return self.window_start + self.window_s
        return None

    def tick(self, channel: str, now: float) -> list[Outgoing]:
        if self.window_start is not None and now >= self.window_start + self.window_s:
            if not self.backlog:
                self.window_start = None
                return []
            entries, self.backlog = tuple(self.backlog), []
            self.window_start, self.sent = now, 1
            digest = len(entries) > 1 or entries[0].resolved is not None
            return [Outgoing(channel, entries, digest=digest)]
        return []

    def offer(self, channel: str, change: AlertChange, now: float) -> list[Outgoing]:
        out = self.tick(channel, now)
        if self.window_start is None:
            self.window_start, self.sent = now, 0
        if not self.backlog and self.sent < self.count:
            self.sent += 1
            out.append(Outgoing(channel, (Entry(change),)))
            return out
        if change.state == "resolved":
            for index, entry in enumerate(self.backlog):
                if entry.resolved is None and entry.change.state == "raised" and _same(entry.change, change):
                    self.backlog[index] = Entry(entry.change, change)
                    return out
        self.backlog.append(Entry(change))
        return out

    def drain(self) -> list[Entry]:
        entries, self.backlog = self.backlog, []
        return entries


def _same(raised: AlertChange, resolved: AlertChange) -> bool:
    if raised.alert_id is not None and resolved.alert_id is not None:
        return raised.alert_id == resolved.alert_id
    return raised.key == resolved.key


class AlertPolicy:
    """Delays and rate limits of the alert messages (see the module docstring)."""

    def __init__(
        self,
        channels: Iterable[ChannelRule],
        offline_delay_s: float,
        rate_limit_count: int,
        rate_limit_window_s: float,
    ) -> None:
        self.channels = list(channels)
        self.offline_delay_s = offline_delay_s
        self._limiters = {c.name: _Limiter(rate_limit_count, rate_limit_window_s) for c in self.channels}
        self._pending: dict[tuple[str, str], tuple[AlertChange, float]] = {}  # key -> (change, due)
        self.stats = {"received": 0, "cancelled": 0, "released": 0}

    def pending(self) -> int:
        """Raised alerts waiting for their delay."""
        return len(self._pending)

    def backlog(self) -> int:
        return sum(len(limiter.backlog) for limiter in self._limiters.values())

    def next_due(self) -> float | None:
        """The earliest time at which ``tick`` has something to do (None: nothing waits)."""
        times = [due for _, due in self._pending.values()]
        times.extend(t for t in (lim.due() for lim in self._limiters.values()) if t is not None)
        return min(times) if times else None

    def add(self, change: AlertChange, now: float) -> list[Outgoing]:
        self.stats["received"] += 1
        out = self.tick(now)
        key = change.key
        if change.state == "raised":
            if change.kind in DELAYED_KINDS and self.offline_delay_s > 0:
                self._pending[key] = (change, now + self.offline_delay_s)
                return out
            return out + self._release(change, now)
        waiting = self._pending.get(key)
        if waiting is not None and _same(waiting[0], change):
            del self._pending[key]
            self.stats["cancelled"] += 1
            return out
        return out + self._release(change, now)

    def tick(self, now: float) -> list[Outgoing]:
        out: list[Outgoing] = []
        for key, (change, due) in sorted(self._pending.items(), key=lambda item: item[1][1]):
            if due <= now:
                del self._pending[key]
                out.extend(self._release(change, now))
        for name, limiter in self._limiters.items():
            out.extend(limiter.tick(name, now))
        return out

    def drain(self) -> dict[str, list[Entry]]:
        """Everything still held back, per channel (at shutdown: for the log)."""
        held = {name: limiter.drain() for name, limiter in self._limiters.items()}
        for change, _ in self._pending.values():
            for rule in self.channels:
                if rule.accepts(change.kind):
                    held[rule.name].append(Entry(change))
        self._pending.clear()
        return held

    def _release(self, change: AlertChange, now: float) -> list[Outgoing]:
        self.stats["released"] += 1
        out: list[Outgoing] = []
        for rule in self.channels:
            if rule.accepts(change.kind):
                out.extend(self._limiters[rule.name].offer(rule.name, change, now))
        return out

"""The configured engine order, with a hard deadline per call, a circuit breaker per engine and
the daily character caps of the metered (cloud) engines.

The chain does not decide what to do with a failure; the speech service walks
:meth:`EngineChain.plan` and moves on to the next engine when one raises :class:`TtsError`, then
calls :meth:`EngineChain.trip` so the failed engine is skipped for a while. How long depends on
the failure: a wrong key or a spent quota will not mend in five minutes, a throttled provider
usually says when to come back, and our own daily cap ends at local midnight.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from broadcaster.tts.base import (
    AudioClip,
    DailyCapReached,
    EngineUnavailable,
    TtsEngine,
    TtsError,
    TtsTimeout,
)
from broadcaster.tts.status import EngineStatus, cap_reason_vi, reason_vi, short_name_vi
from broadcaster.tts.usage import UsageCounter, UsageRow, usage_report

_LOGGER = logging.getLogger(__name__)


@dataclass
class _Breaker:
    open_until: float = 0.0
    reason: str = ""
    kind: str = "error"
    day: date | None = None  # a daily cap holds for this local date only


def _safe_available(engine: TtsEngine) -> bool:
    try:
        return bool(engine.available())
    except Exception:  # available() must not raise; treat a broken probe as unavailable
        _LOGGER.exception("available() of engine %s raised", engine.name)
        return False


def _metered(engine: TtsEngine) -> bool:
    return bool(getattr(engine, "metered", False))


class EngineChain:
    """Engines in their configured order. Thread-safe."""

    def __init__(
        self,
        engines: Sequence[TtsEngine],
        *,
        call_timeout_s: float = 45.0,
        cooldown_s: float = 300.0,
        rate_limit_cooldown_s: float = 60.0,
        auth_cooldown_s: float = 3600.0,
        quota_cooldown_s: float = 3600.0,
        usage: UsageCounter | None = None,
        caps: Mapping[str, int] | None = None,
        timezone: str = "Asia/Ho_Chi_Minh",
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        names = [e.name for e in engines]
        if len(set(names)) != len(names):
            raise ValueError(f"engine names must be unique: {names}")
        if not engines:
            raise ValueError("at least one engine is needed")
        self._engines = {e.name: e for e in engines}
        self.order: list[str] = names
        self.call_timeout_s = call_timeout_s
        self.cooldown_s = cooldown_s
        self._cooldowns = {
            "rate_limit": rate_limit_cooldown_s,
            "auth": auth_cooldown_s,
            "quota": quota_cooldown_s,
        }
        self.usage = usage
        self.caps = dict(caps or {})
        self.tz = ZoneInfo(timezone)
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._breakers: dict[str, _Breaker] = {name: _Breaker() for name in names}

    def __contains__(self, name: object) -> bool:
        return name in self._engines

    def engine(self, name: str) -> TtsEngine:
        try:
            return self._engines[name]
        except KeyError:
            raise EngineUnavailable(f"unknown engine {name!r}; configured: {', '.join(self.order)}") from None

    def engines(self) -> list[TtsEngine]:
        return [self._engines[name] for name in self.order]

    def ordered(self, first: str | None = None) -> list[TtsEngine]:
        """All engines, ``first`` moved to the front."""
        names = list(self.order)
        if first is not None:
            self.engine(first)
            names.remove(first)
            names.insert(0, first)
        return [self._engines[n] for n in names]

    # --- time ------------------------------------------------------------------------------

    def now_local(self) -> datetime:
        return self._wall_clock().astimezone(self.tz)

    def today(self) -> date:
        """The local date: daily caps and usage rows use it."""
        return self.now_local().date()

    def _seconds_to_midnight(self) -> float:
        now = self.now_local()
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), self.tz)
        return max(1.0, (midnight - now).total_seconds())

    # --- circuit breaker and caps -----------------------------------------------------------

    def _open(self, name: str) -> _Breaker | None:
        """The engine's breaker while it is open (a cap's ends with its local day)."""
        with self._lock:
            breaker = self._breakers[name]
        if breaker.day is not None:
            return breaker if breaker.day == self.today() else None
        return breaker if breaker.open_until > self._clock() else None

    def cooling(self, name: str) -> str | None:
        """The reason an engine is in cool-down, or None."""
        breaker = self._open(name)
        return breaker.reason if breaker else None

    def _cooling_kind(self, name: str) -> str | None:
        breaker = self._open(name)
        return breaker.kind if breaker else None

    def capped(self, name: str) -> tuple[int, int] | None:
        """``(used, cap)`` when the engine reached its daily cap today, else None."""
        cap = self.caps.get(name)
        if cap is None or self.usage is None:
            return None
        try:
            used = self.usage.used(name, self.today())
        except Exception:  # the counter's database is down: do not block speech on it
            _LOGGER.exception("cannot read the usage of %s", name)
            return None
        return (used, cap) if used >= cap else None

    def plan(self, first: str | None = None) -> list[TtsEngine]:
        """Engines to try, in order: available ones not in cool-down first, then the ones in
        cool-down as a last chance (a cool-down never leaves the officer with nothing). An engine
        past its daily cap is left out: the cap is a spending limit, not a health guess."""
        ready, cooling = [], []
        for engine in self.ordered(first):
            if not _safe_available(engine):
                continue
            if self._cooling_kind(engine.name) == "cap" or self.capped(engine.name):
                continue
            (cooling if self.cooling(engine.name) else ready).append(engine)
        return ready + cooling

    def cooldown_for(self, error: BaseException | None) -> float:
        """How long a failure keeps its engine aside (see the module docstring)."""
        kind = getattr(error, "kind", "error")
        if kind == "cap":
            return self._seconds_to_midnight()
        if kind == "rate_limit":
            retry_after = getattr(error, "retry_after_s", None)
            if retry_after is not None:
                return min(float(retry_after), self._cooldowns["auth"])
        return self._cooldowns.get(kind, self.cooldown_s)

    def trip(self, name: str, reason: str, error: BaseException | None = None) -> None:
        """Remember a failure: skip this engine while others can speak, for a time that depends
        on the failure (``error``'s kind; a plain reason is a transient failure)."""
        seconds = self.cooldown_for(error)
        kind = str(getattr(error, "kind", "error"))
        day = self.today() if kind == "cap" else None
        with self._lock:
            self._breakers[name] = _Breaker(self._clock() + seconds, reason, kind, day)
        _LOGGER.warning("TTS engine %s failed (%s); skipped for %.0f s", name, reason, seconds)

    def reset(self, name: str) -> None:
        with self._lock:
            self._breakers[name] = _Breaker()

    def status(self) -> list[EngineStatus]:
        """Per engine, for a dashboard notice: skipped or not, until when, and why (Vietnamese)."""
        out = []
        for engine in self.engines():
            label = short_name_vi(engine)
            available = _safe_available(engine)
            breaker = self._open(engine.name)
            capped = self.capped(engine.name) if available else None
            if not available:
                kind = "no_key" if _metered(engine) else "not_installed"
                out.append(EngineStatus(engine.name, label, False, True, None, kind, reason_vi(kind, label)))
            elif capped is not None:
                midnight = self.now_local() + timedelta(seconds=self._seconds_to_midnight())
                out.append(
                    EngineStatus(
                        engine.name, label, True, True, midnight, "cap", cap_reason_vi(label, *capped),
                        f"daily cap of {capped[1]} characters reached",
                    )
                )  # fmt: skip
            elif breaker is not None:
                left = self._seconds_to_midnight() if breaker.day else breaker.open_until - self._clock()
                until = self.now_local() + timedelta(seconds=left)
                out.append(
                    EngineStatus(
                        engine.name, label, True, True, until, breaker.kind,
                        reason_vi(breaker.kind, label), breaker.reason,
                    )
                )  # fmt: skip
            else:
                out.append(EngineStatus(engine.name, label, True, False))
        return out

    def usage_report(self) -> list[UsageRow]:
        """Today's and this month's characters per metered engine (settings page)."""
        if self.usage is None:
            return []
        metered = [(e.name, short_name_vi(e)) for e in self.engines() if _metered(e)]
        return usage_report(self.usage, metered, self.caps, self.today())

    # --- calling ------------------------------------------------------------------------------

    def _check_cap(self, engine: TtsEngine, text: str) -> None:
        cap = self.caps.get(engine.name)
        if cap is None or self.usage is None or not _metered(engine):
            return
        try:
            used = self.usage.used(engine.name, self.today())
        except Exception:
            _LOGGER.exception("cannot read the usage of %s", engine.name)
            return
        if used + len(text) > cap:
            raise DailyCapReached(
                f"{engine.name}: daily cap of {cap} characters reached ({used} used, {len(text)} more asked)"
            )

    def _count(self, engine: TtsEngine, text: str) -> None:
        if self.usage is None or not _metered(engine):
            return
        try:
            self.usage.add(engine.name, self.today(), len(text))
        except Exception:  # counting must not lose a render that already happened
            _LOGGER.exception("cannot count %d characters sent to %s", len(text), engine.name)

    def call_many(
        self,
        engine: TtsEngine,
        texts: Sequence[str],
        voice: str | None,
        hints: Mapping[str, str] | None = None,
    ) -> list[AudioClip]:
        """``call`` for each text, in order, up to ``engine.max_parallel`` at a time (an engine
        without the attribute is called one text at a time). The first text goes alone: a dead
        engine is asked once, not once per sentence, and the breaker opens before the rest. The
        first failure, in text order, is raised once every started call has ended."""
        return list(self.call_ordered(engine, texts, voice, hints))

    def call_ordered(
        self,
        engine: TtsEngine,
        texts: Sequence[str],
        voice: str | None,
        hints: Mapping[str, str] | None = None,
    ) -> Iterator[AudioClip]:
        """As :meth:`call_many`, but each clip is yielded, in text order, as soon as it and the
        ones before it are ready (a streamed emergency plays the first sentence while the rest
        are being synthesized). The first failure, in text order, is raised when reached."""
        limit = max(1, int(getattr(engine, "max_parallel", 1) or 1))
        if limit == 1 or len(texts) < 3:
            for text in texts:
                yield self.call(engine, text, voice, hints)
            return
        yield self.call(engine, texts[0], voice, hints)
        rest = texts[1:]
        with ThreadPoolExecutor(min(limit, len(rest)), thread_name_prefix=f"tts-{engine.name}-many") as pool:
            futures = [pool.submit(self.call, engine, text, voice, hints) for text in rest]
            try:
                for future in futures:
                    yield future.result()
            finally:
                for future in futures:
                    future.cancel()  # not started yet: a consumer that stopped does not pay for them

    def call(
        self, engine: TtsEngine, text: str, voice: str | None, hints: Mapping[str, str] | None = None
    ) -> AudioClip:
        """``engine.synthesize`` with a hard deadline. A call that does not return in time is
        abandoned (its daemon thread finishes or dies with the process) and reported as a
        :class:`TtsError`; anything unexpected raised by an engine becomes a TtsError too.
        A metered engine's characters are counted when it answered or was abandoned (the
        provider likely billed them); a call that would pass its daily cap is not made.
        ``hints`` (phonetic hints, ``broadcaster.pronunciation``) are passed only when there are
        any, so engines without the parameter keep working."""
        self._check_cap(engine, text)
        box: dict[str, object] = {}
        done = threading.Event()

        def run() -> None:
            try:
                if hints:
                    box["clip"] = engine.synthesize(text, voice, hints=hints)  # type: ignore[call-arg]
                else:
                    box["clip"] = engine.synthesize(text, voice)
            except BaseException as exc:  # reported to the caller below
                box["error"] = exc
            finally:
                done.set()

        worker = threading.Thread(target=run, name=f"tts-{engine.name}", daemon=True)
        worker.start()
        if not done.wait(self.call_timeout_s):
            self._count(engine, text)
            raise TtsTimeout(f"{engine.name} did not answer within {self.call_timeout_s:g} s")
        error = box.get("error")
        if isinstance(error, TtsError):
            raise error
        if isinstance(error, BaseException):
            raise TtsError(f"{engine.name} crashed: {error.__class__.__name__}: {error}") from error
        clip = box.get("clip")
        if not isinstance(clip, AudioClip):
            raise TtsError(f"{engine.name} returned {type(clip).__name__}, not audio")
        self._count(engine, text)
        return clip

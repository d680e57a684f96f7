"""The configured engine order, with a hard deadline per call and a circuit breaker.

The chain does not decide what to do with a failure; the speech service walks
:meth:`EngineChain.plan` and moves on to the next engine when one raises :class:`TtsError`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from broadcaster.tts.base import AudioClip, EngineUnavailable, TtsEngine, TtsError

_LOGGER = logging.getLogger(__name__)


@dataclass
class _Breaker:
    open_until: float = 0.0
    reason: str = ""


class EngineChain:
    """Engines in their configured order. Thread-safe."""

    def __init__(
        self,
        engines: Sequence[TtsEngine],
        *,
        call_timeout_s: float = 45.0,
        cooldown_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
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
        self._clock = clock
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

    def cooling(self, name: str) -> str | None:
        """The reason an engine is in cool-down, or None."""
        with self._lock:
            breaker = self._breakers[name]
            if breaker.open_until > self._clock():
                return breaker.reason
            return None

    def plan(self, first: str | None = None) -> list[TtsEngine]:
        """Engines to try, in order: available ones not in cool-down first, then the ones in
        cool-down as a last chance (a cool-down never leaves the officer with nothing)."""
        ready, cooling = [], []
        for engine in self.ordered(first):
            if not _safe_available(engine):
                continue
            (cooling if self.cooling(engine.name) else ready).append(engine)
        return ready + cooling

    def trip(self, name: str, reason: str) -> None:
        """Remember a failure: skip this engine for ``cooldown_s`` while others can speak."""
        with self._lock:
            self._breakers[name] = _Breaker(self._clock() + self.cooldown_s, reason)
        _LOGGER.warning("TTS engine %s failed (%s); skipped for %.0f s", name, reason, self.cooldown_s)

    def reset(self, name: str) -> None:
        with self._lock:
            self._breakers[name] = _Breaker()

    def call(self, engine: TtsEngine, text: str, voice: str | None) -> AudioClip:
        """``engine.synthesize`` with a hard deadline. A call that does not return in time is
        abandoned (its daemon thread finishes or dies with the process) and reported as a
        :class:`TtsError`; anything unexpected raised by an engine becomes a TtsError too."""
        box: dict[str, object] = {}
        done = threading.Event()

        def run() -> None:
            try:
                box["clip"] = engine.synthesize(text, voice)
            except BaseException as exc:  # reported to the caller below
                box["error"] = exc
            finally:
                done.set()

        worker = threading.Thread(target=run, name=f"tts-{engine.name}", daemon=True)
        worker.start()
        if not done.wait(self.call_timeout_s):
            raise TtsError(f"{engine.name} did not answer within {self.call_timeout_s:g} s")
        error = box.get("error")
        if isinstance(error, TtsError):
            raise error
        if isinstance(error, BaseException):
            raise TtsError(f"{engine.name} crashed: {error.__class__.__name__}: {error}") from error
        clip = box.get("clip")
        if not isinstance(clip, AudioClip):
            raise TtsError(f"{engine.name} returned {type(clip).__name__}, not audio")
        return clip


def _safe_available(engine: TtsEngine) -> bool:
    try:
        return bool(engine.available())
    except Exception:  # available() must not raise; treat a broken probe as unavailable
        _LOGGER.exception("available() of engine %s raised", engine.name)
        return False

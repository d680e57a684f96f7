"""One thread per active source: ffmpeg (pull + condition) -> framer -> frames published.

A :class:`Pump` runs ffmpeg, reads its PCM with a short ``select`` timeout (never blocking on a
silent source), frames it and hands the frames to ``publish``. Subprocess I/O stays on this thread,
off the MQTT network thread and off the dispatcher. Every wait has a timeout.

Relays (``url``): a probe first (probe.py), then ffmpeg. No audio within ``connect_timeout_s``, or
less than ``min_speed`` of real time over the first seconds, and the relay is refused with the
reason (``on_failed``). Once started: while the source gives nothing, silence frames keep the
clusters' stream open; after ``stall_s`` the source is reconnected with backoff
(``retry_min_s``..``retry_max_s``), and the gap is reported (``on_gap``) when it starts and when
audio is back.

Live speech (``url`` None): PCM is fed by :meth:`feed` (web requests) through a queue and a writer
thread into ffmpeg's stdin. Nothing fed for ``live_idle_s``, or :meth:`end`, and the stream ends:
the rest is drained, a last frame flagged ``last`` is published, ``on_ended`` gets the recording.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import subprocess
import threading
import time
import wave
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from broadcaster.audio.config import AudioConfig
from broadcaster.live import conditioner
from broadcaster.live.config import LiveConfig
from broadcaster.live.framer import Framer
from broadcaster.live.probe import SourceError, probe
from speakers.protocol import StreamFrame

_LOGGER = logging.getLogger(__name__)

# How often the pump wakes without data (silence frames, timers).
_TICK_S = 0.05
# A source counts as "too slow" only after this much wall time of audio coming in.
_SPEED_WINDOW_S = 6.0
# Live speech kept while its airing has not started yet: the playout delay and this much more
# (clusters that are all offline do not make the speaker's words pile up behind them).
_EARLY_EXTRA_S = 1.0
# Draining a live item's last audio from ffmpeg takes at most this.
_DRAIN_TIMEOUT_S = 3.0


@dataclass
class PumpEvents:
    publish: Callable[[StreamFrame], None]
    on_ready: Callable[[], None]
    on_failed: Callable[[str], None]
    on_gap: Callable[[str], None]
    on_ended: Callable[[float, Path | None], None]  # end time of the last frame, the recording
    # The source stalled (True, why) or is back (False, ""): the controller-level alert.
    on_source: Callable[[bool, str], None] | None = None


class Pump:
    """See the module docstring. ``start()``; ``stop()`` from any thread."""

    def __init__(
        self,
        name: str,
        url: str | None,
        config: LiveConfig,
        audio: AudioConfig,
        events: PumpEvents,
        *,
        delay_s: float,
        ffmpeg: str = "ffmpeg",
        record_to: Path | None = None,
        clock: Callable[[], float] = time.time,
        anchored: bool = False,
        paced: bool = False,
    ) -> None:
        """``anchored`` (fed streams): no frame before :meth:`anchor` gives the stream's start (the
        airing's), so the first sample fed sounds at the start on every cluster. ``paced`` (a
        streamed emergency, fed faster than real time by the renderer): each frame published one
        playout delay before it sounds, and no end for lack of input (the renderer ends it)."""
        self.name = name
        self.anchored = anchored or paced
        self.paced = paced
        self._anchor_at: float | None = None
        self._early = bytearray()  # conditioned PCM before the anchor (anchored)
        self._held: deque[StreamFrame] = deque()  # frames not yet due for publishing (paced)
        self.url = url
        self.config = config
        self.audio = audio
        self.events = events
        self.ffmpeg = ffmpeg
        self.record_to = record_to
        self.clock = clock
        self.framer = Framer(config.sample_rate, config.frame_s, delay_s)
        self._stop = threading.Event()
        self._end = threading.Event()
        self._feed: queue.Queue[bytes | None] = queue.Queue(maxsize=200)
        self._last_feed = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"live-{name}", daemon=True)
        self.bytes_published = 0
        self.frames_published = 0
        self.gaps = 0
        self.reconnects = 0
        self.started = False

    # ------------------------------------------------------------------ control

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._end.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def end(self) -> None:
        """Live speech: end now (the last audio is drained and flagged ``last``)."""
        self._end.set()

    def anchor(self, start: float) -> None:
        """Paced: the controller time at which the stream's first sample sounds (the airing's
        start). The first anchor wins."""
        if self._anchor_at is None:
            self._anchor_at = start

    def feed(self, pcm: bytes) -> bool:
        """Live speech: PCM from the browser (16 kHz s16le mono). False when the item has ended."""
        if self._end.is_set() or self._stop.is_set():
            return False
        self._last_feed = time.monotonic()
        try:
            self._feed.put_nowait(pcm)
        except queue.Full:
            _LOGGER.warning("live %s: the conditioner is behind; %s bytes dropped", self.name, len(pcm))
        return True

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # ------------------------------------------------------------------ the thread

    def _publish(self, frames: list[StreamFrame]) -> None:
        for frame in frames:
            payload_len = len(frame.payload)
            try:
                self.events.publish(frame)
            except Exception:
                _LOGGER.warning("live %s: frame %s not published", self.name, frame.seq, exc_info=True)
                continue
            self.frames_published += 1
            self.bytes_published += payload_len + 29

    def _run(self) -> None:
        try:
            if self.url is None:
                self._run_live()
            else:
                self._run_relay(self.url)
        except Exception as exc:  # a bug must end the stream with a reason, not silently
            _LOGGER.exception("live %s: pump failed", self.name)
            if not self.started:
                self.events.on_failed(f"Lỗi bộ tiếp sóng: {exc}")
            else:
                self.events.on_ended(self.framer.next_t or self.clock(), None)

    def _spawn(self, command: list[str], stdin: bool) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            command,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    @staticmethod
    def _stderr_tail(proc: subprocess.Popen[bytes], tail: list[str]) -> threading.Thread:
        def read() -> None:
            assert proc.stderr is not None
            with proc.stderr:
                for line in proc.stderr:
                    tail.append(line.decode("utf-8", "replace").strip())
                    del tail[:-5]

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        return thread

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def _run_relay(self, url: str) -> None:
        config = self.config
        wait = config.retry_min_s
        while not self._stop.is_set():
            first_try = not self.started
            try:
                demuxer = probe(url, config.connect_timeout_s)
            except SourceError as exc:
                if first_try:
                    self.events.on_failed(str(exc))
                    return
                outcome, detail = "unreachable", str(exc)
            else:
                outcome, detail = self._pull(url, first_try, demuxer)
                if outcome == "failed":
                    self.events.on_failed(detail)
                    return
                if outcome == "stopped":
                    return
                if self._stalled_since is None:
                    wait = config.retry_min_s  # it played before stalling: retry soon
            if self._stalled_since is None:
                self._stalled_since = self.clock()
                self.gaps += 1
                self.events.on_gap(f"Nguồn «{self.name}» mất tín hiệu ({detail}); đang kết nối lại")
                self._source(True, detail)
            # Back off, keeping the clusters' stream open with silence meanwhile.
            self.reconnects += 1
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and not self._stop.is_set():
                self._publish(self.framer.fill(self.clock()))
                self._stop.wait(_TICK_S)
            wait = min(wait * 2, config.retry_max_s)

    _stalled_since: float | None = None

    def _resume(self) -> None:
        """Audio is back after a stall: the gap's end goes to the log."""
        since, self._stalled_since = self._stalled_since, None
        if since is not None:
            seconds = self.clock() - since
            self.events.on_gap(f"Nguồn «{self.name}» có lại âm thanh sau {seconds:.0f} giây gián đoạn")
            self._source(False, "")

    def _source(self, stalled: bool, detail: str) -> None:
        if self.events.on_source is not None:
            try:
                self.events.on_source(stalled, detail)
            except Exception:
                _LOGGER.exception("live %s: source listener failed", self.name)

    def _pull(self, url: str, first_try: bool, demuxer: str | None) -> tuple[str, str]:
        """Run ffmpeg on ``url`` until it stalls or ends: ("failed" | "stopped" | "stalled", detail)."""
        config = self.config
        proc = self._spawn(
            conditioner.relay_command(self.ffmpeg, url, self.audio, config.sample_rate, demuxer), False
        )
        tail: list[str] = []
        reader = self._stderr_tail(proc, tail)
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        began = time.monotonic()
        first: float | None = None
        produced = 0.0
        last_data = time.monotonic()
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([fd], [], [], _TICK_S)
                mono, now = time.monotonic(), self.clock()
                if ready:
                    data = os.read(fd, 65536)
                    if not data:
                        reader.join(1.0)
                        detail = tail[-1] if tail else "nguồn kết thúc"
                        if first is None and first_try:
                            return "failed", _explain(tail)
                        return "stalled", detail
                    if first is None:
                        first = mono
                        if not self.started:
                            self.started = True
                            self.events.on_ready()
                        else:
                            self._resume()
                    produced += len(data) / 2 / config.sample_rate
                    last_data = mono
                    self._publish(self.framer.push(data, now))
                    ahead = self.framer.ahead(now)
                    if ahead > 0.5:  # a source faster than real time (a burst): pace it
                        self._stop.wait(ahead - 0.25)
                    if first_try and mono - first > _SPEED_WINDOW_S:
                        speed = produced / (mono - first)
                        if speed < config.min_speed:
                            return "failed", (
                                f"Nguồn phát quá chậm: chỉ nhận được {speed * 100:.0f}% âm thanh so với thời "
                                "gian thực, đường truyền không đủ để tiếp sóng."
                            )
                        first_try = False
                    continue
                if first is None:
                    if mono - began > config.connect_timeout_s:
                        if first_try:
                            return "failed", (
                                f"Nguồn phát không gửi âm thanh trong {config.connect_timeout_s:.0f} giây."
                            )
                        return "stalled", "không có âm thanh"
                    continue
                self._publish(self.framer.fill(now))
                if mono - last_data > config.stall_s:
                    return "stalled", f"không có âm thanh {config.stall_s:.0f} giây"
            return "stopped", ""
        finally:
            self._kill(proc)
            for gap in self.framer.take_gaps():
                _LOGGER.info("live %s: %.2f s gap at %.3f", self.name, gap.seconds, gap.at)

    # ------------------------------------------------------------------ live speech

    def _run_live(self) -> None:
        config = self.config
        proc = self._spawn(conditioner.live_command(self.ffmpeg, self.audio, config.sample_rate), True)
        tail: list[str] = []
        self._stderr_tail(proc, tail)
        writer = threading.Thread(target=self._write_feed, args=(proc,), daemon=True)
        writer.start()
        record = self._open_recording()
        self.started = True
        self.events.on_ready()
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        ending_since: float | None = None
        # A renderer may wait on a slow engine: only the browser's silence ends a stream by itself.
        idle_s = config.live_max_s if self.paced else config.live_idle_s
        try:
            while not self._stop.is_set():
                if ending_since is None and (
                    self._end.is_set() or time.monotonic() - self._last_feed > idle_s
                ):
                    self._end.set()
                    ending_since = time.monotonic()
                    self._feed.put(None)  # the writer closes stdin: ffmpeg flushes and ends
                ready, _, _ = select.select([fd], [], [], _TICK_S)
                if ready:
                    data = os.read(fd, 65536)
                    if not data:
                        break
                    if record is not None:
                        record.writeframes(data)
                    self._take(data)
                elif ending_since is None and self.framer.next_t is not None:
                    self._out(self.framer.fill(self.clock()))
                elif self.anchored and self._early and self._anchor_at is not None:
                    self._take(b"")
                self._flush_held()
                if ending_since is not None and time.monotonic() - ending_since > _DRAIN_TIMEOUT_S:
                    break
        finally:
            self._kill(proc)
            if record is not None:
                record.close()
        if self._stop.is_set():  # stopped (the controller is stopping): nothing more goes out
            self.events.on_ended(
                self.framer.next_t or self.clock(), self.record_to if record is not None else None
            )
            return
        if self.anchored and self._early:
            if self._anchor_at is None:  # ended before any airing started: from now
                self._anchor_at = self.clock() + self.framer.delay_s
            self._take(b"")
        last = self.framer.finish(self.clock())
        self._out([last])
        while self._held and not self._stop.is_set():  # paced: the rest goes out on time
            self._flush_held()
            self._stop.wait(_TICK_S)
        self.events.on_ended(last.end, self.record_to if record is not None else None)

    def _take(self, data: bytes) -> None:
        """Conditioned PCM to frames (anchored: kept until the stream's start is known)."""
        if self.anchored and self.framer.next_t is None:
            self._early.extend(data)
            if self._anchor_at is None:
                if not self.paced:  # live: what waits for the start is at most a second or so
                    keep = 2 * int(self.config.sample_rate * (self.framer.delay_s + _EARLY_EXTRA_S))
                    del self._early[: max(0, len(self._early) - keep)]
                return
            self.framer.next_t = self._anchor_at
            data, self._early = bytes(self._early), bytearray()
        self._out(self.framer.push(data, self.clock()))

    def _out(self, frames: list[StreamFrame]) -> None:
        if self.paced:
            self._held.extend(frames)
            self._flush_held()
        else:
            self._publish(frames)

    def _flush_held(self) -> None:
        """Paced: publish the frames due within one playout delay (as a live source's would be)."""
        now = self.clock()
        due = []
        while self._held and self._held[0].t - self.framer.delay_s <= now:
            due.append(self._held.popleft())
        if due:
            self._publish(due)

    def _write_feed(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None
        try:
            while True:
                try:
                    item = self._feed.get(timeout=1.0)
                except queue.Empty:
                    if self._stop.is_set():
                        break
                    continue
                if item is None:
                    break
                proc.stdin.write(item)
                proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass
        finally:
            with contextlib.suppress(OSError):
                proc.stdin.close()

    def _open_recording(self) -> wave.Wave_write | None:
        if self.record_to is None:
            return None
        try:
            record = wave.open(str(self.record_to), "wb")
        except OSError:
            _LOGGER.warning("live %s: cannot record to %s", self.name, self.record_to, exc_info=True)
            return None
        record.setnchannels(1)
        record.setsampwidth(2)
        record.setframerate(self.config.sample_rate)
        return record


def _explain(tail: list[str]) -> str:
    """ffmpeg's last words, as a reason for the officer."""
    text = " ".join(tail).lower()
    if "invalid data" in text or "could not find codec" in text or "does not contain any stream" in text:
        return "Nguồn phát không gửi âm thanh đọc được (không phải luồng MP3, AAC hay HLS)."
    if "404" in text or "not found" in text:
        return "Nguồn phát trả lời không có luồng này (lỗi 404)."
    if "refused" in text or "timed out" in text or "resolve" in text:
        return "Không kết nối được tới nguồn phát."
    detail = tail[-1][:200] if tail else "không rõ lý do"
    return f"Không đọc được nguồn phát ({detail})."


__all__ = ["Pump", "PumpEvents"]

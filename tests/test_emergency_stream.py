"""An emergency starts playing as soon as its first part is ready while the rest streams after it
(issue 12, part 3): the real controller on a real mosquitto with nine simulated clusters, the real
speech service over an engine whose last sentence is held until the test lets it go. The clusters
must be playing the emergency while that sentence is still being synthesized; afterwards the whole
recording is stored (the log plays it) and the same emergency again is a cache hit, aired as a file."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broadcaster.domain import Announcement, Source, Tier
from broadcaster.tts.base import AudioClip
from tests.fakes.engines import FakeEngine
from tests.fixtures_controller import wait_until

pytestmark = pytest.mark.integration

SENTENCES = [
    "Khẩn cấp: nước lũ đang lên nhanh.",
    "Bà con vùng trũng di chuyển lên chỗ cao ngay.",
    "Mang theo giấy tờ và thuốc men.",
    "Không ai được ở lại nhà.",
]
TEXT = " ".join(SENTENCES)


class HeldTailEngine(FakeEngine):
    """Speaks at once, except the sentence containing ``held_word``, which waits for ``release``.
    Up to four requests at a time, as a cloud engine (``max_parallel``)."""

    max_parallel = 4

    def __init__(self, held_word: str) -> None:
        super().__init__("giong-thu", voices=("giong-a",), per_char_s=0.015)
        self.held_word = held_word
        self.release = threading.Event()
        self.finished: list[str] = []

    def synthesize(self, text: str, voice: str | None = None) -> AudioClip:
        if self.held_word.lower() in text.lower():
            assert self.release.wait(60), "the test never let the last sentence go"
        clip = super().synthesize(text, voice)
        with self._lock:
            self.finished.append(text)
        return clip


@pytest.fixture(scope="module")
def engine() -> HeldTailEngine:
    return HeldTailEngine("không ai")


@pytest.fixture(scope="module")
def controller(engine: HeldTailEngine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from broadcaster.audio.store import AudioStore
    from broadcaster.broker import ManagedBroker, find_mosquitto
    from broadcaster.speech import SpeechService
    from broadcaster.textnorm import Normalizer
    from broadcaster.textnorm.config import TextnormConfig
    from broadcaster.tts import EngineChain
    from tests.fixtures_broker import BrokerFixture
    from tests.fixtures_controller import E2EController

    find_mosquitto()
    workdir = Path(tempfile.mkdtemp(prefix="loa-mosquitto-"))
    workdir.chmod(0o755)
    broker = ManagedBroker(workdir / "broker")
    broker.start()
    speech = SpeechService(
        EngineChain([engine]),
        AudioStore(tmp_path_factory.mktemp("audio"), 500 * 1024 * 1024),
        normalizer=Normalizer.from_config(TextnormConfig()),
    )
    harness = None
    try:
        harness = E2EController(
            BrokerFixture(broker), tmp_path_factory.mktemp("em") / "instance", speech=speech
        )
        yield harness
    finally:
        engine.release.set()
        if harness is not None:
            harness.close()
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _emergency(controller: Any) -> int:
    return int(
        controller.broadcasts.submit(
            Announcement(text=TEXT, tier=Tier.EMERGENCY, targets=("thon-2",), source=Source.API)
        )
    )


def test_the_clusters_play_the_emergency_before_its_last_sentence_is_synthesized(
    controller: Any, engine: HeldTailEngine
) -> None:
    bid = _emergency(controller)

    def heard_on(speaker: str) -> list[dict[str, Any]]:
        return [
            e
            for e in controller.timeline(speaker)
            if e.get("kind") == "stream" and e["broadcast_id"] == str(bid) and e["seq"] is not None
        ]

    # Playing on every cluster of the zone, with sound (not only silence frames) ...
    wait_until(
        lambda: all(heard_on(s) for s in ("loa-04", "loa-05", "loa-06")), timeout=20, what="the stream plays"
    )
    # ... while the last sentence is still being synthesized.
    assert not any("không ai" in t.lower() for t in engine.finished)
    assert controller.broadcasts.get(bid)["state"] in ("sending", "playing")
    engine.release.set()
    result = controller.wait_state(bid, "done", "partial", "failed", timeout=60)
    assert result["state"] == "done", (result["reason"], result["deliveries"])
    assert {d["state"] for d in result["deliveries"]} == {"done"}
    # The whole recording is stored and is the broadcast's audio (the log plays it).
    key = wait_until(lambda: controller.broadcasts.get(bid)["audio_key"], timeout=30, what="the recording")
    assert controller.services.speech.store.has(key)
    result = controller.broadcasts.get(bid)
    assert result["engine"] == "giong-thu" and result["duration_s"] > 5
    # In step on the three clusters, every frame.
    by_seq: dict[int, list[float]] = {}
    for speaker in ("loa-04", "loa-05", "loa-06"):
        for entry in heard_on(speaker):
            if entry["offset"] == 0:
                by_seq.setdefault(entry["seq"], []).append(entry["out"])
    common = [v for v in by_seq.values() if len(v) == 3]
    assert common and max(max(v) - min(v) for v in common) < 0.03
    messages = controller.log_messages(bid)
    assert any("phát ngay khi có câu đầu" in m for m in messages)


def test_the_same_emergency_again_is_a_cache_hit_aired_as_a_file(
    controller: Any, engine: HeldTailEngine
) -> None:
    engine.release.set()
    calls = engine.call_count
    bid = _emergency(controller)
    result = controller.wait_state(bid, "done", "partial", "failed", timeout=60)
    assert result["state"] == "done"
    assert engine.call_count == calls  # no synthesis at all
    plays = [e for e in controller.timeline("loa-04") if e["broadcast_id"] == str(bid)]
    assert plays and all(e.get("kind") != "stream" for e in plays)  # the stored file, not a stream


def test_a_cluster_offline_during_the_stream_gets_the_recording_when_it_is_back(
    controller: Any, engine: HeldTailEngine
) -> None:
    engine.release.set()
    controller.sim.kill("loa-06")
    wait_until(lambda: not controller.fleet.is_online("loa-06"), timeout=15, what="loa-06 offline")
    bid = int(
        controller.broadcasts.submit(
            Announcement(text="Khẩn cấp: sạt lở đất ở xóm Núi.", tier=Tier.EMERGENCY, targets=("thon-2",))
        )
    )
    wait_until(
        lambda: sum(d["state"] == "done" for d in controller.broadcasts.get(bid)["deliveries"]) == 2,
        timeout=30,
        what="the two online clusters done",
    )
    streamed = [e for e in controller.timeline("loa-04") if e["broadcast_id"] == str(bid)]
    assert streamed and all(e.get("kind") == "stream" for e in streamed)
    controller.sim.revive("loa-06")
    result = controller.wait_state(bid, "done", "partial", timeout=30)
    assert {d["speaker"]: d["state"] for d in result["deliveries"]} == dict.fromkeys(
        ("loa-04", "loa-05", "loa-06"), "done"
    ), "\n".join(controller.log_messages(bid))
    late = [e for e in controller.timeline("loa-06") if e["broadcast_id"] == str(bid)]
    assert [e.get("kind") for e in late] == [None] and late[0]["outcome"] == "done"  # the file, whole

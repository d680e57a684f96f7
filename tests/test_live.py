"""Live speech through the controller's ingest (the chunks the browser sends), on the real
controller and broker with nine simulated clusters; the recording is kept in the log."""

from __future__ import annotations

import array
import math
import time

import pytest

from broadcaster.domain import Tier
from tests.fixtures_controller import wait_until

RATE = 16_000


def _tone(seconds: float, frequency: float = 440.0) -> bytes:
    samples = array.array(
        "h", (int(9000 * math.sin(2 * math.pi * frequency * n / RATE)) for n in range(int(seconds * RATE)))
    )
    return samples.tobytes()


@pytest.fixture(scope="module")
def controller(live_controller):  # type: ignore[no-untyped-def]
    return live_controller


def test_live_speech_plays_in_step_on_the_clusters_and_is_kept_as_a_recording(controller) -> None:  # type: ignore[no-untyped-def]
    manager = controller.broadcasts
    bid = manager.start_live(tier=Tier.PRIORITY, targets=("thon-1",), author="chu-tich")
    chunk = _tone(0.25)
    began = time.monotonic()
    for n in range(16):  # 4 s of speech, sent as a browser sends it: a quarter second at a time
        assert manager.feed_live(bid, chunk)
        time.sleep(max(0.0, began + (n + 1) * 0.25 - time.monotonic()))
    assert manager.end_live(bid)
    result = controller.wait_state(bid, "done", "partial", "failed", "missed", timeout=30)
    assert result["state"] == "done", (result["reason"], result["deliveries"])
    assert result["kind"] == "live" and result["source_name"] == "Phát trực tiếp"
    frames = [e for e in controller.timeline() if e.get("kind") == "stream" and e["broadcast_id"] == str(bid)]
    assert {e["speaker_id"] for e in frames} == {"loa-01", "loa-02", "loa-03"}
    by_seq: dict[int, list[float]] = {}
    for e in frames:
        if e["seq"] is not None and e["offset"] == 0:
            by_seq.setdefault(e["seq"], []).append(e["out"])
    common = [v for v in by_seq.values() if len(v) == 3]
    assert common and max(max(v) - min(v) for v in common) < 0.03
    wait_until(lambda: (manager.get(bid) or {}).get("audio_key"), timeout=20, what="the recording in the log")
    assert manager.feed_live(bid, chunk) is False  # ended: the browser is told so


def test_live_speech_ends_by_itself_when_the_browser_stops_sending(controller) -> None:  # type: ignore[no-untyped-def]
    """The browser went away (closed, network gone) without «Kết thúc»: after ``live.live_idle_s`` of
    nothing the item ends by itself, with what was said played and kept."""
    manager = controller.broadcasts
    bid = manager.start_live(tier=Tier.NORMAL, targets=("loa-05",), author="chu-tich")
    chunk = _tone(0.25, 550.0)
    began = time.monotonic()
    for n in range(8):
        assert manager.feed_live(bid, chunk)
        time.sleep(max(0.0, began + (n + 1) * 0.25 - time.monotonic()))
    silent_since = time.monotonic()
    result = controller.wait_state(bid, "done", "partial", "failed", "missed", timeout=30)
    assert result["state"] == "done", (result["reason"], result["deliveries"])
    idle = controller.services.settings.live.live_idle_s
    assert time.monotonic() - silent_since >= idle  # it waited for the browser that long first
    assert manager.feed_live(bid, chunk) is False
    assert any("kết thúc" in m for m in controller.log_messages(bid))

"""Scheduling end to end: the real controller (build_services), a real mosquitto, nine simulated
clusters, espeak-ng. A schedule fires; it survives a restart and is never aired twice; a bulletin
missed while the controller was down airs within the grace and is logged missed beyond it."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from broadcaster.models import Broadcast, LogEntry
from tests.fixtures_controller import E2E_NODES, E2EController, wait_until

pytestmark = pytest.mark.integration

TEXT = "Bản tin thử của đài xã."


def _once(at: datetime, title: str = "Bản tin thử") -> dict:
    return {"title": title, "text": TEXT, "kind": "once", "at": at.isoformat(), "targets": ["all"]}


def _broadcasts(ctl: E2EController, schedule_id: int) -> list[Broadcast]:
    with ctl.services.sessions() as session:
        return list(
            session.scalars(
                select(Broadcast).where(Broadcast.schedule_id == schedule_id).order_by(Broadcast.id)
            )
        )


def _plays(ctl: E2EController, broadcast_id: int) -> list[dict]:
    return [e for e in ctl.timeline() if e["broadcast_id"] == str(broadcast_id)]


def _wait_clock_past(moment: datetime) -> None:
    """Let wall-clock time pass ``moment`` (the controller is down meanwhile)."""
    while datetime.now(UTC) <= moment:
        time.sleep(0.05)


def _down(ctl: E2EController, before: datetime | None = None) -> None:
    """Stop the controller; ``before``: a fire time it must not have reached yet (a loaded machine
    that rendered ahead too slowly would otherwise let the job fire while the controller was up)."""
    if before is not None:
        assert datetime.now(UTC) < before, "render ahead took longer than the test's margin"
    ctl.services.close()


def _up(ctl: E2EController) -> None:
    ctl.services = ctl._build()
    ctl.services.start()


def _rendered(ctl: E2EController, schedule_id: int) -> str:
    future = ctl.services.scheduler.pending_render(schedule_id)
    assert future is not None
    key = future.result(timeout=60)
    assert key, "render ahead failed"
    return key


def test_a_schedule_fires_on_all_clusters_with_audio_rendered_ahead(controller: E2EController) -> None:
    at = (datetime.now(UTC) + timedelta(seconds=4)).replace(microsecond=0)
    sid = controller.services.scheduler.create_schedule(_once(at), author="can-bo")
    key = _rendered(controller, sid)
    assert controller.services.speech.store.is_pinned(key)

    bid = wait_until(lambda: (rows := _broadcasts(controller, sid)) and rows[0].id, timeout=20, what="airing")
    done = controller.wait_state(bid, "done", timeout=60)
    assert {d["speaker"]: d["state"] for d in done["deliveries"]} == dict.fromkeys(E2E_NODES, "done")
    (row,) = _broadcasts(controller, sid)
    assert row.fire_time == at and row.audio_key == key  # the pre-rendered audio aired
    assert sorted(e["speaker_id"] for e in _plays(controller, bid)) == sorted(E2E_NODES)


def test_a_schedule_survives_restarts_and_airs_once(controller: E2EController) -> None:
    scheduler = controller.services.scheduler
    at = (datetime.now(UTC) + timedelta(seconds=6)).replace(microsecond=0)
    sid = scheduler.create_schedule(_once(at, "Trước khi khởi động lại"))
    _rendered(controller, sid)
    controller.restart()  # before the fire time: the job is in the database, not in memory
    bid = wait_until(lambda: (rows := _broadcasts(controller, sid)) and rows[0].id, timeout=30, what="airing")
    controller.wait_state(bid, "done", timeout=60)
    controller.restart()  # after it aired: nothing airs again
    assert controller.services.scheduler.get_schedule(sid)["next_run"] is None
    assert [b.fire_time for b in _broadcasts(controller, sid)] == [at]
    for node in E2E_NODES:
        assert len([e for e in _plays(controller, bid) if e["speaker_id"] == node]) == 1

    # Missed while the controller was down, within the grace (900 s): plays once on restart.
    at2 = (datetime.now(UTC) + timedelta(seconds=5)).replace(microsecond=0)
    sid2 = controller.services.scheduler.create_schedule(_once(at2, "Lỡ khi tắt máy"))
    _rendered(controller, sid2)
    _down(controller, before=at2)
    _wait_clock_past(at2 + timedelta(seconds=1))
    _up(controller)
    bid2 = wait_until(
        lambda: (rows := _broadcasts(controller, sid2)) and rows[0].id, timeout=30, what="late airing"
    )
    b2 = controller.wait_state(bid2, "done", timeout=60)
    assert all(d["state"] == "done" for d in b2["deliveries"])
    assert [b.fire_time for b in _broadcasts(controller, sid2)] == [at2]
    assert sorted(e["speaker_id"] for e in _plays(controller, bid2)) == sorted(E2E_NODES)


@pytest.fixture
def short_grace_controller(mosquitto, tmp_path: Path):  # type: ignore[no-untyped-def]
    instance = tmp_path / "instance"
    harness = E2EController(
        mosquitto, instance, scheduling={"schedules_dir": instance / "schedules", "misfire_grace_s": 2}
    )
    yield harness
    harness.close()


def test_missed_beyond_grace_is_logged_and_never_airs(short_grace_controller: E2EController) -> None:
    ctl = short_grace_controller
    at = (datetime.now(UTC) + timedelta(seconds=5)).replace(microsecond=0)
    sid = ctl.services.scheduler.create_schedule(_once(at, "Lỡ quá giờ"))
    _rendered(ctl, sid)
    _down(ctl, before=at)
    _wait_clock_past(at + timedelta(seconds=5))  # beyond the 2 s grace
    _up(ctl)
    missed = wait_until(lambda: (rows := _broadcasts(ctl, sid)) and rows[0], timeout=20, what="missed record")
    assert missed.state == "missed" and missed.fire_time == at
    view = ctl.broadcasts.get(missed.id)
    assert {d["state"] for d in view["deliveries"]} == {"missed"} and len(view["deliveries"]) == 9
    with ctl.services.sessions() as session:
        kinds = session.scalars(select(LogEntry.kind).where(LogEntry.broadcast_id == missed.id)).all()
    assert "missed" in kinds
    ctl.restart()
    assert len(_broadcasts(ctl, sid)) == 1
    assert _plays(ctl, missed.id) == []

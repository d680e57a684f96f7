"""Relay schedules ("VOV1 news every day 6:00-6:30"): a schedule with a channel and a duration
instead of a text, checked by the one validator, fired as a relay item, never rendered and never in
a node's offline lookahead; in the API and the week view. Real SQLite, APScheduler and broadcast
lifecycle (tests/test_scheduling.Env), the fake speech service."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from broadcaster.models import Broadcast
from broadcaster.scheduling import ScheduleError
from tests.test_scheduling import Env, done, once, wait_until

# Nothing listens on port 9: a relay of it fails at once (these tests look at the records).
URL = "http://127.0.0.1:9/vov1.mp3"


@pytest.fixture
def env(tmp_path: Path):
    e = Env(tmp_path)
    yield e
    e.close()


def relay(channel: int | str, **extra) -> dict:  # type: ignore[type-arg]
    return {
        "title": "Thời sự VOV1",
        "channel": channel,
        "duration_s": 1800,
        "kind": "daily",
        "time": "06:00",
        **extra,
    }


def test_a_relay_schedule_is_stored_with_its_channel_and_duration(env: Env) -> None:
    service = env.new()
    channel = env.manager.channels.create("VOV1", URL)
    sid = service.create_schedule(relay(channel, title=""), author="can-bo")
    got = service.get_schedule(sid)
    assert (got["channel"], got["channel_name"], got["duration_s"]) == (channel, "VOV1", 1800)
    assert got["text"] == "" and got["name"] == "Tiếp sóng VOV1"
    assert got["next_run"] is not None
    # A channel named in a file (schedules/*.yaml) is found by its name.
    by_name = service.create_schedule(relay("VOV1", time="11:30"))
    assert service.get_schedule(by_name)["channel"] == channel


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"channel": 999, "duration_s": 600}, "channel"),
        ({"channel": "Đài không có", "duration_s": 600}, "channel"),
        ({"channel": "CHANNEL", "duration_s": 3}, "duration_s"),
        ({"channel": "CHANNEL", "duration_s": 600, "text": "Kính thưa bà con"}, "text"),
        ({"channel": "CHANNEL"}, "duration_s"),
        ({"text": "Kính thưa bà con", "duration_s": 600}, "duration_s"),
        ({"channel": "CHANNEL", "duration_s": 600, "targets": ["nowhere"]}, "targets"),
    ],
)
def test_bad_relay_schedules_are_refused_naming_the_field(env: Env, data: dict, field: str) -> None:  # type: ignore[type-arg]
    service = env.new()
    channel = env.manager.channels.create("VOV1", URL)
    data = {k: (channel if v == "CHANNEL" else v) for k, v in data.items()}
    with pytest.raises(ScheduleError) as err:
        service.create_schedule({"kind": "daily", "time": "06:00", **data})
    assert err.value.field == field, err.value.message


def test_a_disabled_channel_is_refused_and_a_used_one_cannot_be_deleted(env: Env) -> None:
    service = env.new()
    channel = env.manager.channels.create("VOV1", URL)
    env.manager.channels.update(channel, {"enabled": False})
    with pytest.raises(ScheduleError, match="đang tắt"):
        service.create_schedule(relay(channel))
    env.manager.channels.update(channel, {"enabled": True})
    service.create_schedule(relay(channel))
    from broadcaster.live.channels import ChannelError

    with pytest.raises(ChannelError, match="đang dùng trong lịch phát"):
        env.manager.channels.delete(channel)


def test_a_relay_schedule_fires_a_relay_that_ends_on_time_and_is_never_rendered(env: Env) -> None:
    service = env.new()
    service.start()
    channel = env.manager.channels.create("Đài huyện", URL)
    at = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
    sid = service.create_schedule(
        {
            "title": "Tiếp sóng đài huyện",
            "channel": channel,
            "duration_s": 900,
            "kind": "once",
            "at": at.isoformat(),
        }
    )
    future = service.pending_render(sid)
    assert future is None or future.result(timeout=10) is None  # nothing to render
    assert wait_until(lambda: len(env.broadcasts(sid)) == 1)
    (airing,) = env.broadcasts(sid)
    assert (airing.kind, airing.channel_id, airing.source_name) == ("relay", channel, "Đài huyện")
    assert airing.fire_time == at
    assert airing.end_at == at + timedelta(seconds=900)  # from the fire time, not from "now"
    with env.sessions() as session:
        ann = session.get(Broadcast, airing.id).announcement  # type: ignore[union-attr]
        assert (ann.source, ann.title, ann.text) == ("schedule", "Tiếp sóng đài huyện", "")
    assert service.get_schedule(sid)["audio_key"] is None
    assert service.fire_schedule(sid) == airing.id  # one airing per fire time


def test_relay_schedules_are_never_in_a_nodes_offline_lookahead(env: Env) -> None:
    from broadcaster.scheduling.lookahead import LookaheadPublisher
    from broadcaster.transport.memory import MemoryBroker, MemoryTransport

    service = env.new()
    service.start()
    channel = env.manager.channels.create("VOV1", URL)
    soon = datetime.now(UTC) + timedelta(hours=1)
    bulletin = service.create_schedule(once(soon))
    done(service.pending_render(bulletin))
    relay_id = service.create_schedule(relay(channel))
    publisher = LookaheadPublisher(
        env.sessions, env.speech.store, MemoryTransport(MemoryBroker()), UTC, grace_s=60
    )
    slots = publisher.compute()["loa-01"]
    assert {s.slot.split("@")[0] for s in slots} == {f"s{bulletin}"}
    assert f"s{relay_id}" not in {s.slot.split("@")[0] for s in slots}


def test_a_bulletin_schedule_turned_into_a_relay_lets_its_audio_go(env: Env) -> None:
    service = env.new()
    service.start()
    sid = service.create_schedule(once(datetime.now(UTC) + timedelta(hours=2)))
    key = done(service.pending_render(sid))
    assert key in env.pinned()
    channel = env.manager.channels.create("VOV1", URL)
    changed = service.update_schedule(sid, {"channel": channel, "duration_s": 600})
    assert changed["channel"] == channel and changed["text"] == ""
    assert wait_until(lambda: service.get_schedule(sid)["audio_key"] is None)
    assert key not in env.pinned()
    back = service.update_schedule(sid, {"channel": None, "text": "Kính thưa bà con."})
    assert back["channel"] is None and back["duration_s"] is None


def test_a_missed_relay_airing_names_its_channel(tmp_path: Path) -> None:
    env = Env(tmp_path, grace_s=2)
    try:
        service = env.new()  # down when the relay was due 30 s ago
        channel = env.manager.channels.create("VOV1", URL)
        at = (datetime.now(UTC) - timedelta(seconds=30)).replace(microsecond=0)
        sid = service.create_schedule(
            {"channel": channel, "duration_s": 600, "kind": "once", "at": at.isoformat()}
        )
        service.start()
        assert wait_until(lambda: len(env.broadcasts(sid)) == 1)
        (missed,) = env.broadcasts(sid)
        assert (missed.state, missed.kind, missed.source_name) == ("missed", "relay", "VOV1")
    finally:
        env.close()


def test_the_week_view_shows_relays_with_their_channel(env: Env) -> None:
    service = env.new()
    channel = env.manager.channels.create("VOV1", URL)
    sid = service.create_schedule(relay(channel))
    start = datetime.now(UTC)
    airings = [a for a in service.upcoming(start, start + timedelta(days=2)) if a["schedule_id"] == sid]
    assert len(airings) == 2 and {(a["relay"], a["duration_s"]) for a in airings} == {("VOV1", 1800)}


def test_the_schedules_api_takes_and_returns_relays(env: Env) -> None:
    from tests.test_api import Api

    api = Api(env.settings.instance.parent / "api")
    try:
        channel = api.post("/api/channels", {"name": "VOV1", "url": URL}).get_json()["id"]
        created = api.post(
            "/api/schedules",
            {"title": "Thời sự", "channel": channel, "duration_s": 1800, "kind": "daily", "time": "06:00"},
        )
        assert created.status_code == 201, created.get_json()
        body = created.get_json()
        assert (body["channel"], body["channel_name"], body["duration_s"], body["text"]) == (
            channel,
            "VOV1",
            1800,
            "",
        )
        bad = api.post("/api/schedules", {"channel": 999, "duration_s": 60, "kind": "daily", "time": "06:00"})
        assert bad.status_code == 422 and bad.get_json()["error"]["field"] == "channel"
    finally:
        api.manager.stop()
        api.engine.dispose()

"""schedules/*.yaml: validation, idempotent reload keyed by file, bad files reported by name."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from broadcaster.scheduling import ScheduleError
from broadcaster.scheduling.yamlfiles import load_dir, load_file
from tests.test_scheduling import Env

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
REPO_SCHEDULES = Path(__file__).resolve().parent.parent / "schedules"

MORNING = """\
name: Bản tin sáng
kind: weekdays
time: 06:00          # unquoted: YAML 1.1 reads it as 360; the loader reads it back as 06:00
text: Kính thưa bà con, đây là bản tin sáng.
"""
SUNDAY = """\
name: Nhắc vệ sinh
kind: weekly
days: [cn]
time: "07:00"
repeat: 2
text: Sáng Chủ nhật tổng vệ sinh môi trường.
"""


@pytest.fixture
def env(tmp_path: Path):
    e = Env(tmp_path)
    yield e
    e.close()


def folder(env: Env) -> Path:
    path = env.settings.scheduling.schedules_dir
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_repository_examples_are_valid() -> None:
    loaded = load_dir(REPO_SCHEDULES, HCM)
    assert loaded.errors == {}
    assert len(loaded.specs) >= 2
    morning = loaded.specs["ban-tin-sang.yaml"]
    assert (morning.kind, morning.time, morning.name) == ("weekdays", "06:00", "Bản tin sáng")
    assert loaded.specs["ve-sinh-moi-truong.yaml"].days == ["sun"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("name: x\nkind: daily\ntime: '06:00'\ntext: a\ncolour: red\n", "colour: unknown field"),
        ("name: x\nkind: daily\ntext: a\n", "time: kind 'daily' needs 'time'"),
        ("name: x\nkind: weekly\ntime: '06:00'\ndays: [someday]\ntext: a\n", "days:"),
        ("name: [unclosed\n", "invalid YAML (line"),
        ("- just\n- a list\n", "one mapping of fields"),
    ],
)
def test_a_bad_file_names_the_file_and_field(tmp_path: Path, body: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ScheduleError) as err:
        load_file(path, HCM)
    assert err.value.message.startswith("bad.yaml: ")
    assert expected in err.value.message


def test_a_bulletin_over_the_limits_is_reported_by_file_and_field(env: Env) -> None:
    """The bulletin fields of a file go through the one announcement validator (limits from the
    settings); the file is named, the other files still load."""
    d = folder(env)
    (d / "bad.yaml").write_text(
        "name: x\nkind: daily\ntime: '06:00'\ntext: a\nrepeat: 99\n", encoding="utf-8"
    )
    (d / "sang.yaml").write_text(MORNING, encoding="utf-8")
    service = env.new()
    service.start()
    report = service.last_reload
    assert report["created"] == ["sang.yaml"]
    assert report["errors"]["bad.yaml"].startswith("bad.yaml: Số lần phát từ 1 đến")


def test_reload_is_idempotent_and_keyed_by_file(env: Env) -> None:
    d = folder(env)
    (d / "sang.yaml").write_text(MORNING, encoding="utf-8")
    (d / "chu-nhat.yml").write_text(SUNDAY, encoding="utf-8")
    (d / "hong.yaml").write_text("name: x\nkind: daily\ntext: thiếu giờ\n", encoding="utf-8")
    (d / "notes.txt").write_text("not a schedule", encoding="utf-8")
    service = env.new()
    service.start()  # loads the folder

    report = service.last_reload
    assert sorted(report["created"]) == ["chu-nhat.yml", "sang.yaml"]
    assert list(report["errors"]) == ["hong.yaml"] and "time" in report["errors"]["hong.yaml"]
    by_file = {s["source_file"]: s for s in service.list_schedules()}
    assert set(by_file) == {"sang.yaml", "chu-nhat.yml"}
    assert by_file["sang.yaml"]["time"] == "06:00" and by_file["sang.yaml"]["approval"] == "approved"
    ids = {name: s["id"] for name, s in by_file.items()}
    assert {f"schedule-{i}" for i in ids.values()} <= env.job_ids()

    again = service.reload_yaml()
    assert sorted(again["unchanged"]) == ["chu-nhat.yml", "sang.yaml"] and again["created"] == []
    assert len(service.list_schedules()) == 2

    (d / "sang.yaml").write_text(MORNING.replace("06:00", "05:45"), encoding="utf-8")
    (d / "chu-nhat.yml").unlink()
    report = service.reload_yaml()
    assert report["updated"] == ["sang.yaml"] and report["removed"] == ["chu-nhat.yml"]
    (only,) = service.list_schedules()
    assert only["id"] == ids["sang.yaml"] and only["time"] == "05:45"
    assert f"schedule-{ids['chu-nhat.yml']}" not in env.job_ids()


def test_a_file_that_turns_bad_keeps_its_last_good_schedule(env: Env) -> None:
    d = folder(env)
    (d / "sang.yaml").write_text(MORNING, encoding="utf-8")
    service = env.new()
    service.start()
    (d / "sang.yaml").write_text(MORNING + "colour: red\n", encoding="utf-8")
    report = service.reload_yaml()
    assert "colour" in report["errors"]["sang.yaml"]
    (kept,) = service.list_schedules()
    assert kept["time"] == "06:00" and kept["enabled"]


def test_file_schedules_are_edited_in_their_file_not_the_api(env: Env) -> None:
    d = folder(env)
    (d / "sang.yaml").write_text(MORNING, encoding="utf-8")
    service = env.new()
    service.reload_yaml()
    (row,) = service.list_schedules()
    with pytest.raises(ScheduleError, match="sang.yaml") as err:
        service.update_schedule(row["id"], {"time": "07:00"})
    assert err.value.code == "conflict"
    with pytest.raises(ScheduleError, match="sang.yaml"):
        service.delete_schedule(row["id"])


def test_yaml_targets_must_exist(env: Env) -> None:
    d = folder(env)
    (d / "thon.yaml").write_text(SUNDAY + "targets: [thon-1, thon-9]\n", encoding="utf-8")
    service = env.new()
    report = service.reload_yaml()
    assert "thon-9" in report["errors"]["thon.yaml"] and report["errors"]["thon.yaml"].startswith("thon.yaml")
    assert service.list_schedules() == []

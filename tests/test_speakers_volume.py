"""Volume commands reach the hardware mixer in order: one worker, the latest volume winning
(issue 8: each command used to start its own mixer process, so two quick ones could apply out of
order). The mixer here is a real program that is slow for some volumes, as an amixer on a busy
node can be."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from speakers.protocol import VolumeCommand
from tests.mini_controller import MiniController, make_node, run, until

pytestmark = pytest.mark.integration

# A mixer that takes 0.6 s to apply a low volume and no time for a high one, and records each
# volume it applied, in the order the applications ended.
SLOW_MIXER = """
import sys, time
volume = int(sys.argv[2])
if volume < 50:
    time.sleep(0.6)
with open(sys.argv[1], "a") as out:
    out.write(f"{volume}\\n")
"""


def test_two_quick_volume_commands_apply_in_order(mosquitto, tmp_path: Path) -> None:
    mosquitto.add_nodes({"loa-01": None})
    script = tmp_path / "mixer.py"
    script.write_text(SLOW_MIXER, encoding="utf-8")
    applied = tmp_path / "applied.txt"
    mixer = f"{sys.executable} {script} {applied} {{volume}}"

    async def scenario() -> None:
        mc = MiniController(mosquitto.url)
        await mc.start()
        node = await make_node(
            mosquitto, "loa-01", None, tmp_path / "c", sections={"volume": {"mixer_command": mixer}}
        ).start()
        commands = node.agent.commands
        mc.send_to("loa-01", VolumeCommand(volume=20))  # slow to apply
        await until(lambda: commands.volume == 20, what="the first volume command")
        for volume in (90, 30, 70):  # while it is applied: only the last must follow it
            mc.send_to("loa-01", VolumeCommand(volume=volume))
        await until(lambda: commands.volume == 70, what="the last volume command")
        await until(lambda: {"20", "70"} <= set(_lines(applied)), timeout=10, what="the mixer runs")
        assert _lines(applied)[-1] == "70", _lines(applied)  # not overtaken by the slow first one
        await until(lambda: not commands.mixer_busy, timeout=10, what="the mixer to settle")
        await node.stop()
        await mc.close()

    run(scenario())
    lines = _lines(applied)
    assert lines[-1] == "70", lines  # the hardware ends at the volume last commanded
    assert lines[0] == "20" and len(lines) <= 3, lines  # in order; stale volumes may be skipped


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").split()
    except FileNotFoundError:
        return []

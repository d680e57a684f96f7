"""Settings: sources and their order, clear errors, and the documentation kept current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from broadcaster.settings import SettingsError, load_settings, reference_markdown

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_work_with_no_configuration(tmp_path: Path) -> None:
    settings = load_settings({"instance": tmp_path}, environ={})
    assert settings.mqtt_url is None  # a managed broker
    assert settings.db_url == f"sqlite:///{(tmp_path / 'broadcaster.db').resolve()}"
    assert settings.cache_dir == tmp_path / "audio_cache"
    assert settings.textnorm.max_chars == 20_000
    assert settings.audio.target_lufs == -16.0


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    config = tmp_path / "loa.yaml"
    config.write_text("port: 9001\nhost: 0.0.0.0\ntts:\n  order: [piper, espeak-ng]\n", encoding="utf-8")
    environ = {"BROADCASTER_PORT": "9002", "BROADCASTER_TTS__ESPEAK__VOICE": "vi-vn-x-south"}
    settings = load_settings({"instance": tmp_path}, config_file=config, environ=environ)
    assert settings.host == "0.0.0.0"  # from the file
    assert settings.port == 9002  # the environment wins over the file
    assert settings.tts.order == ["piper", "espeak-ng"]
    assert settings.tts.espeak.voice == "vi-vn-x-south"  # nested with __
    flagged = load_settings({"instance": tmp_path, "port": 9003}, config_file=config, environ=environ)
    assert flagged.port == 9003  # flags win over everything


def test_list_from_environment_as_yaml(tmp_path: Path) -> None:
    settings = load_settings({"instance": tmp_path}, environ={"BROADCASTER_TTS__ORDER": "[espeak-ng]"})
    assert settings.tts.order == ["espeak-ng"]


def test_malformed_yaml_in_the_environment_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="BROADCASTER_TTS__ORDER"):
        load_settings({"instance": tmp_path}, environ={"BROADCASTER_TTS__ORDER": "[espeak-ng, gtts"})


def test_unknown_key_and_bad_value_are_named(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("prot: 80\naudio:\n  bitrate_kbps: 5\n", encoding="utf-8")
    with pytest.raises(SettingsError) as err:
        load_settings({"instance": tmp_path}, config_file=config, environ={})
    message = str(err.value)
    assert "prot" in message
    assert "audio.bitrate_kbps" in message


@pytest.mark.parametrize("content", ["port: [1, 2", "- just\n- a list\n"])
def test_unreadable_config_file_is_a_clear_error(tmp_path: Path, content: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(content, encoding="utf-8")
    with pytest.raises(SettingsError, match="bad.yaml"):
        load_settings({"instance": tmp_path}, config_file=config, environ={})


def test_secret_key_is_generated_once_and_kept(tmp_path: Path) -> None:
    first = load_settings({"instance": tmp_path}, environ={})
    first.ensure_instance()
    second = load_settings({"instance": tmp_path}, environ={})
    second.ensure_instance()
    assert first.secret_key and first.secret_key == second.secret_key
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_cli_reports_a_bad_config_without_a_traceback(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("port: not-a-number\n", encoding="utf-8")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "broadcaster",
            "--instance",
            str(tmp_path),
            "--config",
            str(config),
            "settings",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "port" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_configuration_document_lists_every_setting() -> None:
    document = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert reference_markdown() in document, (
        "docs/configuration.md is stale: paste `broadcaster settings --reference`"
    )


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first_block = readme.split("```")[1]
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["bash scripts/demo", "bash scripts/test"]
    assert "bash scripts/test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")

"""``broadcaster token list`` and ``broadcaster token revoke``: no secrets listed, a revoked token
is refused by the running API at once, an unknown name is a clear error with exit status 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from broadcaster.__main__ import main
from tests.test_api import Api


@pytest.fixture
def api(tmp_path: Path):
    a = Api(tmp_path)
    yield a
    a.engine.dispose()


def cli(api: Api, *args: str) -> list[str]:
    return ["--instance", str(api.settings.instance), "token", *args]


def test_list_shows_name_created_last_used_and_never_the_secret(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(cli(api, "create", "bao-cao")) == 0
    second = capsys.readouterr().out.strip()
    assert main(cli(api, "list")) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "CREATED", "LAST", "USED", "STATE"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"tram-xa", "bao-cao"}
    assert "never" in rows["tram-xa"] and rows["tram-xa"].endswith("active")
    assert api.token not in out and second not in out
    assert api.get("/api/speakers").status_code == 200  # records last use
    main(cli(api, "list"))
    used = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}["tram-xa"]
    assert "never" not in used and used.count("-") >= 4  # created and last-used dates


def test_revoke_refuses_the_token_at_once(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    assert api.get("/api/speakers").status_code == 200
    assert main(cli(api, "revoke", "tram-xa")) == 0
    assert "tram-xa revoked" in capsys.readouterr().out
    refused = api.get("/api/speakers")
    assert refused.status_code == 401 and refused.get_json()["error"]["code"] == "invalid_token"
    main(cli(api, "list"))
    assert capsys.readouterr().out.splitlines()[1].endswith("revoked")


def test_revoking_an_unknown_name_is_a_clear_error(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(cli(api, "revoke", "khong-co")) == 1
    captured = capsys.readouterr()
    assert "error: no token named 'khong-co'" in captured.err and "Traceback" not in captured.err
    assert api.get("/api/speakers").status_code == 200  # the other token still works


def test_list_with_no_tokens_says_how_to_make_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--instance", str(tmp_path / "empty"), "token", "list"]) == 0
    assert "broadcaster token create NAME" in capsys.readouterr().out

"""Project conventions that a reviewer would otherwise have to check by hand."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from speakers.yamlio import YamlError, deep_merge, parse_yaml

ROOT = Path(__file__).resolve().parent.parent

# Each integration library is imported in exactly one module of ours (paho twice: the controller
# and the agent are separate installs, and the agent must not need the controller).
ALLOWED = {
    "paho": {"broadcaster/transport/mqtt.py", "speakers/mqtt.py"},
    "aiomqtt": {"speakers/mqtt.py"},
    "gtts": {"broadcaster/tts/gtts_engine.py"},
    "requests": {"broadcaster/tts/gtts_engine.py"},
    "piper": {"broadcaster/tts/piper_engine.py"},
    "pydub": {"broadcaster/audio/render.py"},
    "apscheduler": {"broadcaster/scheduling/apsched.py"},
    "cheroot": {"broadcaster/web/serve.py"},
    "yaml": {"speakers/yamlio.py"},
    "docx": {"broadcaster/documents/office.py"},
    "pypdf": {"broadcaster/documents/office.py"},
    "PIL": {"broadcaster/documents/image.py"},
    "defusedxml": {"broadcaster/federation/cap/parse.py"},
    "segno": {"broadcaster/web/ui/enroll.py"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_each_integration_library_is_imported_in_one_module() -> None:
    found: dict[str, set[str]] = {lib: set() for lib in ALLOWED}
    for package in ("broadcaster", "speakers"):
        for path in (ROOT / package).rglob("*.py"):
            for name in _imports(path) & ALLOWED.keys():
                found[name].add(path.relative_to(ROOT).as_posix())
    assert found == ALLOWED


def test_the_agent_does_not_import_the_controller() -> None:
    offenders = [
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "speakers").rglob("*.py")
        if _imports(path) & {"broadcaster", "flask", "sqlalchemy"}
    ]
    assert offenders == []


def test_benchmarks_never_import_from_tests() -> None:
    offenders = [
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "bench").rglob("*.py")
        if "tests" in _imports(path)
    ]
    assert offenders == []


# Issue 8: a module past 600 lines or a class past 400 is two things glued together. The rules
# engine of the normalizer and the OpenAPI document are long lists by nature; migrations are data.
MAX_MODULE_LINES = 600
MAX_CLASS_LINES = 400
SIZE_EXEMPT = {"broadcaster/textnorm/rules.py", "broadcaster/web/openapi.py"}


def _oversized(package: str) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in SIZE_EXEMPT or "/migrations/" in rel:
            continue
        source = path.read_text(encoding="utf-8")
        if (lines := source.count("\n")) > MAX_MODULE_LINES:
            found.append(f"{rel}: {lines} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef) and (n := node.end_lineno - node.lineno + 1) > MAX_CLASS_LINES:
                found.append(f"{rel}: class {node.name} {n} lines")
    return found


def test_no_module_of_the_controller_is_two_things_glued_together() -> None:
    assert _oversized("broadcaster") == []


def test_yaml_is_parsed_safely_with_a_clear_error() -> None:
    assert parse_yaml("a: [1, 2]\nb: Thôn Đông\n") == {"a": [1, 2], "b": "Thôn Đông"}
    with pytest.raises(YamlError, match="line"):
        parse_yaml("a: [1, 2\n")
    with pytest.raises(YamlError):
        parse_yaml("!!python/object/apply:os.system ['true']")


def test_config_layers_merge_nested_mappings_and_replace_the_rest() -> None:
    base = {"tts": {"order": ["gtts"], "espeak": {"voice": "vi"}}, "port": 8080}
    over = {"tts": {"espeak": {"speed": 140}}, "port": 9000}
    assert deep_merge(base, over) == {
        "tts": {"order": ["gtts"], "espeak": {"voice": "vi", "speed": 140}},
        "port": 9000,
    }
    assert base["tts"]["espeak"] == {"voice": "vi"}  # the inputs are left untouched

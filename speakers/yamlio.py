"""Config files for the whole project: YAML reading (the only PyYAML import) for the agent config,
the controller settings and schedules/*.yaml, and the layering of config sources. Shared from the
agent package because the agent installs without the controller."""

from __future__ import annotations

from typing import Any

import yaml


class YamlError(ValueError):
    """Malformed YAML. ``line`` and ``column`` (1-based) are set when the parser knows them."""

    def __init__(self, problem: str, line: int | None = None, column: int | None = None) -> None:
        self.problem = problem
        self.line = line
        self.column = column
        at = f" (line {line}, column {column})" if line is not None else ""
        super().__init__(f"{problem}{at}")


def parse_yaml(text: str) -> Any:
    """Parse YAML safely (no object construction); raise :class:`YamlError` on malformed text."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        if mark is None:
            raise YamlError(problem) from exc
        raise YamlError(problem, mark.line + 1, mark.column + 1) from exc


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` laid on ``base``: nested mappings merge key by key, anything else is replaced."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged

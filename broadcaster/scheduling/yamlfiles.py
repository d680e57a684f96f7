"""Load ``schedules/*.yaml``: one bulletin per file, validated like the API (pydantic, extra=forbid).

A file is keyed by its name (``Schedule.source_file``), so loading twice changes nothing, an edited
file updates its schedule, and a removed file removes its schedule. A bad file is reported with
its name and the field at fault; the other files still load.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import Any

from broadcaster.scheduling.spec import ScheduleError, ScheduleFields, ScheduleFile, validate_spec
from speakers.yamlio import YamlError, parse_yaml

_LOGGER = logging.getLogger(__name__)

PATTERNS = ("*.yaml", "*.yml")


@dataclass
class LoadedFiles:
    specs: dict[str, ScheduleFields] = field(default_factory=dict)  # file name -> spec
    errors: dict[str, str] = field(default_factory=dict)  # file name -> message


def _fix_yaml_time(data: dict[str, Any]) -> dict[str, Any]:
    """YAML 1.1 reads an unquoted ``06:00`` as the sexagesimal integer 360; read it back as a time."""
    value = data.get("time")
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        data = {**data, "time": f"{value // 60:02d}:{value % 60:02d}"}
    return data


def load_file(path: Path, zone: tzinfo) -> ScheduleFields:
    """Parse and validate one file; ScheduleError names the file (and the field) on any problem."""
    where = path.name
    try:
        data = parse_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ScheduleError(f"{where}: not UTF-8 text ({exc.reason})") from exc
    except YamlError as exc:
        at = f" (line {exc.line}, column {exc.column})" if exc.line is not None else ""
        raise ScheduleError(f"{where}: invalid YAML{at}: {exc.problem}") from exc
    except OSError as exc:
        raise ScheduleError(f"{where}: cannot read: {exc.strerror or exc}") from exc
    if not isinstance(data, dict):
        raise ScheduleError(f"{where}: the file must hold one mapping of fields (name, text, kind, ...)")
    return validate_spec(_fix_yaml_time(data), zone, model=ScheduleFile, where=where)


def load_dir(folder: Path | None, zone: tzinfo) -> LoadedFiles:
    """Every schedule file of ``folder`` (none when it is None or missing)."""
    out = LoadedFiles()
    if folder is None or not folder.is_dir():
        return out
    paths = sorted({p for pattern in PATTERNS for p in folder.glob(pattern) if p.is_file()})
    for path in paths:
        try:
            out.specs[path.name] = load_file(path, zone)
        except ScheduleError as exc:
            _LOGGER.error("schedule file skipped: %s", exc.message)
            out.errors[path.name] = exc.message
    return out

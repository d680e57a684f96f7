"""Two bulletins at the same minute on the same clusters: the week view marks them and saving one
warns (issue 13, item 6). They do not both play at once (arbitration queues the second behind the
first), but the officer most likely did not mean it. No routes here."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from broadcaster.fleet.targets import TargetError
from broadcaster.web.ui import fmt_local, now, parse_time, services

_LOGGER = logging.getLogger(__name__)

# A save is checked against this much of the future: a weekly bulletin meets every other one.
LOOK_AHEAD = timedelta(days=8)


def _key(item: dict[str, Any]) -> tuple[str, Any]:
    if item.get("schedule_id") is not None:
        return ("s", item["schedule_id"])
    return ("b", item.get("broadcast_id"))


def mark_clashes(airings: Iterable[dict[str, Any]]) -> dict[int, list[str]]:
    """``{index: [titles of the others]}`` for each airing (by position in ``airings``) that
    shares its minute and at least one cluster with an airing of another bulletin."""
    items = list(airings)
    resolved: dict[tuple[str, ...], frozenset[str]] = {}

    def clusters(targets: Any) -> frozenset[str]:
        key = tuple(targets or ())
        if key not in resolved:
            try:
                resolved[key] = frozenset(services().targets.resolve(list(key)).speakers)
            except TargetError:
                resolved[key] = frozenset()
        return resolved[key]

    by_minute: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        at = parse_time(item.get("at"))
        if at is not None and item.get("state") not in ("cancelled", "failed"):
            by_minute.setdefault(at.strftime("%Y-%m-%d %H:%M"), []).append(index)
    out: dict[int, list[str]] = {}
    for indexes in by_minute.values():
        for i in indexes:
            for j in indexes:
                if i == j or _key(items[i]) == _key(items[j]):
                    continue
                if clusters(items[i].get("targets")) & clusters(items[j].get("targets")):
                    title = str(items[j].get("title") or items[j].get("name") or "bản tin")
                    if title not in out.setdefault(i, []):
                        out[i].append(title)
    return out


def clash_warning(*, schedule_id: int | None = None, broadcast_id: int | None = None) -> str | None:
    """The warning to flash after saving a schedule or a timed item that clashes with another
    bulletin in the coming days, or None."""
    found = services().scheduler
    if found is None:
        return None
    start = now()
    try:
        airings = found.upcoming(start, start + LOOK_AHEAD)
    except Exception:  # the warning is a courtesy: never fail a save over it
        _LOGGER.exception("clash check failed")
        return None
    clashes = mark_clashes(airings)
    mine = ("s", schedule_id) if schedule_id is not None else ("b", broadcast_id)
    titles: list[str] = []
    first_at = None
    for index, others in sorted(clashes.items()):
        if _key(airings[index]) != mine:
            continue
        first_at = first_at or airings[index].get("at")
        titles.extend(t for t in others if t not in titles)
    if not titles:
        return None
    names = ", ".join(f"«{t}»" for t in titles[:5])
    return (
        f"Lưu ý: bản tin này trùng giờ với {names} trên cùng cụm loa (lần đầu lúc "
        f"{fmt_local(first_at, '%H:%M ngày %d/%m')}). Hai bản tin sẽ phát lần lượt, bản sau chờ bản "
        "trước; nếu không muốn vậy, hãy đổi giờ một trong hai."
    )


__all__ = ["LOOK_AHEAD", "clash_warning", "mark_clashes"]

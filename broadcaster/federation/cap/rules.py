"""From a CAP alert to an item (pure): which ``info`` block, which rule, what is read aloud.

- the ``info`` block in the preferred language (``federation.cap.language``, "vi" matches
  "vi-VN") wins; else the first one;
- the first rule whose every given condition matches (severity, urgency, event words, area words,
  source) decides the tier, the targets, the repeat and whether an approver must agree;
- the text read is the headline, the description and the instruction, in that order.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from broadcaster.federation.cap.parse import CapAlert, CapInfo
from broadcaster.federation.config import CapRule
from broadcaster.federation.intake import Incoming
from broadcaster.federation.wire import Bulletin

# Longest text read from one alert: a long bulletin is cut at a sentence, never mid-word.
MAX_TEXT = 5000


def fold(text: str) -> str:
    """Case- and accent-insensitive ("Bão SỐ 3" -> "bao so 3")."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def choose_info(alert: CapAlert, language: str = "vi") -> CapInfo | None:
    if not alert.infos:
        return None
    wanted = language.lower()
    for info in alert.infos:
        lang = info.language.lower()
        if lang == wanted or lang.split("-")[0] == wanted.split("-")[0]:
            return info
    return alert.infos[0]


def _any_word(words: Iterable[str], haystack: Iterable[str]) -> bool:
    folded = [fold(h) for h in haystack]
    return any(fold(w) in h for w in words for h in folded)


def match_rule(rules: Iterable[CapRule], source: str, info: CapInfo) -> CapRule | None:
    for rule in rules:
        if rule.source is not None and rule.source != source:
            continue
        if rule.severity is not None and info.severity not in rule.severity:
            continue
        if rule.urgency is not None and info.urgency not in rule.urgency:
            continue
        if rule.event is not None and not _any_word(rule.event, [info.event]):
            continue
        if rule.area is not None and not _any_word(rule.area, [*info.areas, *info.geocodes]):
            continue
        return rule
    return None


def spoken_text(info: CapInfo) -> str:
    parts = []
    for piece in (info.headline, info.description, info.instruction):
        piece = re.sub(r"\s+", " ", piece).strip()
        if piece and piece not in parts:
            parts.append(piece if piece[-1] in ".!?…" else piece + ".")
    text = " ".join(parts)
    if len(text) > MAX_TEXT:
        cut = text[:MAX_TEXT]
        text = cut[: cut.rfind(". ") + 1] or cut[: cut.rfind(" ")]
    return text


def to_incoming(alert: CapAlert, source: str, rule: CapRule, info: CapInfo) -> Incoming:
    origin = f"cap:{source}"
    bulletin = Bulletin(
        id=alert.key[:300],
        tier=rule.tier,
        title=(info.headline or info.event)[:300],
        text=spoken_text(info),
        repeat=rule.repeat,
        valid_until=info.expires,
        sender=(info.sender_name or alert.sender)[:200],
    )
    replaces = alert.references if alert.msg_type == "Update" else ()
    data = {
        "event": info.event,
        "severity": info.severity,
        "urgency": info.urgency,
        "msg_type": alert.msg_type,
    }
    return Incoming(
        origin,
        bulletin,
        tuple(rule.targets),
        inbox=False,
        approval=rule.approval,
        replaces=replaces,
        data=data,
    )


__all__ = ["MAX_TEXT", "choose_info", "fold", "match_rule", "spoken_text", "to_incoming"]

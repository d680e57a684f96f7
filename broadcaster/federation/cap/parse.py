"""CAP 1.2 documents, parsed safely: ``defusedxml`` (the only module importing it) refuses
external entities, DTDs and entity expansion ("billion laughs"); sizes are bounded before parsing.

``parse_document(data)`` accepts a CAP ``<alert>`` or an Atom ``<feed>`` whose entries link to
alerts (``links``) or carry them inline; it raises :class:`CapError` on anything else.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from broadcaster.domain import nfc

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
ATOM_NS = "http://www.w3.org/2005/Atom"
_C = f"{{{CAP_NS}}}"
_A = f"{{{ATOM_NS}}}"
MSG_TYPES = ("Alert", "Update", "Cancel", "Ack", "Error")
# Bounds on what one alert may hold (the schema sets none; a hostile feed could).
MAX_INFOS = 20
MAX_AREAS = 100
MAX_FIELD = 20_000


class CapError(ValueError):
    """A document that is not well-formed, unsafe, or not CAP 1.2."""


@dataclass(frozen=True)
class CapInfo:
    language: str = "en-US"
    event: str = ""
    urgency: str = ""
    severity: str = ""
    certainty: str = ""
    headline: str = ""
    description: str = ""
    instruction: str = ""
    sender_name: str = ""
    expires: datetime | None = None
    onset: datetime | None = None
    areas: tuple[str, ...] = ()
    geocodes: tuple[str, ...] = ()


@dataclass(frozen=True)
class CapAlert:
    identifier: str
    sender: str
    sent: str  # as written: it is part of the alert's identity
    status: str
    msg_type: str
    scope: str = "Public"
    references: tuple[str, ...] = ()  # "sender,identifier,sent" of earlier alerts
    infos: tuple[CapInfo, ...] = field(default_factory=tuple)

    @property
    def key(self) -> str:
        """The identity CAP gives an alert: sender, identifier and sent."""
        return f"{self.sender},{self.identifier},{self.sent}"


def _text(node: ET.Element | None, name: str) -> str:
    child = node.find(_C + name) if node is not None else None
    return nfc((child.text or "").strip())[:MAX_FIELD] if child is not None and child.text else ""


def parse_time(value: str) -> datetime | None:
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt.astimezone(UTC) if dt.tzinfo else None


def _info(node: ET.Element) -> CapInfo:
    areas, geocodes = [], []
    for area in node.findall(_C + "area")[:MAX_AREAS]:
        areas.append(_text(area, "areaDesc"))
        geocodes += [_text(g, "value") for g in area.findall(_C + "geocode")[:MAX_AREAS]]
    return CapInfo(
        language=_text(node, "language") or "en-US",
        event=_text(node, "event"),
        urgency=_text(node, "urgency"),
        severity=_text(node, "severity"),
        certainty=_text(node, "certainty"),
        headline=_text(node, "headline"),
        description=_text(node, "description"),
        instruction=_text(node, "instruction"),
        sender_name=_text(node, "senderName"),
        expires=parse_time(_text(node, "expires")),
        onset=parse_time(_text(node, "onset")),
        areas=tuple(a for a in areas if a),
        geocodes=tuple(g for g in geocodes if g),
    )


def alert_from_element(root: ET.Element) -> CapAlert:
    if root.tag != _C + "alert":
        raise CapError(f"not a CAP 1.2 alert (root {root.tag!r}, expected {{{CAP_NS}}}alert)")
    identifier, sender, sent = _text(root, "identifier"), _text(root, "sender"), _text(root, "sent")
    status, msg_type = _text(root, "status"), _text(root, "msgType")
    if not identifier or not sender or not sent or parse_time(sent) is None:
        raise CapError("a CAP alert needs identifier, sender and sent (with its time zone)")
    if msg_type not in MSG_TYPES:
        raise CapError(f"unknown msgType {msg_type!r}")
    references = tuple(_text(root, "references").split())
    infos = tuple(_info(n) for n in root.findall(_C + "info")[:MAX_INFOS])
    return CapAlert(
        identifier, sender, sent, status, msg_type, _text(root, "scope") or "Public", references, infos
    )


def parse_document(data: bytes, *, max_bytes: int = 1_000_000) -> tuple[list[CapAlert], list[str]]:
    """The alerts a document holds, and the links of an Atom feed's entries to fetch."""
    if len(data) > max_bytes:
        raise CapError(f"document over {max_bytes} bytes")
    try:
        root = SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise CapError(f"unsafe XML refused ({type(exc).__name__})") from exc
    except ET.ParseError as exc:
        raise CapError(f"not well-formed XML: {exc}") from exc
    if root.tag == _C + "alert":
        return [alert_from_element(root)], []
    if root.tag != _A + "feed":
        raise CapError(f"neither a CAP alert nor an Atom feed (root {root.tag!r})")
    alerts, links = [], []
    for entry in root.findall(_A + "entry"):
        inline = entry.find(f"{_A}content/{_C}alert")
        if inline is not None:
            alerts.append(alert_from_element(inline))
            continue
        for link in entry.findall(_A + "link"):
            href = link.get("href") or ""
            if href.startswith(("http://", "https://")) and link.get("rel", "alternate") in (
                "alternate",
                "related",
            ):
                links.append(href)
                break
    return alerts, links


__all__ = ["CAP_NS", "CapAlert", "CapError", "CapInfo", "parse_document", "parse_time"]

"""What the command line does on the lower level: set, show and clear the upstream."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.federation import signing
from broadcaster.federation.models import FedLink, FedReport
from broadcaster.federation.reportqueue import LINK_ROW


class LinkConfigError(ValueError):
    """A URL or token that cannot be used; the message is for the operator."""


def set_upstream(sessions: sessionmaker[Session], url: str, token: str) -> dict[str, Any]:
    """Point this controller at its upstream. A new link id: the report numbers restart and the
    upper level restarts its count for us; reports still queued for a previous upstream are dropped."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LinkConfigError("the upstream URL must be http:// or https:// with a host")
    try:
        unit = signing.parse_token(token)
    except signing.TokenError as exc:
        raise LinkConfigError(str(exc)) from exc
    with sessions.begin() as session:
        session.execute(delete(FedReport))
        row = session.get(FedLink, LINK_ROW)
        if row is None:
            row = FedLink(id=LINK_ROW, url="", token="", unit="", link_id="")
            session.add(row)
        if row.url != url.strip().rstrip("/") or row.unit != unit:
            row.cursor = 0  # another upstream numbers its items from 1
        row.url = url.strip().rstrip("/")
        row.token = token.strip()
        row.unit = unit
        row.link_id = secrets.token_urlsafe(12)
        row.next_report_seq = 1
        row.dropped_reports = 0
        row.state, row.last_error, row.last_ok = "new", None, None
    return show_upstream(sessions) or {}


def show_upstream(sessions: sessionmaker[Session]) -> dict[str, Any] | None:
    """The upstream as configured (never the token)."""
    with sessions() as session:
        row = session.get(FedLink, LINK_ROW)
        if row is None:
            return None
        return {
            "url": row.url,
            "unit": row.unit,
            "state": row.state,
            "last_error": row.last_error,
            "last_ok": row.last_ok.isoformat() if row.last_ok else None,
            "cursor": row.cursor,
            "next_report": row.next_report_seq,
            "dropped_reports": row.dropped_reports,
        }


def clear_upstream(sessions: sessionmaker[Session]) -> bool:
    with sessions.begin() as session:
        row = session.get(FedLink, LINK_ROW)
        if row is None:
            return False
        session.delete(row)
        session.execute(delete(FedReport))
    return True


__all__ = ["LinkConfigError", "clear_upstream", "set_upstream", "show_upstream"]

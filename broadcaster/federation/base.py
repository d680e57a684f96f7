"""The upstream adapter interface.

An upstream is where bulletins come from: the Loa xã link to a district or province
(``federation.link.LoaLink``) or a CAP 1.2 feed (``federation.cap.feed.CapFeed``). Each turns
what it receives into :class:`~broadcaster.federation.intake.Incoming` items for the one
:class:`~broadcaster.federation.intake.Intake`, which submits them through the broadcast
lifecycle. A province's own system would be a third adapter: the same three methods, the same
intake, and nothing in ``broadcaster.broadcasts`` changes.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Upstream(Protocol):
    """Contract: ``start()`` returns at once (the adapter runs on threads of its own, retrying with
    backoff; it never raises for a network problem); ``stop()`` ends those threads and is safe to
    call twice; ``status()`` says, for the officer's page and the logs, how the adapter is doing:
    at least ``{"name": str, "kind": str, "state": "ok" | "error" | "stopped" | ..., "error": str
    | None}``."""

    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def status(self) -> dict[str, Any]: ...


__all__ = ["Upstream"]

"""Settings an admin changes at run time on the settings page, kept in the database.

A saved value wins over the configured default (``settings.yaml``); until an admin saves one, the
configured default applies. Today there is one: whether an editor's items wait for an approver.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from broadcaster.models import Setting

_LOGGER = logging.getLogger(__name__)

APPROVAL_REQUIRED = "approval_required"


class RuntimeSettings:
    """Session-per-call access to the ``settings`` table, with the configured defaults."""

    def __init__(self, sessions: sessionmaker[Session], *, approval_required: bool) -> None:
        self.sessions = sessions
        self._defaults: dict[str, Any] = {APPROVAL_REQUIRED: approval_required}

    def get(self, key: str) -> Any:
        """The saved value of ``key``, else its configured default (None if it has none)."""
        with self.sessions() as session:
            row = session.get(Setting, key)
        return self._defaults.get(key) if row is None else row.value

    def set(self, key: str, value: Any) -> None:
        with self.sessions.begin() as session:
            row = session.get(Setting, key)
            if row is None:
                session.add(Setting(key=key, value=value))
            else:
                row.value = value
        _LOGGER.info("runtime setting %s = %r", key, value)

    def approval_required(self) -> bool:
        """Whether an editor's items wait for an approver (the admin's choice once saved)."""
        value = self.get(APPROVAL_REQUIRED)
        return value if isinstance(value, bool) else bool(self._defaults[APPROVAL_REQUIRED])

    def set_approval_required(self, value: bool) -> None:
        self.set(APPROVAL_REQUIRED, bool(value))


__all__ = ["APPROVAL_REQUIRED", "RuntimeSettings"]

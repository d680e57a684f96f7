"""build_services(settings): the only place where the parts of the controller are wired together.

Nothing starts on construction; ``Services.start()`` starts the broker (when managed), the MQTT
link, the fleet monitor, the scheduler and the demo simulator, and ``stop()`` stops them in
reverse order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.db import create_schema, make_engine, make_session_factory
from broadcaster.settings import Settings

if TYPE_CHECKING:
    from broadcaster.broadcasts import BroadcastManager
    from broadcaster.fleet import Fleet
    from broadcaster.scheduling import SchedulerService
    from broadcaster.speech import SpeechService
    from broadcaster.transport import Transport


def open_database(settings: Settings) -> sessionmaker[Session]:
    """Open (and migrate) the database alone, for CLI commands that need nothing else."""
    engine = make_engine(settings.db_url)
    create_schema(engine)
    return make_session_factory(engine)


@dataclass
class Services:
    settings: Settings
    db_engine: Engine
    sessions: sessionmaker[Session]
    speech: SpeechService
    transport: Transport
    fleet: Fleet
    broadcasts: BroadcastManager
    scheduler: SchedulerService
    extras: dict[str, Any] = field(default_factory=dict)  # managed broker, demo simulator

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


def build_services(settings: Settings) -> Services:
    raise NotImplementedError

"""Database engine, sessions and schema migrations. SQLite by default; any SQLAlchemy URL works.

The schema is managed by Alembic (``broadcaster/migrations``, ``broadcaster/alembic.ini``, shipped
as package data). :func:`create_schema` brings any database to the latest revision:

- an empty database is created from the models and stamped at the head revision (the same
  schema the migrations build, checked by ``tests/test_services_db.py``, and much faster);
- a database with an Alembic version is upgraded to head;
- a database created before migrations existed (tables, no version) is stamped at the initial
  revision and then upgraded.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.models import Base

_LOGGER = logging.getLogger(__name__)

_HERE = Path(__file__).resolve().parent
INITIAL_REVISION = "0001"
_schema_lock = threading.Lock()


def make_engine(url: str) -> Engine:
    """Create the engine. SQLite gets WAL and a busy timeout so the web, the scheduler
    and the MQTT ingest threads can share one file. ``postgresql://`` without a driver uses
    psycopg 3 (the server extra installs it; SQLAlchemy's default would be psycopg2)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config() -> Config:
    """The Alembic configuration shipped with the package."""
    cfg = Config(str(_HERE / "alembic.ini"))
    cfg.set_main_option("script_location", str(_HERE / "migrations"))
    return cfg


@contextlib.contextmanager
def _quiet_alembic() -> Iterator[None]:
    """Alembic logs every plugin it sets up at INFO; keep the controller's log readable."""
    logger = logging.getLogger("alembic")
    if logger.level != logging.NOTSET or _LOGGER.isEnabledFor(logging.DEBUG):
        yield
        return
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(logging.NOTSET)


def migrate(engine: Engine, revision: str = "head") -> None:
    """Run the Alembic migrations up to ``revision`` on ``engine``."""
    cfg = alembic_config()
    with _quiet_alembic(), engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def _stamp(engine: Engine, revision: str) -> None:
    cfg = alembic_config()
    with _quiet_alembic(), engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.stamp(cfg, revision)


def create_schema(engine: Engine) -> None:
    """Bring the schema up to date (see the module docstring)."""
    with _schema_lock:
        tables = set(inspect(engine).get_table_names())
        ours = set(Base.metadata.tables)
        if not tables & ours:
            Base.metadata.create_all(engine)
            _stamp(engine, "head")
            _LOGGER.info("database created at the latest schema revision")
            return
        if "alembic_version" not in tables:
            _LOGGER.warning("database without a schema version: assuming the initial revision")
            _stamp(engine, INITIAL_REVISION)
        migrate(engine)


__all__ = ["alembic_config", "create_schema", "make_engine", "make_session_factory", "migrate"]

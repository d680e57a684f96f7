"""Alembic environment of the controller.

Programmatic use (``broadcaster.db.create_schema``) passes an open connection in
``config.attributes["connection"]``; the command line passes ``-x db=URL``. Logging is left as the
application configured it (no ``fileConfig``). Tables that are not in our metadata (APScheduler's
job store) are ignored by autogenerate. SQLite gets batch mode so later migrations can alter tables.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from broadcaster.models import Base, UtcDateTime

config = context.config
target_metadata = Base.metadata


def _include_object(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    # Reflected tables without a model belong to others (apscheduler_jobs): leave them alone.
    return not (type_ == "table" and reflected and compare_to is None)


def _render_item(type_, obj, autogen_context):  # type: ignore[no-untyped-def]
    # UtcDateTime is DateTime on the database: migrations stay independent of models.py.
    if type_ == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime()"
    return False


def _configure(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=_include_object,
        render_as_batch=connection.dialect.name == "sqlite",
        render_item=_render_item,
        compare_type=True,
    )


def run_migrations_offline() -> None:
    url = context.get_x_argument(as_dictionary=True).get("db") or config.get_main_option("sqlalchemy.url")
    context.configure(
        url=url, target_metadata=target_metadata, literal_binds=True, include_object=_include_object
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = context.get_x_argument(as_dictionary=True).get("db") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("give the database: alembic -c broadcaster/alembic.ini -x db=URL ...")
    engine = create_engine(url)
    with engine.connect() as conn:
        _configure(conn)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

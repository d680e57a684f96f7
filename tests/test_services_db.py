"""Schema management: Alembic migrations and create_schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from broadcaster.db import alembic_config, create_schema, make_engine, migrate
from broadcaster.models import Base
from tests.fixtures_postgres import db_url_for

# On SQLite and on PostgreSQL (tests/fixtures_postgres.py).
pytestmark = pytest.mark.usefixtures("database")


def _diff(engine) -> list:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    # apscheduler_jobs and alembic_version are not ours.
    return [d for d in diff if not (d[0] == "remove_table" and d[1].name in ("apscheduler_jobs",))]


def _head() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()  # type: ignore[return-value]


def _version(engine) -> str:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.execute(text("select version_num from alembic_version")).scalar_one()


def test_migrations_build_exactly_the_models(tmp_path: Path) -> None:
    engine = make_engine(db_url_for(tmp_path / "migrated.db", empty=True))
    migrate(engine)
    assert _diff(engine) == []
    assert _version(engine) == _head()
    engine.dispose()


def test_create_schema_on_empty_db_stamps_head_and_is_idempotent(tmp_path: Path) -> None:
    engine = make_engine(db_url_for(tmp_path / "fresh.db", empty=True))
    create_schema(engine)
    create_schema(engine)
    assert _version(engine) == _head()
    assert _diff(engine) == []
    assert {"broadcasts", "deliveries", "health_samples", "log_entries"} <= set(
        inspect(engine).get_table_names()
    )
    engine.dispose()


def test_pre_migration_database_is_adopted(tmp_path: Path) -> None:
    engine = make_engine(db_url_for(tmp_path / "old.db", empty=True))
    Base.metadata.create_all(engine)  # as the foundation's create_schema did
    with engine.begin() as conn:
        conn.execute(
            text("insert into zones (id, name, created) values ('thon-1', 'Thôn Đông', '2024-01-01')")
        )
    create_schema(engine)
    assert _version(engine) == _head()
    with engine.connect() as conn:
        assert conn.execute(text("select name from zones")).scalar_one() == "Thôn Đông"
    engine.dispose()

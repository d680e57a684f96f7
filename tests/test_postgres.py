"""``--db postgresql://...`` for real: a plain URL picks the installed driver, and a real
``broadcaster serve`` on PostgreSQL (scheduler lease, triggers of the registry revision) takes in
a cluster that the CLI enrolled from another process."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from broadcaster.broker import free_port, probe_login
from broadcaster.db import create_schema, make_engine, make_session_factory
from broadcaster.fleet.registry import Registry
from speakers.yamlio import parse_yaml
from tests.fixtures_broker import TlsNode
from tests.fixtures_controller import wait_until
from tests.fixtures_postgres import PostgresServer
from tests.processes import ServeProcess

pytestmark = pytest.mark.integration


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def test_a_plain_postgresql_url_works_and_the_registry_revision_moves(postgres: PostgresServer) -> None:
    url = postgres.create_database()
    engine = make_engine(_plain(url))  # no driver named: psycopg 3, not SQLAlchemy's psycopg2 default
    try:
        assert engine.dialect.driver == "psycopg"
        create_schema(engine)
        registry = Registry(make_session_factory(engine))

        def revision() -> int:
            with engine.connect() as conn:
                return conn.execute(text("SELECT revision FROM registry_revision")).scalar_one()

        before = revision()
        registry.create_zone("thon-1", "Thôn Đông")
        assert revision() == before  # zones carry no broker account
        registry.create_speaker("loa-01", "Loa chợ", "thon-1")
        registry.reset_speaker_password("loa-01")
        registry.delete_speaker("loa-01")
        assert revision() == before + 3
    finally:
        engine.dispose()
        postgres.drop_database(url)


@pytest.fixture
def root() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="loa-pg-serve-"))
    folder.chmod(0o755)  # the mosquitto user must reach the broker folder
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_serve_on_postgresql_takes_in_a_cluster_enrolled_by_the_cli(
    postgres: PostgresServer, root: Path
) -> None:
    url = postgres.create_database()
    serve = ServeProcess(root / "instance", free_port(), BROADCASTER_DB=_plain(url))
    try:
        serve.start()
        serve.api("POST", "/zones", {"id": "thon-1", "name": "Thôn Đông"})
        out = root / "agent.yaml"
        serve.cli("speaker", "enroll", "loa-01", "--zone", "thon-1", "-o", str(out))
        password = parse_yaml(out.read_text(encoding="utf-8"))["password"]
        ctx = TlsNode.context(root / "instance" / "mosquitto" / "tls" / "ca.crt")
        wait_until(
            lambda: probe_login("127.0.0.1", serve.tls_port, "loa-01", password, ssl_context=ctx) == 0,
            timeout=10,
            what="the cluster enrolled by the CLI logs in",
        )
        engine = make_engine(url)
        try:
            with engine.connect() as conn:  # the scheduler holds the lease row, not a file lock
                lease = conn.execute(
                    text("SELECT value FROM settings WHERE key = 'scheduler.lease'")
                ).scalar()
        finally:
            engine.dispose()
        assert lease is not None and lease["owner"]
        assert not list((root / "instance").rglob("*scheduler*lock*"))
        log = serve.log()
        assert "changed outside this process: loa-01" in log and "Traceback" not in log
    except BaseException:
        print(f"--- controller log ---\n{serve.log()}")
        raise
    finally:
        serve.stop()
        postgres.drop_database(url)

"""A real PostgreSQL server for the tests, and the switch that runs a test module on both databases.

``postgres`` (session): Debian's PostgreSQL (``apt-get install postgresql``), initialised in a
temporary folder and started on a free loopback port (its unix socket in that folder too), with
durability off (fsync, synchronous_commit, full_page_writes: a test database never survives a
crash anyway). PostgreSQL refuses to run as root, so as root ``initdb`` and ``pg_ctl`` run as the
``postgres`` user (``runuser``) on a folder it owns. It is stopped and removed at the end::

    url = postgres.create_database()              # a fresh, empty database
    url = postgres.create_database(schema=True)   # one already at the latest schema (fast: a copy)

``database`` (parametrized ``sqlite`` / ``postgresql``): a module that says
``pytestmark = pytest.mark.usefixtures("database")`` runs each of its tests twice. Under
``postgresql`` every database the test opens through :func:`db_url_for` (and so through
``unit_services``) is a fresh PostgreSQL database, copied from a template at the latest schema
(``CREATE DATABASE ... TEMPLATE``, tens of milliseconds) and dropped after the test; under
``sqlite`` it is the SQLite file the test named.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Durability is pointless for a throw-away test server; without it a CREATE DATABASE is instant.
_SERVER_OPTIONS = (
    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
    "-c shared_buffers=32MB"
)
_TEMPLATE = "loa_template"


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / name).exists():
            return str(folder / name)
    pytest.fail(f"PostgreSQL's {name} is not installed: apt-get install postgresql (bash scripts/test does)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One throw-away PostgreSQL cluster (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.port = _free_port()
        self._names = itertools.count(1)
        self._admin = None
        self._run_as: list[str] = []
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail("running as root needs the 'postgres' user (apt-get install postgresql)")
            os.chown(root, account.pw_uid, account.pw_gid)
            self._run_as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self._run_as, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {done.stdout}\n{done.stderr}")

    def start(self) -> None:
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")  # fmt: skip
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 {_SERVER_OPTIONS}"
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options,
                  "-w", "-t", "60", "start")  # fmt: skip
        from sqlalchemy import create_engine

        self._admin = create_engine(
            self.url("postgres"), isolation_level="AUTOCOMMIT", poolclass=_null_pool()
        )
        self._make_template()

    def _make_template(self) -> None:
        from broadcaster.db import create_schema, make_engine

        self._execute(f'CREATE DATABASE "{_TEMPLATE}" TEMPLATE template0')
        engine = make_engine(self.url(_TEMPLATE))
        try:
            create_schema(engine)
        finally:
            engine.dispose()  # a template must have no open connection to be copied

    def url(self, name: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def _execute(self, statement: str) -> None:
        from sqlalchemy import text

        assert self._admin is not None
        with self._admin.connect() as conn:
            conn.execute(text(statement))

    def create_database(self, *, schema: bool = False) -> str:
        """A fresh database: empty, or (``schema``) a copy of one at the latest schema."""
        name = f"loa_test_{next(self._names)}"
        self._execute(f'CREATE DATABASE "{name}" TEMPLATE {_TEMPLATE if schema else "template0"}')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # ends connections left open

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.dispose()
        if (self.data / "postmaster.pid").exists():
            self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def log(self) -> str:
        try:
            return (self.root / "server.log").read_text(errors="replace")
        except OSError:
            return ""


def _null_pool() -> type:
    from sqlalchemy.pool import NullPool

    return NullPool


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    root = Path(tempfile.mkdtemp(prefix="loa-postgres-"))
    root.chmod(0o755)
    server = PostgresServer(root)
    try:
        server.start()
        yield server
    except RuntimeError as exc:
        pytest.fail(f"PostgreSQL did not start: {exc}\n{server.log()[-2000:]}")
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


# ----------------------------------------------------------------------- the database switch


class _Backend:
    """The backend of the running test (set by the ``database`` fixture), and the engines that
    connected during it (disposed after the test: a psycopg connection still pooled by an engine
    a test forgot to dispose warns when it is garbage-collected, in some later test)."""

    server: PostgresServer | None = None
    urls: dict[str, str] = {}
    engines: weakref.WeakSet[Any] = weakref.WeakSet()


def _collect_leaked_connections() -> int:
    """Collect garbage now and count the psycopg connections it found still open."""
    import gc
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    return sum(1 for w in caught if "psycopg" in str(w.message) or "Connection" in str(w.message))


def _remember_engine(conn: Any) -> None:
    if _Backend.server is not None:
        _Backend.engines.add(conn.engine)


def db_url_for(path: Path, *, empty: bool = False) -> str:
    """The database a test opens at ``path``: the SQLite file, or under ``database[postgresql]``
    a fresh PostgreSQL database for that path (the same one each time the test asks for it),
    at the latest schema unless ``empty``."""
    server = _Backend.server
    if server is None:
        return f"sqlite:///{Path(path).resolve()}"
    key = str(Path(path).resolve())
    if key not in _Backend.urls:
        _Backend.urls[key] = server.create_database(schema=not empty)
    return _Backend.urls[key]


def on_postgres() -> bool:
    return _Backend.server is not None


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test on SQLite, then on PostgreSQL (see the module docstring)."""
    if request.param == "sqlite":
        yield "sqlite"
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    server: PostgresServer = request.getfixturevalue("postgres")
    _Backend.server, _Backend.urls = server, {}
    event.listen(Engine, "engine_connect", _remember_engine)
    try:
        yield "postgresql"
    finally:
        event.remove(Engine, "engine_connect", _remember_engine)
        urls = list(_Backend.urls.values())
        _Backend.server, _Backend.urls = None, {}
        for engine in list(_Backend.engines):
            engine.dispose()
        _Backend.engines = weakref.WeakSet()
        leaked = _collect_leaked_connections()
        for url in urls:
            server.drop_database(url)
        if leaked:
            # Said here, by the test that left them, not by whichever later test the collector
            # happens to run in (filterwarnings = error turns the collector's warning into a failure).
            pytest.fail(f"this test left {leaked} PostgreSQL connection(s) open (never closed or disposed)")

"""Real databases for the store's tests: a SQLite file, and a PostgreSQL server of our own.

PostgreSQL is found in this order:
1. ``WABOT_TEST_POSTGRES_URL`` (a server you run; each test gets a fresh database on it);
2. testcontainers' PostgresContainer when a Docker engine answers;
3. a throwaway cluster from Debian's ``postgresql`` package (``initdb`` + ``pg_ctl`` under
   ``/usr/lib/postgresql/<version>/bin``) in a temp folder, on a free 127.0.0.1 port with its
   unix socket in that folder, stopped at the end. PostgreSQL refuses to run as root, so as
   root (CI) the cluster runs as the ``postgres`` user the package creates.

The server and store helpers live in ``pipeline.testing`` (benchmarks use them too). Import
the fixtures into a test module (``from tests.databases import database_fixture,
postgres_server_fixture``); tests then ask for ``database`` and ``postgres_server``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from pipeline.testing.postgres import PostgresNotInstalledError, PostgresServer, create_database
from pipeline.testing.postgres import throwaway_postgres as _throwaway_postgres
from pipeline.testing.store import TABLES, archive_lag, reset_group, snapshot, wait_for
from tests.conftest import docker_answers

__all__ = [
    "TABLES",
    "Database",
    "PostgresServer",
    "archive_lag",
    "database_fixture",
    "postgres_server_fixture",
    "reset_group",
    "snapshot",
    "throwaway_postgres",
    "wait_for",
]


@dataclass(frozen=True)
class Database:
    """One empty database: ``kind`` ("sqlite" or "postgresql") and its WABOT_DATABASE_URL."""

    kind: str
    url: str


@dataclass(frozen=True)
class _Given:
    """A PostgreSQL server someone else runs (a URL to its maintenance database)."""

    base: str

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        asyncio.run(create_database(self.base, name))
        return make_url(self.base).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session", name="postgres_server")
def postgres_server_fixture() -> Iterator[PostgresServer | _Given]:
    """The session's PostgreSQL server (see the module docstring for where it comes from)."""
    given = os.environ.get("WABOT_TEST_POSTGRES_URL")
    if given:
        url = make_url(given).set(drivername="postgresql+asyncpg")
        yield _Given(url.render_as_string(hide_password=False))
        return
    if docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:17", driver="asyncpg") as container:
            yield _Given(container.get_connection_url())
        return
    with throwaway_postgres() as server:
        yield server


@contextlib.contextmanager
def throwaway_postgres(*, fsync: bool = False) -> Iterator[PostgresServer]:
    """:func:`pipeline.testing.postgres.throwaway_postgres`, skipping the test where Debian's
    ``postgresql`` package is missing."""
    try:
        with _throwaway_postgres(fsync=fsync) as server:
            yield server
    except PostgresNotInstalledError as exc:
        pytest.skip(str(exc))


@pytest.fixture(params=["sqlite", "postgresql"], name="database")
def database_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    """An empty database, once on SQLite (a file in tmp_path) and once on PostgreSQL."""
    if request.param == "sqlite":
        return Database("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'store' / 'wabot.db'}")
    server = request.getfixturevalue("postgres_server")
    return Database("postgresql", server.create_database())

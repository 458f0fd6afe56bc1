"""Real databases for the store's tests: a SQLite file, and a PostgreSQL server of our own.

PostgreSQL is found in this order:
1. ``WABOT_TEST_POSTGRES_URL`` (a server you run; each test gets a fresh database on it);
2. testcontainers' PostgresContainer when a Docker engine answers;
3. a throwaway cluster from Debian's ``postgresql`` package (``initdb`` + ``pg_ctl`` under
   ``/usr/lib/postgresql/<version>/bin``) in a temp folder, on a free 127.0.0.1 port with its
   unix socket in that folder, stopped at the end. PostgreSQL refuses to run as root, so as
   root (CI) the cluster runs as the ``postgres`` user the package creates.

Import the fixtures into a test module (``from tests.databases import database_fixture,
postgres_server_fixture``); tests then ask for ``database`` and ``postgres_server``.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import select
from sqlalchemy.engine import make_url

from pipeline.broker import free_port

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

#: Every table of the store and its primary key columns, for reading it back in order.
TABLES = {
    "chats": ("chat_id",),
    "messages": ("id",),
    "turns": ("turn_id",),
    "turn_messages": ("turn_id", "position"),
    "llm_calls": ("call_id",),
    "decisions": ("decision_id",),
    "gateway_events": ("event_id",),
}


@dataclass(frozen=True)
class Database:
    """One empty database: ``kind`` ("sqlite" or "postgresql") and its WABOT_DATABASE_URL."""

    kind: str
    url: str


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"PostgreSQL's {name} is not installed (apt-get install postgresql)")
    return path


class PostgresServer:
    """A PostgreSQL cluster in ``folder`` on 127.0.0.1:``port``, superuser ``wabot``, trust
    auth (it listens on the loopback only). :meth:`stop` and :meth:`start` again keep the data,
    which is how tests take the database down and bring it back."""

    def __init__(self, folder: Path, *, fsync: bool = False) -> None:
        self.folder = folder
        self.fsync = fsync
        self.data = folder / "data"
        self.socket_dir = folder / "socket"
        self.log = folder / "postgres.log"
        self.port = free_port()
        self.user = "wabot"
        self._as: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
            for path in (folder, self.socket_dir):
                path.mkdir(exist_ok=True)
                os.chown(path, owner.pw_uid, owner.pw_gid)
        else:
            self.socket_dir.mkdir(exist_ok=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://{self.user}@127.0.0.1:{self.port}/{database}"

    def init(self) -> PostgresServer:
        self._run(
            _pg_bin("initdb"),
            "-D",
            str(self.data),
            "-U",
            self.user,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        return self

    def start(self) -> PostgresServer:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories="
            f"{self.socket_dir} -c fsync={'on' if self.fsync else 'off'} -c max_connections=50"
        )
        self._run(
            _pg_bin("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "start",
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``pg_ctl stop`` signals the postmaster by its pid file's PID)."""
        if (self.data / "postmaster.pid").exists():
            self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def create_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        asyncio.run(_create_database(self.url(), name))
        return self.url(name)

    def _run(self, *command: str) -> None:
        result = subprocess.run(
            [*self._as, *command],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.folder,
        )
        if result.returncode != 0:
            tail = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}): "
                f"{result.stdout}{result.stderr}\n{tail}"
            )


@contextlib.contextmanager
def throwaway_postgres(*, fsync: bool = False) -> Iterator[PostgresServer]:
    """A PostgreSQL cluster of its own for one test (it may stop and start it); ``fsync``
    off unless asked (tests need no durability across power cuts; benchmarks do)."""
    folder = Path(tempfile.mkdtemp(prefix="wabot-pg-"))
    server = PostgresServer(folder, fsync=fsync)
    try:
        server.init().start()
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)


def _docker_answers() -> bool:
    try:
        import docker

        return bool(docker.from_env(timeout=3).ping())
    except Exception:
        return False


@dataclass(frozen=True)
class _Given:
    """A PostgreSQL server someone else runs (a URL to its maintenance database)."""

    base: str

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        asyncio.run(_create_database(self.base, name))
        return make_url(self.base).set(database=name).render_as_string(hide_password=False)


async def _create_database(base: str, name: str) -> None:
    import asyncpg

    url = make_url(base)
    connection = await asyncpg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        database=url.database or "postgres",
    )
    try:
        await connection.execute(f"CREATE DATABASE {name}")
    finally:
        await connection.close()


@pytest.fixture(scope="session", name="postgres_server")
def postgres_server_fixture() -> Iterator[PostgresServer | _Given]:
    """The session's PostgreSQL server (see the module docstring for where it comes from)."""
    given = os.environ.get("WABOT_TEST_POSTGRES_URL")
    if given:
        url = make_url(given).set(drivername="postgresql+asyncpg")
        yield _Given(url.render_as_string(hide_password=False))
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:17", driver="asyncpg") as container:
            yield _Given(container.get_connection_url())
        return
    with throwaway_postgres() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"], name="database")
def database_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    """An empty database, once on SQLite (a file in tmp_path) and once on PostgreSQL."""
    if request.param == "sqlite":
        return Database("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'store' / 'wabot.db'}")
    server = request.getfixturevalue("postgres_server")
    return Database("postgresql", server.create_database())


def wait_for(predicate: object, timeout: float, interval: float = 0.2) -> None:
    """Poll ``predicate()`` until true; AssertionError after ``timeout`` seconds."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"not true after {timeout}s: {predicate}")


async def snapshot(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, in primary-key order (a fresh engine, disposed after)."""
    from pipeline.store.engine import create_engine
    from pipeline.store.models import Base

    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            tables = {}
            for name, keys in TABLES.items():
                table = Base.metadata.tables[name]
                query = select(table).order_by(*(table.c[key] for key in keys))
                result = await connection.execute(query)
                tables[name] = [dict(row) for row in result.mappings()]
            return tables
    finally:
        await engine.dispose()


async def archive_lag(bootstrap: str, group: str, topics: list[str]) -> int:
    """Records of ``topics`` the consumer ``group`` has not committed yet (0: caught up)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await consumer.start()
    await admin.start()
    try:
        tps = [
            TopicPartition(topic, p)
            for topic in topics
            for p in (consumer.partitions_for_topic(topic) or await _partitions(consumer, topic))
        ]
        ends = await consumer.end_offsets(tps)
        committed = await admin.list_consumer_group_offsets(group)
        return sum(
            max(0, end - (committed[tp].offset if tp in committed else 0))
            for tp, end in ends.items()
        )
    finally:
        await admin.close()
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    return consumer.partitions_for_topic(topic) or set()


async def reset_group(bootstrap: str, group: str, topics: list[str]) -> None:
    """Commit offset 0 on every partition of ``topics`` for ``group`` (no member may be in
    it): its next consumer reads everything again."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [
            TopicPartition(topic, p)
            for topic in topics
            for p in (consumer.partitions_for_topic(topic) or await _partitions(consumer, topic))
        ]
        consumer.assign(tps)
        await consumer.commit({tp: 0 for tp in tps})
    finally:
        await consumer.stop()

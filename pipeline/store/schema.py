"""The store's schema version: Alembic migrations run from Python, on the async engine.

The migration scripts live in ``pipeline/store/migrations`` (installed with the package);
there is no ``alembic.ini``: :func:`alembic_config` points Alembic at them. ``faust -A
pipeline db upgrade``, the archive at worker start-up and the API all call :func:`upgrade`,
which holds a lock (an advisory lock on PostgreSQL, a file lock beside a SQLite file, and a
lock within the process), so several of them starting at once migrate once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["MIGRATIONS", "SchemaState", "alembic_config", "head_revision", "state", "upgrade"]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

#: pg_advisory_xact_lock key of migrations ("wabot" in ASCII).
_LOCK_KEY = 0x776162_6F74


@dataclass(frozen=True)
class SchemaState:
    """Where a database's schema is: ``current`` (None: no schema yet) and the code's ``head``."""

    current: str | None
    head: str

    @property
    def behind(self) -> bool:
        return self.current != self.head


def alembic_config() -> Config:
    """Alembic's configuration, without a file: the packaged scripts, no logging setup."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    """The newest revision of the migration scripts."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, f"no migration scripts in {MIGRATIONS}"
    return head


async def state(engine: AsyncEngine) -> SchemaState:
    """The database's revision and the code's head. Raises SQLAlchemy's errors (``OSError``
    too for asyncpg) when the database cannot be reached."""
    async with engine.connect() as connection:
        current = await connection.run_sync(_current)
    return SchemaState(current, head_revision())


async def upgrade(engine: AsyncEngine, revision: str = "head") -> SchemaState:
    """Migrate the database to ``revision`` in one transaction; return the state before.

    Migrations never overlap: within a process (Alembic's ``context`` is module-global, so
    two at once corrupt each other) an asyncio lock, between processes PostgreSQL's advisory
    lock or, for a SQLite file, an exclusive ``flock`` on ``<file>.migrate-lock`` (SQLite runs
    DDL outside the migration's transaction). The one that waited finds the schema at head.
    """
    async with _process_lock(), _sqlite_file_lock(engine):
        return await _upgrade_locked(engine, revision)


async def _upgrade_locked(engine: AsyncEngine, revision: str) -> SchemaState:
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        before = await connection.run_sync(_current)
        await connection.run_sync(_upgrade, revision)
    return SchemaState(before, head_revision())


_LOCKS: dict[int, asyncio.Lock] = {}


def _process_lock() -> asyncio.Lock:
    """This event loop's migration lock (an asyncio.Lock belongs to one loop)."""
    loop = asyncio.get_running_loop()
    lock = _LOCKS.get(id(loop))
    if lock is None:
        lock = _LOCKS[id(loop)] = asyncio.Lock()
    return lock


@contextlib.asynccontextmanager
async def _sqlite_file_lock(engine: AsyncEngine) -> AsyncIterator[None]:
    """Hold ``flock(LOCK_EX)`` on ``<database file>.migrate-lock``; nothing for other
    databases or an in-memory SQLite. Polls without blocking the event loop."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    path = Path(database + ".migrate-lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _upgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def new_revision(engine: AsyncEngine, message: str, rev_id: str | None = None) -> None:
    """Write a migration script for what the models changed, compared with a database at head
    (developers: ``python -m pipeline.store.schema "what changed"``; review the script)."""
    await upgrade(engine)
    async with engine.begin() as connection:
        await connection.run_sync(_revision, message, rev_id)


def _revision(connection: Connection, message: str, rev_id: str | None) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.revision(config, message, autogenerate=True, rev_id=rev_id)


if __name__ == "__main__":
    import asyncio
    import sys
    import tempfile

    from pipeline.store.engine import create_engine

    async def _main(message: str) -> None:
        with tempfile.TemporaryDirectory() as folder:
            engine = create_engine(f"sqlite+aiosqlite:///{folder}/compare.db")
            try:
                await new_revision(engine, message)
            finally:
                await engine.dispose()

    asyncio.run(_main(" ".join(sys.argv[1:]) or "schema change"))

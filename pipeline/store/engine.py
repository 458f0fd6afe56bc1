"""The store's database: its URL from the settings, and the async engine for it.

``WABOT_DATABASE_URL`` empty means SQLite through aiosqlite in ``<WABOT_DATA_DIR>/wabot.db``;
``postgresql+asyncpg://user:password@host:5432/db`` means PostgreSQL through asyncpg
(``postgresql://`` and ``postgres://`` are read as that, ``sqlite://`` as aiosqlite).
A URL is shown in logs without its password (:func:`shown`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

__all__ = ["DEFAULT_FILE", "create_engine", "database_url", "normalized_url", "shown"]

#: The SQLite file under the data folder when no URL is configured.
DEFAULT_FILE = "wabot.db"

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}

#: Milliseconds a SQLite writer waits for another one's lock before "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 5000


def normalized_url(value: str) -> str:
    """``value`` with the async driver this project uses; raises ``ValueError`` naming what
    is wrong (never echoing the URL, which may hold a password)."""
    try:
        url = make_url(value)
    except ArgumentError:
        raise ValueError(
            "not a database URL; use sqlite+aiosqlite:///path/to/file.db or "
            "postgresql+asyncpg://user:password@host:5432/database"
        ) from None
    driver = _DRIVERS.get(url.drivername)
    if driver is None:
        raise ValueError(
            f"unsupported database {url.drivername!r}; use sqlite+aiosqlite:///path/to/file.db "
            "or postgresql+asyncpg://user:password@host:5432/database"
        )
    if driver.startswith("sqlite") and not url.database:
        raise ValueError("a SQLite URL needs a file (in-memory databases are not kept)")
    return url.set(drivername=driver).render_as_string(hide_password=False)


def database_url(configured: str, data_dir: Path) -> URL:
    """The URL to connect to: ``configured`` (a normalized WABOT_DATABASE_URL) or the default
    SQLite file under ``data_dir``."""
    if configured:
        return make_url(configured)
    path = (data_dir / DEFAULT_FILE).resolve()
    return URL.create("sqlite+aiosqlite", database=str(path))


def shown(url: URL | str) -> str:
    """The URL for logs and messages: the password masked."""
    return make_url(url).render_as_string(hide_password=True)


def create_engine(url: URL | str, **kwargs: Any) -> AsyncEngine:
    """An async engine for ``url``. SQLite gets its folder created, WAL (readers do not block
    the archive's writes) and a busy timeout of :data:`SQLITE_BUSY_TIMEOUT_MS`; PostgreSQL
    connections are checked before use, so a restarted server costs one failed batch, not a
    pool of dead connections.

    ``hide_parameters``: statements' parameters (message texts, search words) appear neither
    in SQLAlchemy's log lines nor in the text of its errors, which the store's callers log."""
    url = make_url(url)
    kwargs.setdefault("hide_parameters", True)
    if url.drivername.startswith("sqlite"):
        if url.database:
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()

"""The archive's sink: batches of records -> rows, one transaction each, on the async engine.

:class:`StoreWriter` implements ``agents.archive.ArchiveSink``. It tells an unreachable
database (:class:`agents.archive.StoreUnavailable`: the archive retries the same batch) from
one that refuses a record (any other exception: the archive isolates the record and
dead-letters it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine

from agents.archive import Archived, StoreUnavailable
from pipeline.store import schema
from pipeline.store.engine import create_engine, shown
from pipeline.store.rows import build_rows
from pipeline.store.upserts import write_rows

log = logging.getLogger(__name__)

__all__ = ["StoreWriter", "is_unavailable"]


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` says the database cannot be reached or used now (connection refused
    or lost, server shutting down, SQLite file locked or read-only), not that it refuses a
    value: worth retrying the same batch later."""
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeoutError | OSError):
        return True
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    # asyncpg's "server is shutting down" and "cannot connect now" arrive as plain DBAPIError
    # wrapping a PostgresError with a class 57P (operator intervention) or 08 SQLSTATE.
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None) or getattr(
        getattr(getattr(exc, "orig", None), "__cause__", None), "sqlstate", None
    )
    return isinstance(sqlstate, str) and sqlstate[:2] in ("08", "57", "53")


class StoreWriter:
    """Writes archived records to the database at ``url``; migrates it in :meth:`prepare`."""

    def __init__(self, url: URL | str, *, migrate: bool = True) -> None:
        self.url = url
        self.migrate = migrate
        self.engine: AsyncEngine = create_engine(url)

    async def prepare(self) -> None:
        """Upgrade the schema when it is behind (``migrate``), else check it is at head."""
        try:
            found = await schema.state(self.engine)
            if found.behind and self.migrate:
                await schema.upgrade(self.engine)
                log.info(
                    "store %s: schema upgraded from %s to %s",
                    shown(self.url),
                    found.current or "empty",
                    found.head,
                )
            elif found.behind:
                raise RuntimeError(
                    f"the store's schema is at {found.current or 'nothing'}, the code needs "
                    f"{found.head}: run `faust -A pipeline db upgrade`"
                )
            else:
                log.info("store %s: schema at %s", shown(self.url), found.head)
        except Exception as exc:
            if is_unavailable(exc):
                raise StoreUnavailable(_describe(exc)) from exc
            raise

    async def write(self, batch: Sequence[Archived]) -> None:
        """Upsert ``batch`` in one transaction (see ``pipeline/store/upserts.py``)."""
        rows = build_rows(batch)
        try:
            async with self.engine.begin() as connection:
                await write_rows(connection, rows)
        except Exception as exc:
            if is_unavailable(exc):
                raise StoreUnavailable(_describe(exc)) from exc
            raise

    async def close(self) -> None:
        await self.engine.dispose()


def _describe(exc: BaseException) -> str:
    """One line: the driver's own message, without SQLAlchemy's statement and parameters."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else ""
    return f"{type(orig).__name__}: {text}" if text else type(orig).__name__

"""Alembic's environment for the store: runs migrations on the connection it is given.

:func:`pipeline.store.schema.upgrade` passes its connection (``config.attributes``); the
Alembic run any other way connects to ``WABOT_DATABASE_URL`` (or the default SQLite file)
itself. A new migration: change ``pipeline/store/models.py``, then
``python -m pipeline.store.schema "what changed"`` writes the script to review.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from pipeline.store.models import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: later migrations copy and move its tables.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_on_own_engine() -> None:
    from pipeline.config.settings import load_settings
    from pipeline.store.engine import create_engine, database_url

    settings = load_settings()
    url = database_url(settings.database_url.get_secret_value(), settings.data_dir)
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


given = context.config.attributes.get("connection")
if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run `faust -A pipeline db`")
elif given is not None:
    _run(given)
else:
    asyncio.run(_run_on_own_engine())

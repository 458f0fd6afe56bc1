"""Puts the archive into the worker (its own consumer group, the store, a task) or into a
process of its own (``pipeline/store/archive_process.py``)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from agents.archive import ArchiveConfig, Archiver, Kind
from pipeline.config.settings import Settings
from pipeline.store.engine import database_url, shown
from pipeline.store.writer import StoreWriter

log = logging.getLogger(__name__)

__all__ = ["archive_config", "archive_group", "archive_topics", "guarded", "install_archive"]


def archive_topics(settings: Settings) -> dict[str, Kind]:
    """Topic name -> what it carries, for every topic the archive reads."""
    return {
        settings.topic("inbound"): "inbound",
        settings.topic("outbound"): "outbound",
        settings.topic("delivery"): "delivery",
        settings.topic("llm_calls"): "llm_call",
        settings.topic("events"): "event",
        settings.topic("decisions"): "decision",
        settings.topic("turns"): "turn",
    }


def archive_group(settings: Settings) -> str:
    """The archive's consumer group: apart from the app's, so the bot never waits for it."""
    return f"{settings.app_id}-archive"


def archive_config(settings: Settings) -> ArchiveConfig:
    """The archive's consumer and batching, from ``settings`` (the worker's and ``faust -A
    pipeline archive``'s alike)."""
    return ArchiveConfig(
        bootstrap_servers=settings.bootstrap_servers,
        topics=archive_topics(settings),
        group=archive_group(settings),
        batch_size=settings.archive_batch_size,
        retry_max_s=settings.archive_retry_max_s,
        session_timeout_s=settings.broker_session_timeout,
        heartbeat_interval_s=settings.broker_heartbeat_interval,
    )


def install_archive(app: Any, settings: Settings) -> None:
    """Run the archive in ``app``'s worker: migrate the store when behind, then archive."""
    url = database_url(settings.database_url.get_secret_value(), settings.data_dir)
    app.task(
        guarded(
            archive_config(settings),
            StoreWriter(url),
            app.metrics.sending(app.topics_.dlq, "archive"),
            lambda topic, n: app.metrics.records(topic, "archive", "in").inc(n),
            shown(url),
        )
    )


def guarded(
    config: ArchiveConfig,
    writer: StoreWriter,
    dlq: Any,
    records_in: Callable[[str, int], None],
    where: str,
) -> Callable[[], Awaitable[None]]:
    """The archive as a coroutine function: runs :class:`Archiver` until cancelled; a store
    it cannot use (a schema newer than this code, say) is logged and ends it, not the
    process; the store's connections are closed either way."""
    archiver = Archiver(config, writer, dlq, records_in)

    async def archive() -> None:
        try:
            await archiver.run()
        except Exception:
            # Nothing was acked, so it resumes from there when fixed.
            log.exception("archive stopped: cannot archive into %s", where)
        finally:
            await writer.close()

    return archive

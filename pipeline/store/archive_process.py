"""``faust -A pipeline archive``: the archive in a process of its own.

By default the worker runs the archive (``agents/archive.py``) on its own event loop, beside
the agents: on a machine with a core to spare, that is CPU the bot's turns wait behind (the
archive decodes every record of seven topics again and writes them through SQLAlchemy; 8% of
the worker's CPU in ``bench/README.md``, "Per-turn cost"). With ``WABOT_ARCHIVE_ENABLED=false``
for the worker and this command beside it, the archive runs here instead, in the same
consumer group (``<WABOT_APP_ID>-archive``), with the same store, batches, retries and
dead letters: the same code, only another process. Several of these share the archived
topics' partitions, as workers do; a worker that still archives shares them too.

Dead letters go to the DLQ through a plain aiokafka producer (``acks=all``, awaited), since
this process has no Faust producer. With ``--metrics-port``, ``/metrics`` on
``WABOT_WEB_HOST`` serves the archive's ``records_total{agent="archive"}``,
``dead_letters_total{agent="archive"}`` and ``store_lag_records`` (prometheus_client's own
HTTP server).

It lowers its own CPU priority (``--nice``, 10 by default: ``os.nice``): the archive may lag
by a batch, the bot's turns may not. On a machine whose cores the worker and the broker
already share, an archive at the same priority takes the CPU in bursts (a batch of 500
records decoded and written) and the replies' p99 latency at 50 messages a second went from
74 ms (no archive) to 400 ms; at nice 10 it was 75 ms (``bench/README.md``).

A broker that does not answer within ``WABOT_BROKER_START_TIMEOUT`` is one line on stderr
and exit code 2; a store the archive cannot use (its schema newer than this code) is logged
with its reason, then one line and exit code 1. A store that is down is waited for, as in
the worker.

Ctrl-C or SIGTERM stops it between batches' awaits: a batch whose transaction committed but
whose offsets did not is read again by the next archive and upserted to the same rows.
"""

from __future__ import annotations

import asyncio
import logging
import logging.config
import os
import signal
import sys
import time
from typing import Any

import click
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from prometheus_client import CollectorRegistry, start_http_server

from pipeline.config.settings import Settings
from pipeline.observability.faust_metrics import metric_prefix
from pipeline.observability.pipeline_metrics import PipelineMetrics, StoreLagWatch
from pipeline.store.engine import database_url, shown
from pipeline.store.wiring import archive_config, archive_group, archive_topics, guarded
from pipeline.store.writer import StoreWriter

__all__ = ["DeadLetterProducer", "run_archive", "serve_archive"]

log = logging.getLogger(__name__)


class ArchiveError(Exception):
    """Why the archive process ends, in one line; ``exit_code`` is what the process returns:
    2 when the broker did not answer within WABOT_BROKER_START_TIMEOUT, 1 when the archive
    stopped on an error it cannot retry (a store newer than this code, say)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class DeadLetterProducer:
    """The dead-letter topic for a process without Faust: ``await send(key=, value=)`` with a
    ``schemas.DeadLetter`` returns once the broker has the record (raises aiokafka's errors,
    which ``agents.dead_letters.dead_letter`` logs and swallows)."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic

    def get_topic_name(self) -> str:
        """The topic's name (as a Faust topic answers it, for the metrics' wrapper)."""
        return self.topic

    async def send(self, *, key: bytes | None, value: Any) -> None:
        await self.producer.send_and_wait(
            self.topic, key=key, value=value.model_dump_json().encode()
        )


async def run_archive(settings: Settings, metrics_port: int | None = None) -> None:
    """Archive ``settings``' topics into its store until cancelled (then stops its consumer,
    producer and store connections). ``metrics_port``: serve /metrics there (None: don't)."""
    url = database_url(settings.database_url.get_secret_value(), settings.data_dir)
    metrics = PipelineMetrics(metric_prefix(settings.app_id), CollectorRegistry())
    metrics.set_topics(dlq=settings.topic("dlq"), delivery=settings.topic("delivery"))
    if metrics_port is not None:
        start_http_server(metrics_port, addr=settings.web_host, registry=metrics.registry)
        log.info("archive: /metrics on http://%s:%d", settings.web_host, metrics_port)
    lag = StoreLagWatch(
        metrics,
        settings.bootstrap_servers,
        archive_group(settings),
        archive_topics(settings),
    )
    producer = await _started_producer(settings)
    writer = StoreWriter(url)
    lag_task = asyncio.create_task(lag.run())
    try:
        await guarded(
            archive_config(settings),
            writer,
            metrics.sending(DeadLetterProducer(producer, settings.topic("dlq")), "archive"),
            lambda topic, n: metrics.records(topic, "archive", "in").inc(n),
            shown(url),
        )()
        # It returns only when the store cannot be used (logged above with the reason).
        raise ArchiveError(f"the archive stopped: cannot archive into {shown(url)}", 1)
    finally:
        lag_task.cancel()
        await asyncio.gather(lag_task, return_exceptions=True)
        await producer.stop()


async def _started_producer(settings: Settings) -> AIOKafkaProducer:
    """The dead letters' producer, once the broker answers (retried every second until
    ``broker_start_timeout``; raises :class:`ArchiveError` after)."""
    deadline = time.monotonic() + settings.broker_start_timeout
    while True:
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers, acks="all", request_timeout_ms=10_000
        )
        try:
            await producer.start()
            return producer
        except KafkaConnectionError as exc:
            await producer.stop()
            if time.monotonic() >= deadline:
                raise ArchiveError(
                    f"cannot reach the Kafka broker at {', '.join(settings.bootstrap_servers)} "
                    f"(WABOT_BROKER_URL) within {settings.broker_start_timeout:g} s: {exc}",
                    2,
                ) from exc
            await asyncio.sleep(1.0)


def serve_archive(settings: Settings, metrics_port: int | None, nice: int = 10) -> None:
    """Run :func:`run_archive` until Ctrl-C or SIGTERM (blocks), at ``nice`` more than the
    niceness it was started with (``os.nice``; 0 leaves it). The event loop is the one
    ``pipeline.use_event_loop`` installed when the app was imported (WABOT_EVENT_LOOP)."""
    from pipeline.observability.logs import logging_config

    logging.config.dictConfig(
        logging_config(settings.log_level, settings.log_format, settings.log_libraries)
    )
    if nice:
        log.info("archive: niceness %d (--nice)", os.nice(nice))

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, task.cancel)
        log.info("archive: its own process; Ctrl-C or SIGTERM stops it")
        try:
            await run_archive(settings, metrics_port)
        except asyncio.CancelledError:
            log.info("archive: stopped")

    try:
        asyncio.run(main())
    except ArchiveError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)

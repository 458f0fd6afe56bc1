"""Builds the one Faust app: settings in, topics, tables, agents, views and commands wired.

``faust -A pipeline worker`` imports :mod:`pipeline`, whose ``app`` is made here.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

import faust
from faust.sensors.prometheus import setup_prometheus_sensors

import agents.ping
import tables
from pipeline.logs import logging_config
from pipeline.settings import Settings
from pipeline.topic_setup import TopicSpec, cluster_id, ensure_topics, is_tansu
from pipeline.topics import Topics, declare_topics

log = logging.getLogger(__name__)

#: When this process imported the app: the zero of the reported time to ready.
PROCESS_STARTED = time.monotonic()


class PipelineApp(faust.App):
    """faust.App that knows when it is ready: group joined and tables recovered."""

    settings: Settings
    topics_: Topics
    ready_after: float | None = None

    @property
    def is_ready(self) -> bool:
        return self.ready_after is not None and not self.rebalancing

    async def on_first_start(self) -> None:
        await super().on_first_start()
        if is_tansu(await cluster_id(self.settings.bootstrap_servers)):
            # Tansu reports a partition's end offset as (base offset of its last batch) + 1,
            # so after a multi-record batch Faust's table recovery stops short and a table
            # loses its newest values. One record per batch keeps end offsets exact; it
            # costs throughput, which the dev broker can spare. (Apache Kafka is unaffected.)
            self.producer.max_batch_size = 1
            log.warning(
                "embedded Tansu broker detected: producing one record per batch "
                "(Tansu miscounts end offsets of multi-record batches)"
            )
        await ensure_topics(
            self.settings.bootstrap_servers, self.topic_specs(), self.settings.broker_start_timeout
        )

    def topic_specs(self) -> list[TopicSpec]:
        """Every topic the app reads or writes, and every table's changelog."""
        replication = self.settings.topic_replication_factor
        specs = [
            TopicSpec(t.get_topic_name(), t.partitions or self.conf.topic_partitions, replication)
            for t in self.topics_.all()
        ]
        for table in self.tables.values():
            specs.append(
                TopicSpec(
                    table.changelog_topic.get_topic_name(),
                    table.partitions or self.conf.topic_partitions,
                    replication,
                    {"cleanup.policy": "compact"},
                )
            )
        return specs

    def on_rebalance_end(self) -> None:
        super().on_rebalance_end()
        if self.ready_after is None and self.rebalancing is False:
            self.ready_after = time.monotonic() - PROCESS_STARTED
            log.info(
                "worker ready in %.1fs (group joined, tables recovered) on %s",
                self.ready_after,
                self.settings.broker_url,
            )


class PipelineWorker(faust.Worker):
    """faust.Worker whose log level comes from WABOT_LOG_LEVEL, not only from ``-l``.

    Faust's terminal spinner raises the log handler to WARN when ``-l`` is not given,
    which would hide the "worker ready" line; our log lines are the progress report.
    """

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None


def create_app(settings: Settings) -> PipelineApp:
    # Faust creates only the last level of its datadir.
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = PipelineApp(
        settings.app_id,
        broker=settings.broker_url,
        store=settings.store,
        datadir=str(settings.data_dir / "worker"),
        autodiscover=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        broker_session_timeout=settings.broker_session_timeout,
        broker_heartbeat_interval=settings.broker_heartbeat_interval,
        broker_rebalance_timeout=settings.broker_rebalance_timeout,
        consumer_auto_offset_reset="earliest",
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        logging_config=logging_config(settings.log_level, settings.log_format),
        Worker=PipelineWorker,
    )
    app.settings = settings
    app.topics_ = declare_topics(app, settings)
    ping_counts = tables.ping_counts(app, settings.topic_partitions)
    agents.ping.register(
        app, app.topics_.ping, app.topics_.pong, ping_counts, worker=socket.gethostname()
    )

    setup_prometheus_sensors(app, name_prefix=settings.app_id.replace("-", "_"))
    _views(app)
    return app


def _views(app: PipelineApp) -> None:
    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        ready = app.is_ready
        body = {"ready": ready, "ready_after_s": app.ready_after, "app_id": app.conf.id}
        return web.json(body, status=200 if ready else 503)

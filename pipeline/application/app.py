"""The Faust app class: settings, topics and metrics attached, ready when tables are.

:class:`PipelineApp` is ``faust.App`` that knows when it is ready (group joined, tables
recovered), creates every topic and changelog with its configs at first start, starts the
LLM client of the worker and gives tables on RocksDB bounded memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import faust

from pipeline.broker.readiness import metadata_ok
from pipeline.config.settings import Settings
from pipeline.gateway.service import Gateway
from pipeline.kafka.setup import (
    TopicSpec,
    cluster_id,
    ensure_topics,
    is_tansu,
    wait_for_coordinator,
)
from pipeline.kafka.topics import Topics
from pipeline.kafka.transport import TunedTransport
from pipeline.llm.client import LLMClient
from pipeline.llm.proxy import LLMProxy
from pipeline.observability.outage import BROKER_OUTAGE, watch_broker
from pipeline.observability.pipeline_metrics import (
    PipelineMetrics,
)

log = logging.getLogger(__name__)

#: RocksDB options of every table when WABOT_STORE=rocksdb://, in bytes (faust's
#: ``RocksDBOptions``; the names are RocksDB's). Faust opens a database per table and
#: partition and gives each one 64 MiB write buffers (up to 3) and a 2 GiB block cache:
#: with 8 partitions and a handful of busy tables, a bound of several GiB that a long-running
#: worker with many chats can reach. These cap each database at 8 MiB of memtables and an
#: 8 MiB cache; what does not fit is read from RocksDB's files.
ROCKSDB_OPTIONS: dict[str, int] = {
    "write_buffer_size": 4 << 20,
    "max_write_buffer_number": 2,
    "block_cache_size": 8 << 20,
    "block_cache_compressed_size": 0,
}

#: When this process imported the app: the zero of the reported time to ready.
PROCESS_STARTED = time.monotonic()


class PipelineApp(faust.App):
    """faust.App that knows when it is ready: group joined and tables recovered."""

    settings: Settings
    topics_: Topics
    #: The pipeline's own metrics (pipeline/observability/pipeline_metrics.py).
    metrics: PipelineMetrics
    ready_after: float | None = None
    #: None in the gateway's app, which calls no LLM.
    llm: LLMProxy | None = None
    gateway: Gateway | None = None
    #: Called synchronously when a rebalance starts, before Faust flushes and commits.
    rebalance_hooks: list[Callable[[], None]]
    #: Called once, synchronously, when the worker is first ready (after its log line).
    ready_hooks: list[Callable[[], None]]
    #: Topics a consumer group with no committed offset starts reading that many seconds
    #: back, not at the beginning (see pipeline/kafka/transport.py).
    recent_start: dict[str, float]
    #: Topics declared outside ``topics_`` (the gateway's lid pairs) that the app creates.
    extra_topics: list[Any]

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
            log.info(
                "embedded Tansu broker detected: producing one record per batch "
                "(Tansu miscounts end offsets of multi-record batches)"
            )
        await ensure_topics(
            self.settings.bootstrap_servers, self.topic_specs(), self.settings.broker_start_timeout
        )
        await wait_for_coordinator(
            self.settings.bootstrap_servers, self.conf.id, self.settings.broker_start_timeout
        )
        BROKER_OUTAGE.broker = f"the broker at {','.join(self.settings.bootstrap_servers)}"
        self.add_future(
            watch_broker(lambda: metadata_ok(",".join(self.settings.bootstrap_servers)))
        )
        if self.llm is not None:
            await self._start_llm(self.llm)

    async def _start_llm(self, llm: LLMProxy) -> None:
        s = self.settings
        urls = [s.llm_base_url, *s.llm_fallback_base_urls]
        llm.client = LLMClient(
            urls,
            api_key=s.llm_api_key,
            model=s.llm_model,
            timeout_s=s.llm_timeout_s,
            max_tokens=s.llm_max_tokens,
            temperature=s.llm_temperature,
            retries=s.llm_retries,
            backoff_s=s.llm_backoff_s,
            backoff_max_s=s.llm_backoff_max_s,
            fallback_reply=s.llm_fallback_reply,
            max_message_chars=s.llm_max_message_chars,
        )
        log.info("LLM: model %s at %s", s.llm_model, ", ".join(urls))
        # One look at each endpoint, so a wrong URL or key shows at start, not as fallback
        # replies later; the worker starts anyway (the endpoint may come up after it).
        for url, problem in (await llm.client.check()).items():
            log.warning(
                "LLM endpoint %s does not answer GET /models (%s); turns get the fallback "
                "reply until it does",
                url,
                problem,
            )

    async def on_stop(self) -> None:
        await super().on_stop()
        if self.llm is not None and self.llm.client is not None:
            await self.llm.client.close()

    def topic_specs(self) -> list[TopicSpec]:
        """Every topic the app reads or writes, and every table's changelog, with the
        configs they are created with: ``retention.ms`` from WABOT_INBOUND_RETENTION_DAYS
        (wa.inbound) or WABOT_TOPIC_RETENTION_DAYS, changelogs ``cleanup.policy=compact``."""
        s = self.settings
        replication = s.topic_replication_factor
        specs = []
        for topic in [*self.topics_.all(), *self.extra_topics]:
            name = topic.get_topic_name()
            # wa.inbound is what replays read, so it is kept longer than the rest.
            inbound = name == s.topic("inbound")
            days = s.inbound_retention_days if inbound else s.topic_retention_days
            specs.append(
                TopicSpec(
                    name,
                    topic.partitions or self.conf.topic_partitions,
                    replication,
                    {"retention.ms": str(round(days * 86_400_000))},
                )
            )
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

    def _new_transport(self) -> Any:
        return TunedTransport(self.conf.broker_consumer, self)

    def Table(self, name: str, **kwargs: Any) -> Any:
        """faust's ``App.Table``, with :data:`ROCKSDB_OPTIONS` for tables on RocksDB."""
        return super().Table(name, **self._store_options(kwargs))

    def GlobalTable(self, name: str, **kwargs: Any) -> Any:
        """faust's ``App.GlobalTable``, with :data:`ROCKSDB_OPTIONS` on RocksDB."""
        return super().GlobalTable(name, **self._store_options(kwargs))

    def _store_options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        if str(self.conf.store).startswith("rocksdb") and "options" not in kwargs:
            kwargs["options"] = dict(ROCKSDB_OPTIONS)  # faust pops keys: a copy each
        return kwargs

    def on_rebalance_start(self) -> None:
        super().on_rebalance_start()
        for hook in self.rebalance_hooks:
            hook()

    def on_rebalance_end(self) -> None:
        super().on_rebalance_end()
        if self.ready_after is None and self.rebalancing is False:
            self.ready_after = time.monotonic() - PROCESS_STARTED
            log.info(
                "worker ready in %.1fs (group joined, tables recovered) on %s, event loop %s",
                self.ready_after,
                self.settings.broker_url,
                type(self.loop).__module__.partition(".")[0],
            )
            for ready in self.ready_hooks:
                ready()

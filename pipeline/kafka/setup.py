"""Create the app's topics before the worker subscribes, and wait until brokers know them.

Faust declares a topic and subscribes to it a moment later. On Apache Kafka the new
topic can be missing from the metadata the group leader sees at that moment; Faust's
assignor then ignores it and the worker sits "ready" with no partitions of it until
the next metadata refresh (minutes). So the worker makes every topic first, with the
configured partitions, and starts only when a metadata request shows all of them
with a leader for every partition. A topic that already exists with another partition
count is an error: tables are co-partitioned with their input topics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from aiokafka import AIOKafkaClient
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code
from aiokafka.protocol.metadata import MetadataRequest
from aiokafka.structs import TopicPartition

from pipeline.broker.readiness import BrokerError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int
    config: dict[str, str] = field(default_factory=dict)


async def ensure_topics(
    bootstrap: list[str], specs: list[TopicSpec], timeout: float = 60.0
) -> None:
    """Create missing topics, then wait until every partition of each has a leader."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    created: list[str] = []
    try:
        for spec in specs:
            response = await admin.create_topics(
                [
                    NewTopic(
                        spec.name,
                        num_partitions=spec.partitions,
                        replication_factor=spec.replication,
                        topic_configs=spec.config,
                    )
                ]
            )
            # The broker answers each topic with an error code (CreateTopics response
            # ``topic_errors``: name, code[, message]); aiokafka does not raise for them.
            for name, code, *message in response.topic_errors:
                if code == 0:
                    log.debug("created topic %s (%d partitions)", name, spec.partitions)
                    created.append(name)
                elif code != TopicAlreadyExistsError.errno:
                    error = for_code(code)
                    raise BrokerError(
                        f"cannot create topic {name}: {error.__name__}"
                        + (f" ({message[0]})" if message and message[0] else "")
                    )
    finally:
        await admin.close()
    if created:
        log.info("created %d topics: %s", len(created), ", ".join(created))
    await _wait_for_metadata(bootstrap, specs, timeout)


async def _wait_for_metadata(bootstrap: list[str], specs: list[TopicSpec], timeout: float) -> None:
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    deadline = time.monotonic() + timeout
    try:
        while True:
            metadata = await client.fetch_all_metadata()
            missing = []
            for spec in specs:
                partitions = metadata.partitions_for_topic(spec.name) or set()
                if partitions and len(partitions) != spec.partitions:
                    raise BrokerError(
                        f"topic {spec.name} exists with {len(partitions)} partitions but the app "
                        f"needs {spec.partitions} (WABOT_TOPIC_PARTITIONS); tables are "
                        "co-partitioned with their input topics, so use the same count"
                    )
                leaders = [
                    metadata.leader_for_partition(TopicPartition(spec.name, p)) for p in partitions
                ]
                if not partitions or any(leader in (None, -1) for leader in leaders):
                    missing.append(spec.name)
            if not missing:
                return
            if time.monotonic() > deadline:
                raise BrokerError(f"topics not ready after {timeout}s: {', '.join(missing)}")
            await asyncio.sleep(0.1)
    finally:
        await client.close()


async def wait_for_coordinator(bootstrap: list[str], group: str, timeout: float = 60.0) -> None:
    """Wait until the broker names a coordinator for consumer group ``group``.

    A new Apache Kafka creates ``__consumer_offsets`` on the first FindCoordinator request
    and answers COORDINATOR_NOT_AVAILABLE until it has leaders; aiokafka's consumer logs
    each such answer as an ERROR. Asking here first keeps a first start's log clean.
    Raises BrokerError after ``timeout`` seconds."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                await admin.find_coordinator(group)
                return
            except KafkaError as exc:
                if time.monotonic() > deadline:
                    raise BrokerError(
                        f"no coordinator for consumer group {group} after {timeout}s: {exc}"
                    ) from None
                await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def cluster_id(bootstrap: list[str]) -> str | None:
    """The cluster id the broker reports (Metadata v2+), or None if it has none."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        response = await client.send(client.get_random_node(), MetadataRequest([]))
        value = getattr(response, "cluster_id", None)
        return str(value) if value is not None else None
    finally:
        await client.close()


def is_tansu(cluster: str | None) -> bool:
    """Tansu (the embedded dev broker) names its cluster ``tansu_cluster`` by default."""
    return cluster is not None and "tansu" in cluster.lower()

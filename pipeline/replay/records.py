"""Kafka work of a replay that is not the pipeline's: copying the selection, reading whole
topics, watching a consumer group's offsets, and removing a run's namespace.

Plain aiokafka clients; every function takes the bootstrap servers (``host:port`` list).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import DeleteGroupsRequest

from pipeline.replay.selection import Selection, SelectionError

log = logging.getLogger(__name__)


@dataclass
class Copied:
    """What :func:`copy_selection` wrote: records per partition and the chats they belong
    to (chat id -> partition; a chat lives in one partition)."""

    counts: dict[int, int] = field(default_factory=dict)
    chats: dict[str, int] = field(default_factory=dict)
    first_ms: int | None = None
    last_ms: int | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    """The partition numbers of ``topic`` from fresh metadata (empty when it is absent)."""
    # AIOKafkaConsumer.partitions_for_topic reads a cache that only holds subscribed
    # topics; the consumer's client asks the broker for all of them.
    cluster = await consumer._client.fetch_all_metadata()
    return set(cluster.partitions_for_topic(topic) or ())


async def partition_count(bootstrap: list[str], topic: str) -> int:
    """Partitions of ``topic``; raises SelectionError when the topic does not exist."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await consumer.start()
    try:
        partitions = await _partitions(consumer, topic)
    finally:
        await consumer.stop()
    if not partitions:
        raise SelectionError(f"topic {topic} does not exist on {', '.join(bootstrap)}")
    return len(partitions)


async def copy_selection(
    bootstrap: list[str], source: str, target: str, selection: Selection
) -> Copied:
    """Copy the selected records of ``source`` to ``target``, each to the same partition
    with its key, value and timestamp, in order. ``target`` must exist with as many
    partitions. Raises SelectionError when nothing matches or an asked chat has no record.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks="all")
    await consumer.start()
    await producer.start()
    copied = Copied()
    try:
        partitions = sorted(await _partitions(consumer, source))
        tps = [TopicPartition(source, p) for p in partitions]
        consumer.assign(tps)
        bounds = await _bounds(consumer, tps, selection)
        pending = []
        for tp, (start, end) in bounds.items():
            if start >= end:
                continue
            async for record in _records(consumer, tp, start, end):
                if not selection.admits(record.key, record.timestamp):
                    continue
                pending.append(
                    await producer.send(
                        target,
                        key=record.key,
                        value=record.value,
                        partition=tp.partition,
                        timestamp_ms=record.timestamp,
                    )
                )
                copied.counts[tp.partition] = copied.counts.get(tp.partition, 0) + 1
                if record.key is not None:
                    copied.chats[record.key.decode(errors="replace")] = tp.partition
                copied.first_ms = min(copied.first_ms or record.timestamp, record.timestamp)
                copied.last_ms = max(copied.last_ms or record.timestamp, record.timestamp)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
        await consumer.stop()
    if not copied.total:
        raise SelectionError(f"no record of {source} matches the selection")
    missing = sorted(selection.chats - set(copied.chats))
    if missing:
        raise SelectionError(f"no record of {source} for chat {', '.join(missing)} in the range")
    return copied


async def _bounds(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], selection: Selection
) -> dict[TopicPartition, tuple[int, int]]:
    """Per partition, the offsets [start, end) to read: the offset range asked for, cut
    by the time range (Kafka's offsets-for-times) and by the partition's end now."""
    beginnings = await consumer.beginning_offsets(tps)
    ends = await consumer.end_offsets(tps)
    since = until = None
    if selection.since is not None:
        since = await consumer.offsets_for_times(
            {tp: int(selection.since.timestamp() * 1000) for tp in tps}
        )
    if selection.until is not None:
        until = await consumer.offsets_for_times(
            {tp: int(selection.until.timestamp() * 1000) for tp in tps}
        )
    bounds = {}
    for tp in tps:
        asked = selection.range_for(tp.partition)
        if asked is None:
            continue
        start = max(asked.start, beginnings[tp])
        end = ends[tp] if asked.end is None else min(asked.end, ends[tp])
        if since is not None:
            found = since[tp]
            start = max(start, found.offset if found is not None else ends[tp])
        if until is not None and until[tp] is not None:
            end = min(end, until[tp].offset)
        bounds[tp] = (start, end)
    return bounds


async def read_topic(bootstrap: list[str], topic: str, since_ms: int | None = None) -> list[Any]:
    """Every record of ``topic`` (from ``since_ms``, a Kafka timestamp, when given) up to
    its end when called, partition by partition; an absent topic reads as empty."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[Any] = []
    try:
        partitions = await _partitions(consumer, topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return records
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        if since_ms is not None:
            found = await consumer.offsets_for_times({tp: since_ms for tp in tps})
            starts = {tp: ends[tp] if found[tp] is None else found[tp].offset for tp in tps}
        for tp in tps:
            records += [r async for r in _records(consumer, tp, starts[tp], ends[tp])]
    finally:
        await consumer.stop()
    return records


async def _records(
    consumer: AIOKafkaConsumer, tp: TopicPartition, start: int, end: int
) -> AsyncIterator[Any]:
    """The records of ``tp`` at offsets [start, end), in order. Offsets may skip (compacted
    or control records), so progress is the consumer's position, not the last offset."""
    if start >= end:
        return
    consumer.seek(tp, start)
    idle = 0
    while await consumer.position(tp) < end:
        batch = await consumer.getmany(tp, timeout_ms=1000, max_records=2000)
        idle = 0 if batch.get(tp) else idle + 1
        if idle >= 30:
            raise SelectionError(f"{tp.topic}[{tp.partition}] gave no record for 30s before {end}")
        for record in batch.get(tp, []):
            if record.offset < end:
                yield record


class GroupWatch:
    """A consumer group's committed offsets against its topics' end offsets."""

    def __init__(self, bootstrap: list[str], group: str) -> None:
        self.bootstrap = bootstrap
        self.group = group
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)

    async def start(self) -> None:
        await self._admin.start()
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()
        await self._admin.close()

    async def lag(self, topics: Iterable[str]) -> tuple[int, int]:
        """(records committed, records on the topics) summed over every partition."""
        tps = []
        for topic in topics:
            partitions = await _partitions(self._consumer, topic)
            tps += [TopicPartition(topic, p) for p in partitions]
        if not tps:
            return 0, 0
        ends = await self._consumer.end_offsets(tps)
        committed = await self._admin.list_consumer_group_offsets(self.group, partitions=tps)
        done = sum(max(0, min(committed[tp].offset, ends[tp])) for tp in tps if tp in committed)
        return done, sum(ends.values())


async def flush_bursts(bootstrap: list[str], ticks_topic: str, chats: dict[str, int]) -> None:
    """A ``flush`` tick per chat to its partition of ``ticks_topic``: the replay's guard
    closes the chat's open burst (a replay has no clock to close it)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    try:
        sent = [
            await producer.send(
                ticks_topic,
                key=chat.encode(),
                value=f'{{"chat_id": "{chat}", "generation": -1, "flush": true}}'.encode(),
                partition=partition,
            )
            for chat, partition in chats.items()
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def delete_namespace(bootstrap: list[str], prefix: str, group: str) -> list[str]:
    """Delete every topic whose name starts with ``prefix`` and the consumer group
    ``group``; return the topics deleted. A group the broker will not delete is logged."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = sorted(t for t in await admin.list_topics() if t.startswith(prefix))
        if topics:
            await admin.delete_topics(topics)
        try:
            coordinator = await admin.find_coordinator(group)
            # aiokafka's admin client has no delete_consumer_groups; this is Kafka's
            # DeleteGroups request (API key 42) sent to the group's coordinator.
            await admin._send_request(DeleteGroupsRequest([group]), coordinator)
        except Exception as exc:
            log.warning("consumer group %s not deleted: %r", group, exc)
        return topics
    finally:
        await admin.close()

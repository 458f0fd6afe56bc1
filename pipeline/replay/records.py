"""Kafka work of a replay that is not the pipeline's: finding the selected messages and the
recorded controls of their chats, reading whole topics, watching a consumer group's offsets,
and removing a run's namespace (feeding the worker is :mod:`pipeline.replay.feed`).

Plain aiokafka clients; every function takes the bootstrap servers (``host:port`` list).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import DeleteGroupsRequest
from pydantic import ValidationError

from pipeline.kafka.consumers import stop_consumer
from pipeline.replay.selection import Selection, SelectionError
from schemas import ChatControl, InboundMessage

log = logging.getLogger(__name__)


@dataclass
class Selected:
    """What a selection holds on the recorded inbound topic, found by one read that writes
    nothing: per partition the offsets ``[start, end)`` read and how many records of them are
    selected, the chats (chat id -> partition; a chat lives in one partition), the accounts
    of their messages, the Kafka timestamps (ms) of the first and last record selected, and
    a summary of each selected message that decodes (``chat_id``, ``message_id``, ``event``,
    ``received_at`` as ISO 8601)."""

    bounds: dict[int, tuple[int, int]] = field(default_factory=dict)
    counts: dict[int, int] = field(default_factory=dict)
    chats: dict[str, int] = field(default_factory=dict)
    accounts: set[str] = field(default_factory=set)
    first_ms: int | None = None
    last_ms: int | None = None
    messages: list[dict[str, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class ControlInput:
    """A recorded ``chat.control`` record a run replays: to ``partition`` of the run's
    control topic (its chat's partition; an account's profile goes to every partition with a
    selected chat), with its key, value and Kafka timestamp (ms)."""

    partition: int
    timestamp_ms: int
    key: bytes | None
    value: bytes

    @property
    def control(self) -> ChatControl | None:
        """The record as a ChatControl; None when it does not decode (the guard dead-letters
        it, in the replay as it did live)."""
        try:
            return ChatControl.model_validate_json(self.value)
        except ValidationError:
            return None

    def to_json(self) -> str:
        """One line of ``controls.jsonl`` (bytes kept exactly: surrogate escapes)."""
        return json.dumps(
            {
                "partition": self.partition,
                "timestamp_ms": self.timestamp_ms,
                "key": None if self.key is None else self.key.decode(errors="surrogateescape"),
                "value": self.value.decode(errors="surrogateescape"),
            }
        )

    @classmethod
    def from_json(cls, line: str) -> ControlInput:
        """Read a line :meth:`to_json` wrote; raises ValueError, KeyError."""
        data = json.loads(line)
        key = data["key"]
        return cls(
            int(data["partition"]),
            int(data["timestamp_ms"]),
            None if key is None else key.encode(errors="surrogateescape"),
            data["value"].encode(errors="surrogateescape"),
        )


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
        await stop_consumer(consumer)
    if not partitions:
        raise SelectionError(f"topic {topic} does not exist on {', '.join(bootstrap)}")
    return len(partitions)


async def scan_selection(bootstrap: list[str], source: str, selection: Selection) -> Selected:
    """Read the selected records of ``source`` once and say what they are (nothing is
    written). Raises SelectionError when the topic is absent, nothing matches or an asked
    chat has no record."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    selected = Selected()
    try:
        partitions = sorted(await _partitions(consumer, source))
        tps = [TopicPartition(source, p) for p in partitions]
        consumer.assign(tps)
        for tp, (start, end) in (await _bounds(consumer, tps, selection)).items():
            selected.bounds[tp.partition] = (start, end)
            async for record in _records(consumer, tp, start, end):
                if not selection.admits(record.key, record.timestamp):
                    continue
                _note(selected, tp.partition, record)
    finally:
        await stop_consumer(consumer)
    if not selected.total:
        raise SelectionError(f"no record of {source} matches the selection")
    missing = sorted(selection.chats - set(selected.chats))
    if missing:
        raise SelectionError(f"no record of {source} for chat {', '.join(missing)} in the range")
    return selected


def _note(selected: Selected, partition: int, record: Any) -> None:
    selected.counts[partition] = selected.counts.get(partition, 0) + 1
    if record.key is not None:
        selected.chats[record.key.decode(errors="replace")] = partition
    selected.first_ms = min(selected.first_ms or record.timestamp, record.timestamp)
    selected.last_ms = max(selected.last_ms or record.timestamp, record.timestamp)
    try:
        message = InboundMessage.model_validate_json(record.value)
    except ValidationError:
        return  # the guard dead-letters it, in the replay as it did live
    selected.accounts.add(message.account_id)
    selected.messages.append(
        {
            "chat_id": message.chat_id,
            "message_id": message.message_id,
            "event": message.event,
            "received_at": message.received_at.isoformat(),
        }
    )


async def selected_records(
    bootstrap: list[str], source: str, partition: int, bounds: tuple[int, int], selection: Selection
) -> AsyncIterator[Any]:
    """The selected records of one partition of ``source`` within offsets ``bounds``
    (``[start, end)``, as :func:`scan_selection` found them), in order."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tp = TopicPartition(source, partition)
        consumer.assign([tp])
        async for record in _records(consumer, tp, *bounds):
            if selection.admits(record.key, record.timestamp):
                yield record
    finally:
        await stop_consumer(consumer)


async def recorded_controls(
    bootstrap: list[str], topic: str, selected: Selected, until_ms: int | None
) -> list[ControlInput]:
    """The recorded controls of the selected chats and of their messages' accounts, from the
    topic's start (a pause or a profile set before the range still holds in it) to
    ``until_ms`` (a Kafka timestamp; None: the topic's end), ordered by Kafka timestamp.

    A chat's control goes to its chat's partition; an account's profile (written once to
    every partition of the topic) once to each partition with a selected chat. A record that
    does not decode is kept when its key is a selected chat (live, the guard dead-lettered
    it). An absent topic has no controls."""
    found: list[tuple[int, int, int, ControlInput]] = []
    account_profiles: set[str] = set()
    chat_partitions = sorted(set(selected.chats.values()))
    for record in await read_topic(bootstrap, topic):
        if until_ms is not None and record.timestamp >= until_ms:
            continue
        order = (record.timestamp, record.partition, record.offset)
        chat = None if record.key is None else record.key.decode(errors="replace")
        if chat in selected.chats:
            control = ControlInput(selected.chats[chat], record.timestamp, record.key, record.value)
            found.append((*order, control))
            continue
        decoded = ControlInput(0, record.timestamp, record.key, record.value).control
        if (
            decoded is None
            or decoded.action != "account_profile"
            or decoded.account_id not in selected.accounts
            or decoded.control_id in account_profiles
        ):
            continue
        account_profiles.add(decoded.control_id)
        for partition in chat_partitions:
            control = ControlInput(partition, record.timestamp, record.key, record.value)
            found.append((*order, control))
    found.sort(key=lambda entry: entry[:3])
    return [entry[3] for entry in found]


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
        await stop_consumer(consumer)
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
        await stop_consumer(self._consumer)
        await self._admin.close()

    async def lag(self, topics: Iterable[str]) -> tuple[int, int]:
        """(records committed, records on the topics) summed over every partition."""
        tps = []
        for topic in topics:
            partitions = await _partitions(self._consumer, topic)
            tps += [TopicPartition(topic, p) for p in partitions]
        if not tps:
            return 0, 0
        committed, ends = await self.committed(tps), await self.ends(tps)
        return sum(min(committed[tp], ends[tp]) for tp in tps), sum(ends.values())

    async def committed(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The group's committed offset (the next record it will read) of each of ``tps``;
        0 where it committed nothing."""
        wanted = list(tps)
        found = await self._admin.list_consumer_group_offsets(self.group, partitions=wanted)
        return {tp: max(0, found[tp].offset) if tp in found else 0 for tp in wanted}

    async def ends(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The end offset (the next record's offset) of each of ``tps``; 0 for a partition
        not on the broker (asking for it would make the broker create its topic, with its
        default partition count, before the worker creates it right)."""
        wanted = list(tps)
        cluster = await self._consumer._client.fetch_all_metadata()
        present = [
            tp for tp in wanted if tp.partition in (cluster.partitions_for_topic(tp.topic) or ())
        ]
        found = await self._consumer.end_offsets(present) if present else {}
        return {tp: found.get(tp, 0) for tp in wanted}

    async def caught_up(self, ends: dict[TopicPartition, int], poll_s: float = 0.2) -> None:
        """Return once the group has committed each partition of ``ends`` up to its offset
        there: the worker has read and finished every record before it. Waits as long as it
        takes (the caller's watch gives up on a dead or stalled worker)."""
        wanted = {tp: end for tp, end in ends.items() if end > 0}
        while wanted:
            committed = await self.committed(wanted)
            wanted = {tp: end for tp, end in wanted.items() if committed[tp] < end}
            if wanted:
                await asyncio.sleep(poll_s)


def flush_tick(chat: str) -> bytes:
    """The value of a ``flush`` tick: the replay's guard closes ``chat``'s open burst."""
    return json.dumps({"chat_id": chat, "generation": -1, "flush": True}).encode()


async def flush_bursts(bootstrap: list[str], ticks_topic: str, chats: dict[str, int]) -> None:
    """A ``flush`` tick per chat to its partition of ``ticks_topic``: the replay's guard
    closes the chat's open burst (a replay has no clock to close it)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    try:
        sent = [
            await producer.send(
                ticks_topic, key=chat.encode(), value=flush_tick(chat), partition=partition
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

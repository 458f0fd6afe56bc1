"""The conversation store and the archive's consumer group, read back for tests and
benchmarks: every row in key order, the archive's lag, a group reset. Never imported by
production code.
"""

from __future__ import annotations

import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import select

from pipeline.kafka.consumers import stop_consumer

__all__ = ["TABLES", "archive_lag", "reset_group", "snapshot", "wait_for"]

#: Every table of the store and its primary key columns, for reading it back in order.
TABLES = {
    "chats": ("chat_id",),
    "messages": ("id",),
    "turns": ("turn_id",),
    "turn_messages": ("turn_id", "position"),
    "llm_calls": ("call_id",),
    "decisions": ("decision_id",),
    "gateway_events": ("event_id",),
}


def wait_for(predicate: object, timeout: float, interval: float = 0.2) -> None:
    """Poll ``predicate()`` until true; AssertionError after ``timeout`` seconds."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"not true after {timeout}s: {predicate}")


async def snapshot(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, in primary-key order (a fresh engine, disposed after)."""
    from pipeline.store.engine import create_engine
    from pipeline.store.models import Base

    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            tables = {}
            for name, keys in TABLES.items():
                table = Base.metadata.tables[name]
                query = select(table).order_by(*(table.c[key] for key in keys))
                result = await connection.execute(query)
                tables[name] = [dict(row) for row in result.mappings()]
            return tables
    finally:
        await engine.dispose()


async def archive_lag(bootstrap: str, group: str, topics: list[str]) -> int:
    """Records of ``topics`` the consumer ``group`` has not committed yet (0: caught up)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await consumer.start()
    await admin.start()
    try:
        tps = [
            TopicPartition(topic, p)
            for topic in topics
            for p in (consumer.partitions_for_topic(topic) or await _partitions(consumer, topic))
        ]
        ends = await consumer.end_offsets(tps)
        committed = await admin.list_consumer_group_offsets(group)
        return sum(
            max(0, end - (committed[tp].offset if tp in committed else 0))
            for tp, end in ends.items()
        )
    finally:
        await admin.close()
        await stop_consumer(consumer)


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    return consumer.partitions_for_topic(topic) or set()


async def reset_group(bootstrap: str, group: str, topics: list[str]) -> None:
    """Commit offset 0 on every partition of ``topics`` for ``group`` (no member may be in
    it): its next consumer reads everything again."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [
            TopicPartition(topic, p)
            for topic in topics
            for p in (consumer.partitions_for_topic(topic) or await _partitions(consumer, topic))
        ]
        consumer.assign(tps)
        await consumer.commit({tp: 0 for tp in tps})
    finally:
        await stop_consumer(consumer)

"""Counts that every worker sees: a GlobalTable plus a follower of its changelog.

Faust's GlobalTable is meant to give every worker every partition's values, but in
faust-streaming a worker does not apply, while it runs, the changes other workers make
(faust-streaming/faust#283; our two-worker test saw each worker count only its own
partitions). So each worker also follows the table's changelog topic with a plain
aiokafka consumer over all partitions and keeps the newest value of every key.

Writes still go through the table, in stream context, into the partition being processed
(keys ``<name>|<partition>``, see :mod:`tables.per_partition`), so the changelog stays the
one truth. Counts only grow within their day, so a read takes the larger of the table's
value and the followed one: the table is freshest for this worker's own partitions, the
follower for the others', and a partition that moved here keeps counting from the larger.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

log = logging.getLogger(__name__)


class GlobalCounts:
    """Integer counts keyed by string: written through ``table``, read from everyone."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.partitions: int = table.partitions
        self._followed: dict[str, int] = {}

    def get(self, key: str) -> int:
        return max(int(self.table.get(key) or 0), self._followed.get(key, 0))

    def __getitem__(self, key: str) -> int:
        return self.get(key)

    def __setitem__(self, key: str, value: int) -> None:
        self.table[key] = value  # stream context only, as every table write

    def __delitem__(self, key: str) -> None:
        self._followed.pop(key, None)
        if key in self.table:
            del self.table[key]

    def __contains__(self, key: str) -> bool:
        return key in self.table or key in self._followed

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One changelog record (a tombstone deletes the key)."""
        if key is None:
            return
        name = key.decode("utf-8", "replace")
        if name.startswith('"'):
            name = str(json.loads(name))
        if value is None:
            self._followed.pop(name, None)
            return
        try:
            self._followed[name] = int(json.loads(value))
        except (ValueError, TypeError):
            log.warning("changelog of %s: a value that is not a count for %r", self.table, name)

    async def follow(self, bootstrap_servers: list[str], retry_s: float = 2.0) -> None:
        """Read the changelog from its start and forever (run as the app's task)."""
        topic = self.table.changelog_topic.get_topic_name()
        while True:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=bootstrap_servers,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                fetch_max_wait_ms=100,
            )
            try:
                await consumer.start()
                # The worker created the changelog with the table's partitions.
                consumer.assign([TopicPartition(topic, p) for p in range(self.partitions)])
                await consumer.seek_to_beginning()
                while True:
                    batch = await consumer.getmany(timeout_ms=1000)
                    for records in batch.values():
                        for record in records:
                            self.apply(record.key, record.value)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker away: keep the last values, try again
                log.warning("following %s failed (%s); again in %.0fs", topic, exc, retry_s)
                await asyncio.sleep(retry_s)
            finally:
                await consumer.stop()

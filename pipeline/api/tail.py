"""What the API needs from topics the store does not keep: the login QR and dead letters.

The store keeps gateway states but not the QR payload (whoever scans it takes the session),
and it does not archive ``pipeline.dlq``. :class:`TopicTail` follows both topics from a
little before their end (``backlog`` records per partition) in the API process, keeping the
newest QR payload per gateway and the latest dead letters in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.kafka.consumers import stop_consumer

__all__ = ["TopicTail"]

log = logging.getLogger(__name__)


class TopicTail:
    """Follows ``events`` (wa.events) and ``dlq`` (pipeline.dlq) without a consumer group."""

    def __init__(self, bootstrap: list[str], events: str, dlq: str, backlog: int = 200) -> None:
        self.bootstrap = bootstrap
        self.events = events
        self.dlq = dlq
        self.backlog = backlog
        #: gateway name -> (the QR payload, its time) of its latest ``qr`` state event.
        self.qr: dict[str, tuple[str, datetime | None]] = {}
        #: the latest dead letters: {at?, agent, reason, source_topic}.
        self.dead_letters: deque[dict[str, Any]] = deque(maxlen=20)
        self.consumer: AIOKafkaConsumer | None = None

    async def run(self) -> None:
        """Follow both topics until cancelled; a missing topic is looked for again."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, metadata_max_age_ms=5000
        )
        try:
            await consumer.start()
        except BaseException:
            await stop_consumer(consumer)
            raise
        self.consumer = consumer
        try:
            assigned: set[TopicPartition] = set()
            looked = 0.0
            while True:
                if time.monotonic() - looked > 10:  # topics made (or grown) since
                    looked = time.monotonic()
                    with contextlib.suppress(Exception):
                        await consumer._client.force_metadata_update()
                wanted = {
                    TopicPartition(topic, p)
                    for topic in (self.events, self.dlq)
                    for p in consumer._client.cluster.partitions_for_topic(topic) or set()
                }
                if wanted != assigned:
                    consumer.assign(list(wanted))
                    ends = await consumer.end_offsets(list(wanted - assigned))
                    for tp, end in ends.items():
                        consumer.seek(tp, max(0, end - self.backlog))
                    assigned = wanted
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    for record in records:
                        self._take(record.topic, record.value)
                if not assigned:
                    await asyncio.sleep(2)
        finally:
            self.consumer = None
            await stop_consumer(consumer)

    def _take(self, topic: str, value: bytes | None) -> None:
        try:
            data = json.loads(value or b"")
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        if topic == self.events:
            if data.get("kind") == "state" and data.get("state") == "qr" and data.get("qr"):
                self.qr[str(data.get("gateway"))] = (str(data["qr"]), _time(data.get("at")))
            elif data.get("kind") == "state":
                self.qr.pop(str(data.get("gateway")), None)
        else:
            self.dead_letters.append(
                {
                    "agent": data.get("agent"),
                    "reason": str(data.get("reason", ""))[:500],
                    "source_topic": data.get("source_topic"),
                }
            )

    async def dlq_count(self) -> int | None:
        """Dead letters kept on the topic now (end minus start offsets); None when unknown."""
        consumer = self.consumer
        if consumer is None:
            return None
        tps = [
            TopicPartition(self.dlq, p)
            for p in consumer._client.cluster.partitions_for_topic(self.dlq) or set()
        ]
        if not tps:
            return 0
        try:
            ends = await consumer.end_offsets(tps)
            starts = await consumer.beginning_offsets(tps)
        except Exception:
            return None
        return int(sum(ends[tp] - starts[tp] for tp in tps))


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None

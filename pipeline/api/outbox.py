"""The API's only way to change the bot: records produced to Kafka.

- :meth:`Outbox.control` writes a :class:`schemas.ChatControl` to ``chat.control`` keyed by
  chat id (the partition of the chat's inbound messages, so the guard applies it in order
  with them); an account's profile goes to every partition (each partition's guard keeps a
  copy beside the chats it owns).
- :meth:`Outbox.outbound` writes a manual :class:`schemas.OutboundMessage` to ``wa.outbound``,
  which the gateway's sink sends like any reply (and skips when its ``outbound_id`` was sent).
- :class:`Scheduler` produces held manual messages (``manual_messages.state = scheduled``)
  when their ``send_at`` comes, priority 1 first. Produced first, marked second: a crash in
  between produces the message again with the same ``outbound_id``, which the sink skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from pipeline.api.queries import ApiStore
from pipeline.settings import Settings
from pipeline.store.models import ManualMessageRow
from pipeline.store.writer import is_unavailable
from pipeline.topic_setup import TopicSpec, ensure_topics
from schemas import ChatControl, OutboundMessage

__all__ = ["Outbox", "Scheduler", "outbound_for"]

log = logging.getLogger(__name__)


class Outbox:
    """An aiokafka producer for ``chat.control`` and ``wa.outbound`` (acks=all)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.control_topic = settings.topic("control")
        self.outbound_topic = settings.topic("outbound")
        self.producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Create the two topics when missing (the worker's partition count: the guard
        reads chat.control co-partitioned with wa.inbound), then start the producer."""
        s = self.settings
        days = str(round(s.topic_retention_days * 86_400_000))
        await ensure_topics(
            s.bootstrap_servers,
            [
                TopicSpec(
                    name, s.topic_partitions, s.topic_replication_factor, {"retention.ms": days}
                )
                for name in (self.control_topic, self.outbound_topic)
            ],
            s.broker_start_timeout,
        )
        self.producer = AIOKafkaProducer(
            bootstrap_servers=s.bootstrap_servers, acks="all", request_timeout_ms=10_000
        )
        await self.producer.start()

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    def _producer(self) -> AIOKafkaProducer:
        if self.producer is None:
            raise RuntimeError("the outbox is not started")
        return self.producer

    async def control(self, control: ChatControl) -> None:
        """Produce ``control``; an account's to every partition. Returns once the broker
        has it (raises aiokafka's errors otherwise)."""
        producer = self._producer()
        value = control.model_dump_json().encode()
        key = control.key.encode()
        if control.action == "account_profile":
            partitions = await producer.partitions_for(self.control_topic)
            for partition in sorted(partitions):
                await producer.send_and_wait(
                    self.control_topic, key=key, value=value, partition=partition
                )
            return
        await producer.send_and_wait(self.control_topic, key=key, value=value)

    async def outbound(self, message: OutboundMessage) -> None:
        producer = self._producer()
        await producer.send_and_wait(
            self.outbound_topic,
            key=message.chat_id.encode(),
            value=message.model_dump_json().encode(),
        )

    async def broker_ok(self, timeout: float = 5.0) -> bool:
        """True when the broker answers a metadata request within ``timeout`` seconds."""
        if self.producer is None:
            return False
        try:
            async with asyncio.timeout(timeout):
                await self.producer.client.fetch_all_metadata()
        except Exception:
            return False
        return True


def outbound_for(row: ManualMessageRow) -> OutboundMessage:
    """The wa.outbound record of a manual message."""
    return OutboundMessage(
        outbound_id=row.outbound_id,
        chat_id=row.chat_id,
        account_id=row.account_id,
        text=row.text,
        kind="manual",
    )


class Scheduler:
    """Every ``interval_s``: produce the held messages that are due, then mark them."""

    def __init__(self, store: ApiStore, outbox: Outbox, interval_s: float) -> None:
        self.store = store
        self.outbox = outbox
        self.interval_s = interval_s
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look now (a message was just stored)."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await self.send_due()
            except Exception as exc:  # the store or broker is down: try again later
                if not is_unavailable(exc):
                    log.exception("scheduler: could not send due messages")
                else:
                    log.warning("scheduler: store unavailable (%s)", type(exc).__name__)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)

    async def send_due(self) -> int:
        """Produce every due message; return how many."""
        sent = 0
        for row in await self.store.due(datetime.now(UTC)):
            await self.outbox.outbound(outbound_for(row))
            await self.store.mark_produced(row.outbound_id)
            log.info("manual message %s produced (priority %d)", row.outbound_id, row.priority)
            sent += 1
        return sent

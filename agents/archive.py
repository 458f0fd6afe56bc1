"""archive: the public topics and the turns -> the conversation store, idempotently.

One consumer over wa.inbound, wa.outbound, wa.delivery, llm.calls, wa.events, wa.decisions
and the app's internal turns topic. Each batch of records (up to ``batch_size``) is decoded
per topic, handed to the sink (the SQL store, ``pipeline/store``) as one transaction, and
only after that transaction committed are the batch's offsets committed to Kafka. A crash
anywhere in between replays the batch, and the store's upserts on the records' own ids
(message, outbound, turn, call, decision ids) make the replay add no row: reading a topic
again from offset 0 leaves the store as it was.

Why not a Faust agent in the app's consumer group: Faust delivers a record to every agent
of the app from one loop, and a full agent buffer pauses the partition and blocks that
loop. An archive waiting for a database that is down would stop the guard and respond, so
the bot would stop answering because its archive is down; and ``Stream.take`` acks its
buffered events in a ``finally``, also when the body raised or the worker is stopping,
which would commit offsets of rows never written. So the archive has its own consumer
group (``<app_id>-archive``) with manual commits: the bot never waits for it, and it lags
and catches up on its own (several workers share its partitions as they share the app's).

Bad input: a record that does not decode goes to the DLQ (agent ``archive``) and the next
one is processed. A batch the database refuses for a reason other than being unreachable
is split until the refused record is found, which goes to the DLQ; the rest is written.
A database that is unreachable (down, restarting, locked) is retried with a backoff doubling
up to ``retry_max_s``, forever, without acking or dropping anything: one WARNING when the
outage starts, one INFO when writes succeed again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Literal, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from agents.dead_letters import dead_letter
from schemas import (
    DeliveryReceipt,
    GatewayEvent,
    GuardDecision,
    InboundMessage,
    LLMCall,
    OutboundMessage,
    Record,
    Turn,
)

log = logging.getLogger(__name__)

#: What a topic carries, as the archive names it.
Kind = Literal["inbound", "outbound", "delivery", "llm_call", "turn", "decision", "event"]

MODELS: Mapping[Kind, type[Record]] = {
    "inbound": InboundMessage,
    "outbound": OutboundMessage,
    "delivery": DeliveryReceipt,
    "llm_call": LLMCall,
    "turn": Turn,
    "decision": GuardDecision,
    "event": GatewayEvent,
}


@dataclass(frozen=True, slots=True)
class Archived:
    """One decoded record on its way to the store.

    ``digest``: 32 hex digits of SHA-256 of the record's value bytes, the id of records that
    carry none (gateway events). ``source``: the Kafka record (topic, partition, offset, the
    raw key and value), for the DLQ.
    """

    kind: Kind
    record: Any
    digest: str
    source: Any


class StoreUnavailable(Exception):
    """The store cannot be reached now (down, restarting, locked); retry the same batch."""


class ArchiveSink(Protocol):
    """Where the archive writes: the SQL store (``pipeline.store.writer.StoreWriter``)."""

    async def prepare(self) -> None:
        """Make the store ready (migrate its schema); raise StoreUnavailable when down."""

    async def write(self, batch: Sequence[Archived]) -> None:
        """Upsert the batch in one transaction, committed when this returns. Raises
        :class:`StoreUnavailable` when the store cannot be reached, anything else when it
        refuses a record."""


@dataclass(frozen=True)
class ArchiveConfig:
    """``topics``: topic name -> kind; ``group``: the archive's consumer group; times in
    seconds except ``fetch_max_wait_ms``.

    ``fetch_min_bytes``/``fetch_max_wait_ms`` (Kafka's fetch.min.bytes and fetch.max.wait.ms):
    the broker answers a fetch once that many bytes are there or that long has passed. The
    store need not be up to the millisecond, so the archive waits for bigger batches: fewer
    fetches and transactions, and less of the worker's CPU, for at most half a second of lag.
    """

    bootstrap_servers: Sequence[str]
    topics: Mapping[str, Kind]
    group: str
    batch_size: int = 500
    retry_first_s: float = 0.5
    retry_max_s: float = 30.0
    session_timeout_s: float = 6.0
    heartbeat_interval_s: float = 1.0
    fetch_max_wait_ms: int = 500
    fetch_min_bytes: int = 64 * 1024


class Archiver:
    """The archive loop: fetch, decode, write, commit. Run :meth:`run` as a task."""

    def __init__(
        self,
        config: ArchiveConfig,
        sink: ArchiveSink,
        dlq: Any,
        records_in: Callable[[str, int], None] | None = None,
    ) -> None:
        """``records_in(topic, n)``: told of every fetch (the records_total metric)."""
        self.config = config
        self.sink = sink
        self.dlq = dlq
        self.records_in = records_in
        #: monotonic time the current outage began; None while the store answers.
        self._down_since: float | None = None
        #: records written (rows upserted, new or not) since start; for logs and tests.
        self.archived = 0

    async def run(self) -> None:
        """Prepare the store (retrying while it is down), then archive until cancelled."""
        await self._until_done(self.sink.prepare, "prepare the store")
        c = self.config
        consumer = AIOKafkaConsumer(
            *c.topics,
            bootstrap_servers=list(c.bootstrap_servers),
            group_id=c.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=c.batch_size,
            fetch_max_wait_ms=c.fetch_max_wait_ms,
            fetch_min_bytes=c.fetch_min_bytes,
            session_timeout_ms=round(c.session_timeout_s * 1000),
            heartbeat_interval_ms=round(c.heartbeat_interval_s * 1000),
            metadata_max_age_ms=5000,
        )
        await consumer.start()
        log.info("archive: %d topics -> the store, consumer group %s", len(c.topics), c.group)
        try:
            while True:
                fetched = await consumer.getmany(timeout_ms=1000, max_records=c.batch_size)
                if fetched:
                    await self.archive(fetched)
                    await self._commit(consumer, fetched)
        finally:
            await consumer.stop()

    async def archive(self, fetched: Mapping[TopicPartition, Sequence[ConsumerRecord]]) -> None:
        """Decode and store one fetch; returns when every record is stored or dead-lettered."""
        batch = []
        for tp, records in fetched.items():
            if self.records_in is not None:
                self.records_in(tp.topic, len(records))
            for n, record in enumerate(records, 1):
                item = await self._decode(record)
                if item is not None:
                    batch.append(item)
                if n % 64 == 0:
                    await asyncio.sleep(0)  # the bot's agents share this event loop
        if batch:
            await self._store(batch)

    async def _decode(self, record: ConsumerRecord) -> Archived | None:
        kind = self.config.topics.get(record.topic)
        if kind is None:  # not subscribed; cannot happen
            return None
        try:
            if not isinstance(record.value, bytes):
                raise ValueError("a record without a value (a tombstone)")
            value = MODELS[kind].model_validate_json(record.value)
        except (ValidationError, ValueError) as exc:
            await self._dead_letter(record, f"invalid {kind} record: {exc}", exc)
            return None
        digest = hashlib.sha256(record.value).hexdigest()[:32]
        return Archived(kind, value, digest, record)

    async def _store(self, batch: Sequence[Archived]) -> None:
        delay = self.config.retry_first_s
        while True:
            try:
                await self.sink.write(batch)
            except StoreUnavailable as exc:
                self._outage(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config.retry_max_s)
                continue
            except Exception as exc:
                await self._refused(batch, exc)
                return
            self._recovered()
            self.archived += len(batch)
            return

    async def _refused(self, batch: Sequence[Archived], exc: Exception) -> None:
        """The store refused the batch (not an outage): find the record it refuses."""
        if len(batch) == 1:
            item = batch[0]
            reason = f"the store refused the {item.kind} record: {type(exc).__name__}: {exc}"
            await self._dead_letter(item.source, reason, exc)
            return
        middle = len(batch) // 2
        await self._store(batch[:middle])
        await self._store(batch[middle:])

    async def _until_done(self, step: Any, what: str) -> None:
        delay = self.config.retry_first_s
        while True:
            try:
                await step()
            except StoreUnavailable as exc:
                self._outage(exc, what)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config.retry_max_s)
                continue
            self._recovered()
            return

    def _outage(self, exc: BaseException, what: str = "write") -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning(
                "archive: the store is unavailable (%s); cannot %s, retrying every %g s at "
                "most; nothing is acked until it is back",
                exc,
                what,
                self.config.retry_max_s,
            )

    def _recovered(self) -> None:
        if self._down_since is not None:
            log.info(
                "archive: the store is back after %.1f s; archiving resumes",
                time.monotonic() - self._down_since,
            )
            self._down_since = None

    async def _commit(
        self, consumer: AIOKafkaConsumer, fetched: Mapping[TopicPartition, Sequence[Any]]
    ) -> None:
        offsets = {tp: records[-1].offset + 1 for tp, records in fetched.items() if records}
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            # A rebalance (or a long outage that outlived max_poll_interval) took partitions
            # away: their new owner reads them from the last commit and upserts the same rows.
            log.info("archive: offsets not committed (%s); the records will be read again", exc)

    async def _dead_letter(self, record: Any, reason: str, exc: BaseException) -> None:
        await dead_letter(self.dlq, SimpleNamespace(message=record), "archive", reason, exc)

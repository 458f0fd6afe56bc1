"""Hourly analytics of a wabot deployment, read from its public Kafka topics into SQL.

A self-contained example: it needs aiokafka, SQLAlchemy 2 and aiosqlite, and nothing of the bot's
own code. It reads three public topics, all JSON records:

- ``wa.inbound``   InboundMessage  (what customers wrote; ``received_at``, ``trace_id``)
- ``wa.delivery``  DeliveryReceipt (``sent``, ``duplicate_skipped``, ``failed``, ``delivered``,
                   ``read`` per ``outbound_id``, with the time ``at``)
- ``llm.calls``    LLMCall         (model, tokens, status of every LLM attempt)

and keeps two kinds of tables in a SQLite file: the raw facts, one row per id (a re-read record
finds its row already there and changes nothing), and hourly aggregates recomputed from those facts
for every hour a batch touched. Re-reading the topics from the beginning therefore never double
counts. See README.md next to this file for the table layout and the definitions.

    python consumer.py --db analytics.sqlite                     # runs until Ctrl-C / SIGTERM
    python consumer.py --db analytics.sqlite --until-idle 5      # stops after 5 s without records
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import math
import os
import signal
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

log = logging.getLogger("analytics")

DELIVERY_STATUSES = frozenset({"sent", "failed", "duplicate_skipped", "delivered", "read"})
LLM_STATUSES = frozenset({"ok", "retry", "error", "fallback", "skipped"})
#: Receipts that say the message went out (``duplicate_skipped``: it was already in the chat).
OUT_STATUSES = ("sent", "duplicate_skipped")
#: Receipts that say the customer's phone has it (``read`` implies delivered).
DELIVERED_STATUSES = ("delivered", "read")
#: LLMCall statuses that are one HTTP request to an endpoint (fallback and skipped are not).
ATTEMPT_STATUSES = ("ok", "retry", "error")

# --- tables -------------------------------------------------------------------------------------

metadata = MetaData()

#: One row per WhatsApp message (dedupe key), whoever wrote it; the first copy read wins.
inbound_messages = Table(
    "inbound_messages",
    metadata,
    Column("message_key", String, primary_key=True, doc="sha256 of account|chat|message id"),
    Column("trace_id", String, nullable=False, index=True),
    Column("from_me", Boolean, nullable=False, doc="written by the account (owner or bot)"),
    Column("sent_by_bot", Boolean, nullable=False),
    Column("received_at", DateTime, nullable=False, doc="UTC, when the gateway saw it"),
    Column("hour", DateTime, nullable=False, index=True),
)

#: One row per outbound_id and status; the first receipt of that status read wins.
delivery_receipts = Table(
    "delivery_receipts",
    metadata,
    Column("outbound_id", String, primary_key=True),
    Column("status", String, primary_key=True),
    Column("trace_id", String, nullable=False, index=True),
    Column("reason", Text),
    Column("at", DateTime, nullable=False, doc="UTC"),
    Column("hour", DateTime, nullable=False, index=True),
)

#: One row per LLMCall record (call_id).
llm_calls = Table(
    "llm_calls",
    metadata,
    Column("call_id", String, primary_key=True),
    Column("trace_id", String, nullable=False, index=True),
    Column("turn_id", String, nullable=False),
    Column("model", String, nullable=False),
    Column("status", String, nullable=False),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("total_tokens", Integer, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("at", DateTime, nullable=False, doc="UTC"),
    Column("hour", DateTime, nullable=False, index=True),
)

#: Records that were not valid JSON or lacked a field, keyed by their place in the topic.
invalid_records = Table(
    "invalid_records",
    metadata,
    Column("topic", String, primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("offset", Integer, primary_key=True),
    Column("error", Text, nullable=False),
    Column("seen_at", DateTime, nullable=False),
)

#: Aggregates per UTC hour (recomputed from the facts above).
hourly_stats = Table(
    "hourly_stats",
    metadata,
    Column("hour", DateTime, primary_key=True, doc="start of the UTC hour"),
    Column("messages_in", Integer, nullable=False),
    Column("messages_out", Integer, nullable=False),
    Column("replied", Integer, nullable=False),
    Column("replied_delivered", Integer, nullable=False),
    Column("latency_p50_ms", Float),
    Column("latency_p95_ms", Float),
    Column("sent_latency_p50_ms", Float),
    Column("sent_latency_p95_ms", Float),
    Column("delivery_failures", Integer, nullable=False),
    Column("llm_calls", Integer, nullable=False),
    Column("llm_total_tokens", Integer, nullable=False),
    Column("llm_errors", Integer, nullable=False),
    Column("llm_fallbacks", Integer, nullable=False),
    Column("failures", Integer, nullable=False),
)

#: LLM aggregates per UTC hour and model.
hourly_llm = Table(
    "hourly_llm",
    metadata,
    Column("hour", DateTime, primary_key=True),
    Column("model", String, primary_key=True, doc="empty for skipped calls (no model asked)"),
    Column("calls", Integer, nullable=False),
    Column("ok", Integer, nullable=False),
    Column("retries", Integer, nullable=False),
    Column("errors", Integer, nullable=False),
    Column("fallbacks", Integer, nullable=False),
    Column("skipped", Integer, nullable=False),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("total_tokens", Integer, nullable=False),
)

# --- parsing ------------------------------------------------------------------------------------


class InvalidRecord(ValueError):
    """A record this consumer cannot use; the message says why."""


def parse_time(value: object, name: str) -> datetime:
    """An aware ISO 8601 string or epoch seconds -> naive UTC datetime (as SQLite stores it)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC).replace(tzinfo=None)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise InvalidRecord(f"{name}: not an ISO 8601 time: {value!r}") from exc
        if parsed.tzinfo is None:
            raise InvalidRecord(f"{name}: a time without a zone: {value!r}")
        return parsed.astimezone(UTC).replace(tzinfo=None)
    raise InvalidRecord(f"{name}: expected a time, got {type(value).__name__}")


def hour_of(moment: datetime) -> datetime:
    """The start of the UTC hour ``moment`` (naive UTC) falls in."""
    return moment.replace(minute=0, second=0, microsecond=0)


def _text(record: dict[str, Any], name: str, default: str | None = None) -> str:
    value = record.get(name, default)
    if not isinstance(value, str) or (not value and default is None):
        raise InvalidRecord(f"{name}: expected a non-empty string, got {value!r}")
    return value


def _count(record: dict[str, Any], name: str) -> int:
    value = record.get(name, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidRecord(f"{name}: expected a count, got {value!r}")
    return value


def _flag(record: dict[str, Any], name: str, default: bool | None = None) -> bool:
    value = record.get(name, default)
    if not isinstance(value, bool):
        raise InvalidRecord(f"{name}: expected true or false, got {value!r}")
    return value


def parse_inbound(record: dict[str, Any]) -> dict[str, Any]:
    """An InboundMessage (JSON object) -> a row of ``inbound_messages``."""
    received_at = parse_time(record.get("received_at"), "received_at")
    # The same three ids the bot dedupes on, hashed: no phone number is stored.
    key = "|".join(_text(record, name) for name in ("account_id", "chat_id", "message_id"))
    return {
        "message_key": hashlib.sha256(key.encode()).hexdigest(),
        "trace_id": _text(record, "trace_id"),
        "from_me": _flag(record, "from_me"),
        "sent_by_bot": _flag(record, "sent_by_bot", False),
        "received_at": received_at,
        "hour": hour_of(received_at),
    }


def parse_receipt(record: dict[str, Any]) -> dict[str, Any]:
    """A DeliveryReceipt (JSON object) -> a row of ``delivery_receipts``."""
    status = _text(record, "status")
    if status not in DELIVERY_STATUSES:
        raise InvalidRecord(f"status: unknown delivery status {status!r}")
    at = parse_time(record.get("at"), "at")
    reason = record.get("reason")
    return {
        "outbound_id": _text(record, "outbound_id"),
        "status": status,
        "trace_id": _text(record, "trace_id"),
        "reason": reason if isinstance(reason, str) else None,
        "at": at,
        "hour": hour_of(at),
    }


def parse_llm_call(record: dict[str, Any]) -> dict[str, Any]:
    """An LLMCall (JSON object) -> a row of ``llm_calls``; tokens are counts, latency in ms."""
    status = _text(record, "status")
    if status not in LLM_STATUSES:
        raise InvalidRecord(f"status: unknown LLM call status {status!r}")
    at = parse_time(record.get("at"), "at")
    latency = record.get("latency_ms", 0.0)
    if not isinstance(latency, int | float) or isinstance(latency, bool):
        raise InvalidRecord(f"latency_ms: expected a number, got {latency!r}")
    return {
        "call_id": _text(record, "call_id"),
        "trace_id": _text(record, "trace_id"),
        "turn_id": _text(record, "turn_id"),
        "model": _text(record, "model", ""),
        "status": status,
        "prompt_tokens": _count(record, "prompt_tokens"),
        "completion_tokens": _count(record, "completion_tokens"),
        "total_tokens": _count(record, "total_tokens"),
        "latency_ms": float(latency),
        "at": at,
        "hour": hour_of(at),
    }


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``values``, interpolated linearly between the closest ranks
    (numpy's default, Excel's PERCENTILE.INC); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# --- the store ----------------------------------------------------------------------------------


@dataclass
class Batch:
    """Rows parsed from one poll of the consumer, ready to be written together."""

    inbound: list[dict[str, Any]] = field(default_factory=list)
    receipts: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    invalid: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.inbound) + len(self.receipts) + len(self.calls) + len(self.invalid)


class Store:
    """The SQLite file: facts upserted by id, hourly rows recomputed for the hours touched."""

    def __init__(self, path: str) -> None:
        self.engine: AsyncEngine = create_async_engine(f"sqlite+aiosqlite:///{path}")

    async def open(self) -> None:
        """Creates the tables that do not exist yet."""
        async with self.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)

    async def close(self) -> None:
        """Closes the connections to the SQLite file."""
        await self.engine.dispose()

    async def write(self, batch: Batch) -> set[datetime]:
        """Writes ``batch`` and the hourly rows it changes in one transaction; returns those
        hours (naive UTC)."""
        async with self.engine.begin() as conn:
            for table, rows in (
                (inbound_messages, batch.inbound),
                (delivery_receipts, batch.receipts),
                (llm_calls, batch.calls),
                (invalid_records, batch.invalid),
            ):
                if rows:
                    await conn.execute(sqlite_insert(table).on_conflict_do_nothing(), rows)
            hours = {row["hour"] for row in (*batch.inbound, *batch.receipts, *batch.calls)}
            hours |= await self._related_hours(conn, {r["outbound_id"] for r in batch.receipts})
            for hour in sorted(hours):
                await self._recompute(conn, hour)
        return hours

    @staticmethod
    async def _related_hours(conn: AsyncConnection, outbound_ids: set[str]) -> set[datetime]:
        """Other hours whose rows depend on these outbound ids: the hours of the customer
        messages they answer (where their latency counts) and of their other receipts."""
        hours: set[datetime] = set()
        ids = sorted(outbound_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            answered = (
                select(inbound_messages.c.hour)
                .distinct()
                .join(
                    delivery_receipts,
                    delivery_receipts.c.trace_id == inbound_messages.c.trace_id,
                )
                .where(
                    delivery_receipts.c.outbound_id.in_(chunk),
                    inbound_messages.c.from_me.is_(False),
                )
            )
            hours.update((await conn.execute(answered)).scalars())
            receipts = (
                select(delivery_receipts.c.hour)
                .distinct()
                .where(delivery_receipts.c.outbound_id.in_(chunk))
            )
            hours.update((await conn.execute(receipts)).scalars())
        return hours

    async def _recompute(self, conn: AsyncConnection, hour: datetime) -> None:
        """Replaces the ``hourly_stats`` and ``hourly_llm`` rows of ``hour`` from the facts."""
        messages_in = await conn.scalar(
            select(func.count())
            .select_from(inbound_messages)
            .where(inbound_messages.c.hour == hour, inbound_messages.c.from_me.is_(False))
        )
        messages_out = await self._messages_out(conn, hour)
        delivery_failures = await conn.scalar(
            select(func.count())
            .select_from(delivery_receipts)
            .where(delivery_receipts.c.hour == hour, delivery_receipts.c.status == "failed")
        )
        to_delivered, to_sent = await self._latencies(conn, hour)

        by_model = (
            await conn.execute(
                select(
                    llm_calls.c.model,
                    llm_calls.c.status,
                    func.count(),
                    func.sum(llm_calls.c.prompt_tokens),
                    func.sum(llm_calls.c.completion_tokens),
                    func.sum(llm_calls.c.total_tokens),
                )
                .where(llm_calls.c.hour == hour)
                .group_by(llm_calls.c.model, llm_calls.c.status)
            )
        ).all()
        models: dict[str, dict[str, Any]] = {}
        for model, status, count, prompt, completion, total in by_model:
            row = models.setdefault(
                model,
                {
                    "hour": hour,
                    "model": model,
                    "calls": 0,
                    "ok": 0,
                    "retries": 0,
                    "errors": 0,
                    "fallbacks": 0,
                    "skipped": 0,
                    "prompt_tokens": 0,
                    "completion_tokens": 0,
                    "total_tokens": 0,
                },
            )
            if status in ATTEMPT_STATUSES:
                row["calls"] += count
            column = {"retry": "retries", "error": "errors", "fallback": "fallbacks"}
            row[column.get(status, status)] += count
            row["prompt_tokens"] += prompt or 0
            row["completion_tokens"] += completion or 0
            row["total_tokens"] += total or 0

        llm_errors = sum(row["errors"] for row in models.values())
        llm_fallbacks = sum(row["fallbacks"] for row in models.values())
        stats = {
            "hour": hour,
            "messages_in": messages_in or 0,
            "messages_out": messages_out,
            "replied": len(to_sent),
            "replied_delivered": len(to_delivered),
            "latency_p50_ms": percentile(to_delivered, 0.50),
            "latency_p95_ms": percentile(to_delivered, 0.95),
            "sent_latency_p50_ms": percentile(to_sent, 0.50),
            "sent_latency_p95_ms": percentile(to_sent, 0.95),
            "delivery_failures": delivery_failures or 0,
            "llm_calls": sum(row["calls"] for row in models.values()),
            "llm_total_tokens": sum(row["total_tokens"] for row in models.values()),
            "llm_errors": llm_errors,
            "llm_fallbacks": llm_fallbacks,
            "failures": (delivery_failures or 0) + llm_errors + llm_fallbacks,
        }
        await conn.execute(delete(hourly_stats).where(hourly_stats.c.hour == hour))
        await conn.execute(delete(hourly_llm).where(hourly_llm.c.hour == hour))
        await conn.execute(insert(hourly_stats), [stats])
        if models:
            await conn.execute(insert(hourly_llm), list(models.values()))

    @staticmethod
    async def _messages_out(conn: AsyncConnection, hour: datetime) -> int:
        """Outbound ids whose first sent (or duplicate_skipped) receipt falls in ``hour``."""
        candidates = (
            select(delivery_receipts.c.outbound_id)
            .where(
                delivery_receipts.c.hour == hour,
                delivery_receipts.c.status.in_(OUT_STATUSES),
            )
            .scalar_subquery()
        )
        firsts = await conn.execute(
            select(func.min(delivery_receipts.c.at))
            .where(
                delivery_receipts.c.outbound_id.in_(candidates),
                delivery_receipts.c.status.in_(OUT_STATUSES),
            )
            .group_by(delivery_receipts.c.outbound_id)
        )
        return sum(1 for (first,) in firsts if hour_of(first) == hour)

    @staticmethod
    async def _latencies(conn: AsyncConnection, hour: datetime) -> tuple[list[float], list[float]]:
        """Reply latencies (ms) of the customer messages received in ``hour``.

        For each customer message, the outbound ids answering it are those with a receipt
        carrying its trace_id; its latency runs from its ``received_at`` to the first
        ``delivered``/``read`` receipt of any of them (first list) and to the first ``sent``/
        ``duplicate_skipped`` receipt (second list). Messages without such a receipt are left out.
        """
        answers = delivery_receipts.alias("answers")
        receipts = delivery_receipts.alias("receipts")
        rows = await conn.execute(
            select(
                inbound_messages.c.message_key,
                inbound_messages.c.received_at,
                receipts.c.status,
                func.min(receipts.c.at),
            )
            .join(answers, answers.c.trace_id == inbound_messages.c.trace_id)
            .join(receipts, receipts.c.outbound_id == answers.c.outbound_id)
            .where(inbound_messages.c.hour == hour, inbound_messages.c.from_me.is_(False))
            .group_by(inbound_messages.c.message_key, receipts.c.status)
        )
        delivered: dict[str, float] = {}
        sent: dict[str, float] = {}
        for key, received_at, status, first in rows:
            if status in DELIVERED_STATUSES:
                target = delivered
            elif status in OUT_STATUSES:
                target = sent
            else:
                continue
            ms = (first - received_at) / timedelta(milliseconds=1)
            target[key] = min(ms, target.get(key, ms))
        return list(delivered.values()), list(sent.values())


# --- the consumer -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """Where to read and write. ``until_idle``: seconds without a record before exiting (None:
    run until stopped); ``join_timeout``: seconds to wait for partitions before giving up."""

    bootstrap: str
    topic_inbound: str
    topic_delivery: str
    topic_llm_calls: str
    group_id: str
    db: str
    from_beginning: bool = False
    until_idle: float | None = None
    join_timeout: float = 60.0


@dataclass
class Totals:
    """What one run read: records by topic and how many of them were invalid."""

    records: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    invalid: int = 0
    hours: set[str] = field(default_factory=set)


class _Assignments(ConsumerRebalanceListener):
    """Notes each assignment; with ``from_beginning`` rewinds every partition once."""

    def __init__(self, consumer: AIOKafkaConsumer, from_beginning: bool) -> None:
        self.consumer = consumer
        self.from_beginning = from_beginning
        self.rewound: set[TopicPartition] = set()
        self.assigned_at: float | None = None

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        fresh = [tp for tp in assigned if tp not in self.rewound]
        if self.from_beginning and fresh:
            await self.consumer.seek_to_beginning(*fresh)
            self.rewound.update(fresh)
        self.assigned_at = time.monotonic()


def to_batch(records: Iterable[Any], parsers: dict[str, str]) -> Batch:
    """Parses consumed records (aiokafka ConsumerRecords) into rows; bad ones become
    ``invalid_records`` rows instead of raising."""
    batch = Batch()
    for record in records:
        kind = parsers[record.topic]
        try:
            if record.value is None:
                raise InvalidRecord("no value (tombstone)")
            try:
                value = json.loads(record.value)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise InvalidRecord(f"not JSON: {exc}") from exc
            if not isinstance(value, dict):
                raise InvalidRecord(f"not a JSON object but {type(value).__name__}")
            if kind == "inbound":
                batch.inbound.append(parse_inbound(value))
            elif kind == "delivery":
                batch.receipts.append(parse_receipt(value))
            else:
                batch.calls.append(parse_llm_call(value))
        except InvalidRecord as exc:
            batch.invalid.append(
                {
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                    "error": str(exc)[:500],
                    "seen_at": datetime.now(UTC).replace(tzinfo=None),
                }
            )
    return batch


async def run(options: Options, stop: asyncio.Event | None = None) -> int:
    """Consumes until ``stop`` is set or ``options.until_idle`` passes without a record.

    Returns the exit status: 0 when it stopped as asked, 2 when Kafka could not be reached or no
    partition was assigned within ``options.join_timeout`` seconds.
    """
    stop = stop or asyncio.Event()
    parsers = {
        options.topic_inbound: "inbound",
        options.topic_delivery: "delivery",
        options.topic_llm_calls: "llm_calls",
    }
    store = Store(options.db)
    await store.open()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=options.bootstrap.split(","),
        group_id=options.group_id,
        client_id="wabot-analytics",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        metadata_max_age_ms=30_000,
    )
    listener = _Assignments(consumer, options.from_beginning)
    consumer.subscribe(list(parsers), listener=listener)
    totals = Totals()
    started = time.monotonic()
    status = 0
    try:
        await consumer.start()
    except KafkaError as exc:
        log.error("cannot reach Kafka at %s: %s", options.bootstrap, exc)
        await consumer.stop()
        await store.close()
        return 2
    try:
        last_record: float | None = None
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            records = [r for rs in batches.values() for r in rs]
            now = time.monotonic()
            if records:
                batch = to_batch(records, parsers)
                hours = await store.write(batch)
                await consumer.commit()  # after the rows are on disk: at least once
                for record in records:
                    totals.records[record.topic] += 1
                totals.invalid += len(batch.invalid)
                totals.hours.update(h.strftime("%Y-%m-%dT%H:00Z") for h in hours)
                last_record = now
            if listener.assigned_at is None:
                if now - started > options.join_timeout:
                    log.error("no partitions assigned after %.0fs", options.join_timeout)
                    status = 2
                    break
                continue
            idle_since = max(listener.assigned_at, last_record or 0.0)
            if options.until_idle is not None and now - idle_since >= options.until_idle:
                log.info("no new record for %.1fs: stopping", options.until_idle)
                break
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
        await store.close()
    log.info(
        "read %s records (%d invalid) in %.1fs; hours updated: %s",
        dict(totals.records),
        totals.invalid,
        time.monotonic() - started,
        ", ".join(sorted(totals.hours)) or "none",
    )
    return status


def parse_args(argv: Sequence[str] | None = None) -> Options:
    """Command-line arguments, each defaulting to an ``ANALYTICS_*`` environment variable."""
    env = os.environ.get
    parser = argparse.ArgumentParser(
        description="Hourly wabot analytics from wa.inbound, wa.delivery and llm.calls into SQLite."
    )
    parser.add_argument(
        "--bootstrap",
        default=env("ANALYTICS_BOOTSTRAP", "127.0.0.1:9092"),
        help="Kafka bootstrap servers, host:port[,host:port] (ANALYTICS_BOOTSTRAP)",
    )
    parser.add_argument(
        "--topic-inbound", default=env("ANALYTICS_TOPIC_INBOUND", "wa.inbound"), metavar="TOPIC"
    )
    parser.add_argument(
        "--topic-delivery", default=env("ANALYTICS_TOPIC_DELIVERY", "wa.delivery"), metavar="TOPIC"
    )
    parser.add_argument(
        "--topic-llm-calls", default=env("ANALYTICS_TOPIC_LLM_CALLS", "llm.calls"), metavar="TOPIC"
    )
    parser.add_argument(
        "--group-id",
        default=env("ANALYTICS_GROUP_ID", "wabot-analytics"),
        help="consumer group; offsets are committed after each batch is written",
    )
    parser.add_argument(
        "--db",
        default=env("ANALYTICS_DB", "analytics.sqlite"),
        help="SQLite file, created if missing (ANALYTICS_DB)",
    )
    parser.add_argument(
        "--from-beginning",
        action="store_true",
        help="re-read every topic from its first record, whatever the group committed",
    )
    parser.add_argument(
        "--until-idle",
        type=float,
        default=None,
        metavar="SECONDS",
        help="exit after this long without a new record (default: run until stopped)",
    )
    parser.add_argument(
        "--join-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="exit with status 2 when no partition is assigned within this long",
    )
    args = parser.parse_args(argv)
    if args.until_idle is not None and args.until_idle <= 0:
        parser.error("--until-idle must be positive")
    return Options(
        bootstrap=args.bootstrap,
        topic_inbound=args.topic_inbound,
        topic_delivery=args.topic_delivery,
        topic_llm_calls=args.topic_llm_calls,
        group_id=args.group_id,
        db=args.db,
        from_beginning=args.from_beginning,
        until_idle=args.until_idle,
        join_timeout=args.join_timeout,
    )


async def _main(options: Options) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return await run(options, stop)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parses arguments, consumes, returns the exit status."""
    logging.basicConfig(
        level=os.environ.get("ANALYTICS_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    return asyncio.run(_main(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())

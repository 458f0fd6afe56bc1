"""The archive on a real worker, a real Kafka and real databases (SQLite and PostgreSQL).

- a short conversation (answers, a rate limit with its notice, delivery receipts, gateway
  events, a record that does not decode) fills every table with exactly the ids on the
  topics; reading every topic again from offset 0 changes no row;
- a worker killed with SIGKILL in the middle of a backlog loses no row once restarted;
- a database that goes down and comes back loses no row, the bot answers meanwhile, and
  the outage is one WARNING and one INFO in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy.engine import make_url

from pipeline.store.schema import head_revision
from schemas import DeliveryReceipt, GatewayEvent
from tests.conftest import Broker
from tests.conversation import ACCOUNT, Conversation, inbound
from tests.databases import (  # noqa: F401  (fixtures)
    Database,
    archive_lag,
    database_fixture,
    postgres_server_fixture,
    reset_group,
    snapshot,
    throwaway_postgres,
)

pytestmark = pytest.mark.integration

ARCHIVED = ["inbound", "outbound", "delivery", "llm_calls", "events", "decisions", "turns"]


@contextlib.contextmanager
def conversation(broker: Broker, tmp: Path, url: str, **env: str) -> Iterator[Conversation]:
    conv = Conversation(broker, tmp, WABOT_DATABASE_URL=url, WABOT_ARCHIVE_RETRY_MAX_S="1", **env)
    try:
        yield conv
    finally:
        conv.close()


def topics_of(conv: Conversation) -> list[str]:
    return [conv.topics[name] for name in ARCHIVED]


async def until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Await ``predicate()`` (a coroutine function) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await predicate()
        if last:
            return last
        await asyncio.sleep(0.3)
    raise AssertionError(f"{what}: not true after {timeout}s (last: {last!r})")


async def caught_up(conv: Conversation, timeout: float = 60) -> None:
    group = f"{conv.app_id}-archive"

    async def lag_zero() -> bool:
        return await archive_lag(conv.broker.bootstrap, group, topics_of(conv)) == 0

    await until(lag_zero, timeout, "the archive's consumer group caught up")


async def produce(conv: Conversation, topic: str, records: list[tuple[str, bytes]]) -> None:
    producer = await conv.producer()
    for key, value in records:
        await producer.send(conv.topics[topic], key=key.encode(), value=value)
    await producer.flush()


def receipts_for(outbound: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
    """A 'sent' and a 'read' receipt per outbound message, as the gateway would write them."""
    out = []
    sent = datetime.now(UTC)
    for n, o in enumerate(outbound):
        # The furthest status first: the order they are archived in must not matter.
        for status, at in (("read", sent + timedelta(seconds=2)), ("sent", sent)):
            receipt = DeliveryReceipt(
                outbound_id=o["outbound_id"],
                chat_id=o["chat_id"],
                account_id=o["account_id"],
                status=status,
                wa_message_id=f"true_{o['chat_id']}_WA{n}",
                at=at,
            )
            out.append((o["chat_id"], receipt.model_dump_json().encode()))
    return out


async def read(conv: Conversation, name: str) -> list[dict[str, Any]]:
    """Every record of topic ``name`` that is JSON (the test writes one that is not)."""
    consumer = AIOKafkaConsumer(
        conv.topics[name],
        bootstrap_servers=conv.broker.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        partitions = consumer.assignment() or set()
        while not partitions:
            await asyncio.sleep(0.1)
            partitions = consumer.assignment()
        ends = await consumer.end_offsets(list(partitions))
        records: list[dict[str, Any]] = []
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                for record in batch:
                    with contextlib.suppress(ValueError):
                        records.append(json.loads(record.value))
        return records
    finally:
        await consumer.stop()


async def expected_ids(conv: Conversation) -> dict[str, set[Any]]:
    """The ids the store must hold, read from the topics themselves."""

    inbound_ids = {
        f"in|{r['account_id']}|{r['chat_id']}|{r['message_id']}"
        for r in await read(conv, "inbound")
    }
    out_ids = {f"out|{r['outbound_id']}" for r in await read(conv, "outbound")}
    out_ids |= {
        f"out|{r['outbound_id']}" for r in await read(conv, "delivery") if "outbound_id" in r
    }
    turns = await read(conv, "turns")
    return {
        "messages": inbound_ids | out_ids,
        "turns": {r["turn_id"] for r in turns},
        "turn_messages": {(t["turn_id"], i) for t in turns for i in range(len(t["message_ids"]))},
        "llm_calls": {r["call_id"] for r in await read(conv, "llm_calls")},
        "decisions": {r["decision_id"] for r in await read(conv, "decisions")},
        "gateway_events": {len(await read(conv, "events"))},  # no id on the topic: the count
    }


def ids_in(tables: dict[str, list[dict[str, Any]]]) -> dict[str, set[Any]]:
    return {
        "messages": {r["id"] for r in tables["messages"]},
        "turns": {r["turn_id"] for r in tables["turns"]},
        "turn_messages": {(r["turn_id"], r["position"]) for r in tables["turn_messages"]},
        "llm_calls": {r["call_id"] for r in tables["llm_calls"]},
        "decisions": {r["decision_id"] for r in tables["decisions"]},
        "gateway_events": {len(tables["gateway_events"])},
    }


async def test_conversation_archived_and_reading_again_changes_nothing(
    kafka_broker: Broker, tmp_path: Path, database: Database
) -> None:
    a, b = "491510000001@c.us", "491510000002@c.us"
    with conversation(kafka_broker, tmp_path, database.url, WABOT_RATE_CHAT_PER_MINUTE="1") as conv:
        worker = conv.start_worker()
        first = [inbound(a, "hello"), inbound(b, "hi there")]
        await conv.send(*first)
        await conv.collect("outbound", lambda r: len(r) >= 2, timeout=60)
        # The second message of chat a within the minute: a rate limit, its notice, a
        # skipped LLM call and a GuardDecision.
        await conv.send(inbound(a, "again?"))
        decisions = await conv.collect("decisions", lambda r: len(r) >= 1, timeout=60)
        outbound = await conv.collect("outbound", lambda r: len(r) >= 3, timeout=60)
        assert any(d["reason"] == "rate_limited_chat" for d in decisions), decisions
        await produce(conv, "delivery", receipts_for(outbound))
        ready = GatewayEvent(gateway="main", account_id=ACCOUNT, kind="state", state="ready")
        ack = GatewayEvent(
            gateway="main", account_id=ACCOUNT, kind="ack", ack=3, chat_id=a, message_ids=["X1"]
        )
        await produce(
            conv,
            "events",
            [(ACCOUNT, e.model_dump_json().encode()) for e in (ready, ack)],
        )
        await produce(conv, "delivery", [(a, b"{not json")])

        await caught_up(conv)
        expected = await expected_ids(conv)
        tables = await snapshot(database.url)
        assert ids_in(tables) == expected
        assert expected["llm_calls"] and expected["decisions"] and expected["turns"]

        # What the rows say, beyond their ids.
        assert {c["chat_id"] for c in tables["chats"]} == {a, b}
        replies = [m for m in tables["messages"] if m["direction"] == "out"]
        assert {m["kind"] for m in replies} == {"reply", "notice"}
        assert all(m["delivery_status"] == "read" and m["text"] for m in replies), replies
        assert all(m["sent_at"] <= m["read_at"] and m["wa_message_id"] for m in replies)
        ins = [m for m in tables["messages"] if m["direction"] == "in"]
        assert sorted(m["text"] for m in ins) == ["again?", "hello", "hi there"]
        linked = {r["message_id"] for r in tables["turn_messages"]}
        assert {m.message_id for m in first} <= linked
        assert {c["status"] for c in tables["llm_calls"]} >= {"ok", "skipped"}
        assert [d["reason"] for d in tables["decisions"]] == [d["reason"] for d in decisions]
        assert sorted(e["kind"] for e in tables["gateway_events"]) == ["ack", "state"]
        dead = await read(conv, "dlq")
        assert [d["source_topic"] for d in dead if d["agent"] == "archive"] == [
            conv.topics["delivery"]
        ]
        log = worker.log.read_text()
        assert f"schema upgraded from empty to {head_revision()}" in log

        # Every topic again from offset 0: the same rows, not one more.
        worker.stop()
        await reset_group(kafka_broker.bootstrap, f"{conv.app_id}-archive", topics_of(conv))
        assert (
            await archive_lag(kafka_broker.bootstrap, f"{conv.app_id}-archive", topics_of(conv)) > 0
        )
        conv.start_worker()
        await caught_up(conv)
        assert await snapshot(database.url) == tables
        await conv.stop_clients()


async def test_sigkill_mid_archive_loses_no_row(
    kafka_broker: Broker, tmp_path: Path, database: Database
) -> None:
    n = 3000
    receipts = [
        DeliveryReceipt(
            outbound_id=f"k-{i}",
            chat_id=f"4916{i % 50:08d}@c.us",
            account_id=ACCOUNT,
            status="sent",
        )
        for i in range(n)
    ]
    with conversation(kafka_broker, tmp_path, database.url, WABOT_ARCHIVE_BATCH_SIZE="5") as conv:
        # The backlog before the worker: the topic needs the worker's partition count.
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
        await admin.start()
        try:
            topic = conv.topics["delivery"]
            await admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])
        finally:
            await admin.close()
        values = [(r.chat_id, r.model_dump_json().encode()) for r in receipts]
        await produce(conv, "delivery", values)
        worker = conv.start_worker(wait=False)

        async def some_rows() -> int:
            assert worker.proc is not None and worker.proc.poll() is None, worker.tail()
            with contextlib.suppress(Exception):
                return len((await snapshot(database.url))["messages"])
            return 0

        at_kill = await until(some_rows, 120, "the archive wrote its first rows")
        worker.stop(signal.SIGKILL)
        assert at_kill < n, "the backlog was archived before the kill; make it larger"
        conv.start_worker()
        await caught_up(conv, timeout=120)
        rows = (await snapshot(database.url))["messages"]
        assert sorted(r["id"] for r in rows) == sorted(f"out|k-{i}" for i in range(n))
        assert all(r["delivery_status"] == "sent" for r in rows)
        await conv.stop_clients()


@contextlib.contextmanager
def sqlite_locked(url: str) -> Iterator[None]:
    """Another process's exclusive lock on the SQLite file: every writer gets 'database is
    locked' (root ignores file modes, so an unwritable file would not stop CI's writes)."""
    path = make_url(url).database
    assert path
    connection = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        connection.execute("BEGIN EXCLUSIVE")
        yield
        connection.execute("COMMIT")
    finally:
        connection.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_database_down_then_back_loses_no_row(
    kafka_broker: Broker, tmp_path: Path, kind: str
) -> None:
    # Its own PostgreSQL server (or SQLite file): taking it down must not touch other tests.
    with contextlib.ExitStack() as stack:
        if kind == "postgresql":
            server = stack.enter_context(throwaway_postgres())
            url = await asyncio.to_thread(server.create_database)
        else:
            url = f"sqlite+aiosqlite:///{tmp_path / 'store' / 'wabot.db'}"
        conv = stack.enter_context(conversation(kafka_broker, tmp_path, url))
        worker = conv.start_worker()
        await conv.send(inbound("491520000001@c.us", "before"))
        await until(lambda: _count(url, "turns"), 60, "the first turn archived before the outage")

        down = (
            contextlib.nullcontext()
            if kind == "postgresql"
            else sqlite_locked(url)  # held for the block below
        )
        if kind == "postgresql":
            server.stop("fast")
        with down:
            chats = [f"49152{i:07d}@c.us" for i in range(5)]
            await conv.send(*(inbound(chat, f"while down {chat}") for chat in chats))
            # The bot answers while its archive waits: it has its own consumer group.
            replies = await conv.collect(
                "outbound", lambda r: {o["chat_id"] for o in r} >= set(chats), timeout=60
            )
            assert {o["chat_id"] for o in replies} >= set(chats)
            await produce(conv, "delivery", receipts_for(replies))
            await asyncio.sleep(6)  # a few retries (at most 1 s apart here)
            assert (
                await archive_lag(kafka_broker.bootstrap, f"{conv.app_id}-archive", topics_of(conv))
                > 0
            ), "offsets were committed while the store was down"
        if kind == "postgresql":
            server.start()

        await caught_up(conv, timeout=90)
        assert ids_in(await snapshot(url)) == await expected_ids(conv)
        log = worker.log.read_text()
        assert log.count("archive: the store is unavailable") == 1, log[-3000:]
        assert log.count("archive: the store is back after") == 1
        await conv.stop_clients()


async def _count(url: str, table: str) -> int:
    with contextlib.suppress(Exception):
        return len((await snapshot(url))[table])
    return 0

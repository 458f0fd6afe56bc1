"""A backlog of turns on Apache Kafka is worked through with a bounded number held in memory.

respond never blocks its stream loop, so what bounds its memory is flow control at the
consumer (agents/intake.py): once WABOT_RESPOND_MAX_QUEUED turns are held, fetching of
chat.turns stops until half are done. Here a worker starts on 400 waiting messages with room
for 30 turns: every chat is answered once per message, in order and with its history, and
the worker never held more than the mark plus what its fetches had already delivered.

The guard stops with respond: while respond is full it does not read wa.inbound either, so
it cannot turn the whole backlog into turns ahead of the replies (which held Faust's one
delivery loop and slowed the replies to ~10/s for minutes after a 200,000-message outage).
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import re
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pipeline.config.settings import Settings
from tests.conftest import Broker
from tests.conversation import Conversation, by_chat, inbound

pytestmark = pytest.mark.integration

SYS = hashlib.sha1(Settings().system_prompt.encode()).hexdigest()[:6]
HIGH, POLL = 30, 20
BUFFER = 16  # WABOT_STREAM_BUFFER_MAXSIZE where the guard's pause is tested


CHATS = [f"49175{i:04d}@c.us" for i in range(40)]
PER_CHAT = 10


def backlog_conversation(
    broker: Broker, tmp_path: Path, per_chat: int = PER_CHAT, **settings: str
) -> Conversation:
    """A Conversation with ``per_chat`` messages of each of CHATS waiting on wa.inbound."""
    conv = Conversation(
        broker,
        tmp_path,
        WABOT_RESPOND_MAX_QUEUED=str(HIGH),
        WABOT_CONSUMER_MAX_POLL_RECORDS=str(POLL),
        WABOT_RESPOND_MAX_IN_FLIGHT="16",
        **settings,
    )

    async def backlog() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(conv.topics["inbound"], 4, 1)])
        await admin.close()
        for k in range(per_chat):
            await conv.send(*(inbound(chat, f"{chat} m{k}") for chat in CHATS))
        await conv.stop_clients()

    try:
        asyncio.run(backlog())  # all of it waits before the worker starts
    except BaseException:
        conv.close()
        raise
    return conv


def test_a_backlog_is_answered_in_order_with_few_turns_held(
    kafka_broker: Broker, tmp_path: Path
) -> None:
    chats, per_chat = CHATS, PER_CHAT
    conv = backlog_conversation(kafka_broker, tmp_path)
    try:
        conv.standin.set_failures([], latency_s=0.02)
        worker = conv.start_worker()
        records = asyncio.run(
            conv.collect(
                "outbound",
                lambda r: len(r) >= len(chats) * per_chat,
                timeout=180,
                settle=2.0,
            )
        )
        grouped = by_chat(records)
        assert sorted(grouped) == sorted(chats)
        for chat, got in grouped.items():
            # Turn k's prompt: the system prompt, k earlier exchanges, the new message.
            assert [r["text"] for r in got] == [
                f"echo[{2 * k + 2}|sys:{SYS}]: {chat} m{k}" for k in range(per_chat)
            ], chat
        log = worker.log.read_text(errors="replace")
        paused = [
            int(n) for n in re.findall(r"(\d+) records of \S+ held; fetching \S+ paused", log)
        ]
        peaks = [int(n) for n in re.findall(r"records of \S+ held \(at most (\d+) so far\)", log)]
        assert paused and all(n >= HIGH for n in paused), log[-3000:]
        # What fetches already under way deliver after the pause: two batches at most.
        assert peaks and max(peaks) <= HIGH + 2 * POLL, peaks
    finally:
        conv.close()


async def produce_times(broker: Broker, topic: str, count: int, timeout: float) -> list[int]:
    """The broker timestamps (ms; the worker's producer sets them) of ``topic``'s first
    ``count`` records, sorted; fewer if ``timeout`` s pass first."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=broker.bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    times: list[int] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(times) < count and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            times.extend(r.timestamp for records in batch.values() for r in records)
    finally:
        await consumer.stop()
    return sorted(times)


def test_the_guard_waits_while_respond_is_full(kafka_broker: Broker, tmp_path: Path) -> None:
    per_chat = 50
    total = len(CHATS) * per_chat
    conv = backlog_conversation(
        kafka_broker,
        tmp_path,
        per_chat,
        WABOT_STREAM_BUFFER_MAXSIZE=str(BUFFER),
        WABOT_LOOP_MAX_BOT_REPLIES="0",  # 50 messages in a row from a chat are no bot loop here
    )
    try:
        # 16 calls in flight at 0.2 s: replies come at 80/s at most, the guard reads the
        # 2,000 waiting messages many times faster.
        conv.standin.set_failures([], latency_s=0.2)
        conv.start_worker()

        async def both() -> tuple[list[int], list[int]]:
            turns, replies = await asyncio.gather(
                produce_times(kafka_broker, conv.topics["turns"], total, 180),
                produce_times(kafka_broker, conv.topics["outbound"], total, 180),
            )
            return turns, replies

        turns, replies = asyncio.run(both())
        assert len(turns) == total and len(replies) == total, (len(turns), len(replies))
        # Turns made but not answered yet, at the moment each turn was made: the guard stops
        # at HIGH, then finishes what its buffer and the fetch under way hold (56 here).
        # Without the pause it makes all 2,000 turns before respond gets the first: aiokafka
        # hands out wa.inbound's fetched records ahead of chat.turns'.
        ahead = max(n + 1 - bisect.bisect_right(replies, at) for n, at in enumerate(turns))
        assert ahead <= HIGH + BUFFER + 3 * POLL, ahead
    finally:
        conv.close()

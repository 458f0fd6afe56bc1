"""A backlog of turns on Apache Kafka is worked through with a bounded number held in memory.

respond never blocks its stream loop, so what bounds its memory is flow control at the
consumer (agents/intake.py): once WABOT_RESPOND_MAX_QUEUED turns are held, fetching of
chat.turns stops until half are done. Here a worker starts on 400 waiting messages with room
for 30 turns: every chat is answered once per message, in order and with its history, and
the worker never held more than the mark plus what its fetches had already delivered.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pipeline.settings import Settings
from tests.conftest import Broker
from tests.conversation import Conversation, by_chat, inbound

pytestmark = pytest.mark.integration

SYS = hashlib.sha1(Settings().system_prompt.encode()).hexdigest()[:6]
HIGH, POLL = 30, 20


def test_a_backlog_is_answered_in_order_with_few_turns_held(
    kafka_broker: Broker, tmp_path: Path
) -> None:
    chats = [f"49175{i:04d}@c.us" for i in range(40)]
    per_chat = 10
    conv = Conversation(
        kafka_broker,
        tmp_path,
        WABOT_RESPOND_MAX_QUEUED=str(HIGH),
        WABOT_CONSUMER_MAX_POLL_RECORDS=str(POLL),
        WABOT_RESPOND_MAX_IN_FLIGHT="16",
    )
    try:
        conv.standin.set_failures([], latency_s=0.02)

        async def backlog() -> None:
            admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
            await admin.start()
            await admin.create_topics([NewTopic(conv.topics["inbound"], 4, 1)])
            await admin.close()
            for k in range(per_chat):
                await conv.send(*(inbound(chat, f"{chat} m{k}") for chat in chats))
            await conv.stop_clients()

        asyncio.run(backlog())  # all of it waits before the worker starts
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
        paused = [int(n) for n in re.findall(r"(\d+) records of \S+ held; fetching it paused", log)]
        peaks = [int(n) for n in re.findall(r"at most (\d+) so far\); fetching it again", log)]
        assert paused and all(n >= HIGH for n in paused), log[-3000:]
        # What fetches already under way deliver after the pause: two batches at most.
        assert peaks and max(peaks) <= HIGH + 2 * POLL, peaks
    finally:
        conv.close()

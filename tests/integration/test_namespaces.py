"""Two apps on one cluster: each reads only its own internal topics, and a new consumer
group on wa.inbound starts at recent records, not at the beginning of a long retention."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.conftest import Broker
from tests.conversation import Conversation, inbound

pytestmark = pytest.mark.integration


def test_a_second_app_on_the_cluster_does_not_answer_the_first_ones_turns(
    kafka_broker: Broker, tmp_path: Path
) -> None:
    # Two bots (say production and staging) on one cluster: their own app ids, inbound and
    # outbound topics, and the internal topics left at their shared default names.
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = Conversation(kafka_broker, tmp_path / "a")
    second = Conversation(kafka_broker, tmp_path / "b")
    for key in ("turns", "llm_results", "guard_ticks"):
        second.env[f"WABOT_TOPIC_{key.upper()}"] = first.env[f"WABOT_TOPIC_{key.upper()}"]
    chats = [f"4917300000{i:03d}@c.us" for i in range(25)]
    try:
        first.start_worker()

        async def answered_by_first() -> list[dict[str, Any]]:
            await first.send(*(inbound(chat, "hello") for chat in chats))
            out = await first.collect("outbound", lambda r: len(r) >= 25)
            await first.stop_clients()
            return out

        assert len(asyncio.run(answered_by_first())) == 25
        first.close()
        second.start_worker()
        time.sleep(5)  # what it would answer, it answers within a second or two
        answered = asyncio.run(second.collect("outbound", lambda r: False, timeout=3))
    finally:
        first.close()
        second.close()
    assert answered == []  # main answered all 25 turns of the first app again


def test_a_new_consumer_group_skips_what_is_too_old_to_answer(
    kafka_broker: Broker, tmp_path: Path
) -> None:
    conv = Conversation(kafka_broker, tmp_path, WABOT_IGNORE_OLDER_THAN_S="600")
    chat = "4917300000999@c.us"
    two_hours_ago = int((time.time() - 7200) * 1000)

    async def record_old_traffic() -> None:
        # Two hours of history, as wa.inbound keeps with the retention replays need:
        # a record that never decoded and a message that was answered long ago.
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(conv.topics["inbound"], 4, 1)])
        await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
        await producer.start()
        old = inbound(chat, "old question")
        for value in (b"{not json", old.model_dump_json().encode()):
            await producer.send_and_wait(
                conv.topics["inbound"], key=chat.encode(), value=value, timestamp_ms=two_hours_ago
            )
        await producer.stop()

    async def exchange() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        await conv.send(inbound(chat, "new question"))
        out = await conv.collect("outbound", lambda r: len(r) >= 1, settle=2.0)
        dlq = await conv.collect("dlq", lambda r: False, timeout=2)
        await conv.stop_clients()
        return out, dlq

    asyncio.run(record_old_traffic())
    worker = conv.start_worker()
    try:
        out, dlq = asyncio.run(exchange())
    finally:
        conv.close()
    assert [r["text"].rsplit(": ", 1)[1] for r in out] == ["new question"]
    # main re-judged the two-hour-old record and dead-lettered it again (the archive, which
    # keeps everything, reads the topic from its start in a group of its own)
    assert [d for d in dlq if d["agent"] == "guard"] == []
    assert "no committed offset on" in worker.log.read_text()

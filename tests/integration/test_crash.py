"""Nothing lost, nothing answered twice: kill -9 mid-run, and a second worker joining.

1,000 turns over 100 chats. Every turn must end with exactly one outbound_id; a record
may repeat an outbound_id (with the same text) only because the sink skips ids it has
sent. Each chat's replies must come in order, and every prompt must hold the chat's
earlier exchanges, which after a crash or a hand-over come from the changelog tables.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import signal
from pathlib import Path
from typing import Any

import pytest

from pipeline.config.settings import Settings
from tests.conftest import Broker
from tests.conversation import Conversation, by_chat, inbound

pytestmark = pytest.mark.integration

SYS = hashlib.sha1(Settings().system_prompt.encode()).hexdigest()[:6]
CHATS = [f"4915{i:06d}@c.us" for i in range(100)]
TURNS = 10


def _check(records: list[dict[str, Any]]) -> dict[str, int]:
    """Assert the invariants; return counts for the report."""
    texts: dict[str, str] = {}
    for record in records:
        first = texts.setdefault(record["outbound_id"], record["text"])
        assert first == record["text"], f"outbound id {record['outbound_id']} with two texts"
    assert len(texts) == len(CHATS) * TURNS, f"{len(texts)} distinct replies"
    for chat, chat_records in by_chat(records).items():
        order: list[str] = []
        for record in chat_records:
            if record["outbound_id"] not in order:
                order.append(record["outbound_id"])
        assert [texts[o] for o in order] == [
            f"echo[{2 * k + 2}|sys:{SYS}]: {chat} m{k}" for k in range(TURNS)
        ], chat
    return {"records": len(records), "distinct": len(texts)}


def _distinct(records: list[dict[str, Any]]) -> int:
    return len({r["outbound_id"] for r in records})


def _run(conv: Conversation, midway: Any, at: int = 300) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        await conv.send(*(inbound(chat, f"{chat} m{k}") for k in range(TURNS) for chat in CHATS))
        await conv.collect("outbound", lambda r: _distinct(r) >= at, timeout=120)
        midway()
        records = await conv.collect(
            "outbound", lambda r: _distinct(r) >= len(CHATS) * TURNS, timeout=240, settle=3.0
        )
        await conv.stop_clients()
        return records

    return asyncio.run(run())


def test_kill_9_mid_run_loses_nothing_and_sends_nothing_twice(
    kafka_broker: Broker, tmp_path: Path
) -> None:
    # A cap of 8 LLM calls in flight: most of the 1,000 turns wait in the chat queues.
    conv = Conversation(kafka_broker, tmp_path, WABOT_RESPOND_MAX_IN_FLIGHT="8")
    conv.standin.set_failures([], latency_s=0.05)
    first = conv.start_worker()
    try:

        def crash_and_restart() -> None:
            first.stop(signal.SIGKILL)
            conv.start_worker(wait=False)

        records = _run(conv, crash_and_restart)
    finally:
        conv.close()
    counts = _check(records)
    print(
        f"kill -9: {counts['distinct']} replies, {counts['records'] - counts['distinct']} "
        "repeated outbound ids for the sink to skip"
    )


def test_second_worker_takes_partitions_with_their_state(
    kafka_broker: Broker, tmp_path: Path
) -> None:
    conv = Conversation(kafka_broker, tmp_path)
    # A 1 s LLM makes each chat's ten turns take ten seconds or more, so the run is still
    # going when the second worker, started after 100 replies, has joined the group.
    conv.standin.set_failures([], latency_s=1.0)
    conv.start_worker()
    try:
        records = _run(conv, lambda: conv.start_worker(wait=False), at=100)
        second_log = conv.workers[1].log.read_text()
    finally:
        conv.close()
    _check(records)
    # The newcomer answered turns of chats that began on the first worker, with their history.
    answered = re.findall(r"reply to turn \S+ seq=(\d+)", second_log)
    assert answered, "the second worker answered nothing"
    assert any(int(seq) > 0 for seq in answered)

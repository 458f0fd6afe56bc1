"""Limits checked before any LLM call: sender per day, the daily token budget, the loop guard.

Plus the zero-setup default: with no LLM configured the worker answers through its
built-in stand-in, on the embedded broker as on Apache Kafka.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiokafka.partitioner import murmur2

from pipeline.testing.workers import FAUST, WorkerProcess
from tests.conftest import REPO, Broker
from tests.conversation import Conversation, inbound

pytestmark = pytest.mark.integration


def _kinds(records: list[dict[str, Any]]) -> list[str]:
    return [r["kind"] for r in records]


def _exchange(conv: Conversation, messages: list[Any], want_calls: int) -> tuple[list, list]:
    async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        await conv.send(*messages, gap_s=0.4)
        calls = await conv.collect("llm_calls", lambda r: len(r) >= want_calls, settle=2.0)
        out = await conv.collect("outbound", lambda r: True, settle=1.0)
        await conv.stop_clients()
        return out, calls

    return asyncio.run(run())


def test_sender_per_day_limit(kafka_broker: Broker, tmp_path: Path) -> None:
    conv = Conversation(kafka_broker, tmp_path, WABOT_RATE_SENDER_PER_DAY="2")
    conv.start_worker()
    group = "120363000000777@g.us"
    sender = "4917700000001@c.us"
    try:
        out, calls = _exchange(
            conv,
            [inbound(group, f"!bot q{i}", sender_id=sender) for i in range(4)],
            want_calls=4,
        )
    finally:
        conv.close()
    assert _kinds(out) == ["reply", "reply", "notice"]
    assert [c["decision"] for c in calls if c["status"] == "skipped"] == ["rate_limited_sender"] * 2


def test_sender_limit_holds_across_workers(kafka_broker: Broker, tmp_path: Path) -> None:
    # The limit is per sender for the whole account. A sender asking in four groups, one
    # on each partition, talks to both workers (each owns two partitions and its own part
    # of every partitioned table): 2 replies in all, not 2 per worker.
    groups = [
        "120363000000780@g.us",
        "120363000000777@g.us",
        "120363000000783@g.us",
        "120363000000778@g.us",
    ]
    assert [(murmur2(g.encode()) & 0x7FFFFFFF) % 4 for g in groups] == [0, 1, 2, 3]
    conv = Conversation(kafka_broker, tmp_path, WABOT_RATE_SENDER_PER_DAY="2")
    first = conv.start_worker()
    conv.start_worker()
    first.wait_ready()  # its share of the partitions after the second one joined
    sender = "4917700000002@c.us"
    try:
        out, calls = _exchange(
            conv,
            [inbound(group, f"!bot q{i}", sender_id=sender) for i, group in enumerate(groups)],
            want_calls=4,
        )
    finally:
        conv.close()
    assert _kinds(out).count("reply") == 2, out
    skipped = [c for c in calls if c["status"] == "skipped"]
    assert [c["decision"] for c in skipped] == ["rate_limited_sender"] * 2


def test_daily_token_budget_stops_llm_calls(kafka_broker: Broker, tmp_path: Path) -> None:
    # The stand-in counts ~20 tokens for the first exchange: a budget of 10 allows one.
    conv = Conversation(kafka_broker, tmp_path, WABOT_DAILY_TOKEN_BUDGET="10")
    conv.start_worker()
    chats = ["4917700000010@c.us", "4917700000011@c.us"]
    try:
        out, calls = _exchange(
            conv, [inbound(chats[0], "first"), inbound(chats[1], "second")], want_calls=2
        )
    finally:
        conv.close()
    ok = [c for c in calls if c["status"] == "ok"]
    skipped = [c for c in calls if c["status"] == "skipped"]
    assert len(ok) == 1 and ok[0]["total_tokens"] > 10
    assert [c["decision"] for c in skipped] == ["token_budget"]
    assert sorted(_kinds(out)) == ["notice", "reply"]


def test_loop_guard_stops_two_bots_talking(kafka_broker: Broker, tmp_path: Path) -> None:
    conv = Conversation(kafka_broker, tmp_path, WABOT_LOOP_MAX_BOT_REPLIES="3")
    conv.start_worker()
    other_bot = "4917700000020@c.us"
    try:
        out, calls = _exchange(
            conv, [inbound(other_bot, f"auto-reply {i}") for i in range(6)], want_calls=6
        )
    finally:
        conv.close()
    assert _kinds(out) == ["reply"] * 3  # and no notice: it would only feed the loop
    assert [c["decision"] for c in calls if c["status"] == "skipped"] == ["loop_guard"] * 3


def test_dev_default_answers_with_the_built_in_standin(any_broker: Broker, tmp_path: Path) -> None:
    """``make dev``'s process with no LLM configured: the stand-in answers; the worker alone
    refuses to start without an LLM and says what to do."""
    conv = Conversation(any_broker, tmp_path, WABOT_LLM_BASE_URL="", WABOT_BURST_QUIET_S="0.3")
    alone = subprocess.run(
        [FAUST, "-A", "pipeline", "worker"],
        cwd=REPO,
        env={**os.environ, **conv.env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert alone.returncode == 2, alone.stderr[-2000:]
    assert "WABOT_LLM_BASE_URL is empty" in alone.stderr and "make dev" in alone.stderr
    dev = [sys.executable, "-m", "pipeline.dev"]
    worker = WorkerProcess(conv.env, tmp_path / "dev.log", cwd=REPO, command=dev).start()
    conv.workers.append(worker)
    worker.wait_ready()
    chat = "4917700000030@c.us"
    try:

        async def run() -> list[dict[str, Any]]:
            await conv.send(inbound(chat, "hello bot"))
            out = await conv.collect("outbound", lambda r: len(r) >= 1)
            await conv.stop_clients()
            return out

        out = asyncio.run(run())
    finally:
        conv.close()
    assert [r["text"].split("]: ", 1)[1] for r in out] == ["hello bot"]
    # The ready block says where the answers come from.
    assert "the built-in stand-in at http://127.0.0.1:" in worker.log.read_text()

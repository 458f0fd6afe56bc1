"""A chat whose window outgrows a small model's context still gets real replies (Apache Kafka).

The stand-in plays a vLLM server with a context of 400 estimated tokens; the window grows by
two ~300-character entries a turn, so from the third turn on the full prompt no longer fits and
the worker's LLM client must leave out the oldest entries instead of sending the fallback reply.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest

from pipeline.config.settings import Settings
from tests.conftest import Broker
from tests.conversation import Conversation, inbound

pytestmark = pytest.mark.integration

SYS = hashlib.sha1(Settings().system_prompt.encode()).hexdigest()[:6]


def test_a_window_that_outgrows_a_small_context_still_gets_real_replies(
    kafka_broker: Broker, tmp_path: Path
) -> None:
    conversation = Conversation(kafka_broker, tmp_path, WABOT_LLM_MAX_TOKENS="64")
    conversation.standin.set_context(400, "vllm")
    conversation.start_worker()
    chat = "4917100000500@c.us"
    texts = [f"question {k}: " + "supercalifragilistic " * 14 for k in range(8)]
    try:

        async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            await conversation.send(*(inbound(chat, text) for text in texts), gap_s=0.05)
            out = await conversation.collect("outbound", lambda r: len(r) >= 8, timeout=90)
            calls = await conversation.collect(
                "llm_calls", lambda r: len([c for c in r if c["status"] == "ok"]) >= 8
            )
            await conversation.stop_clients()
            return out, calls

        out, calls = asyncio.run(run())
    finally:
        conversation.close()
    assert [r["kind"] for r in out] == ["reply"] * 8
    for record, text in zip(out, texts, strict=True):
        assert record["text"].startswith("echo[")
        assert record["text"].endswith(f"|sys:{SYS}]: {text.strip()}")
    # The first turns fit whole; later ones were asked again without their oldest entries.
    assert out[0]["text"].startswith(f"echo[2|sys:{SYS}]")
    refused = [c for c in calls if c["status"] == "retry"]
    assert refused and {c["http_status"] for c in refused} == {400}
    assert any(c["dropped_entries"] > 0 for c in calls if c["status"] == "ok")
    assert not [c for c in calls if c["status"] == "fallback"]


def test_a_long_turn_keeps_what_the_customer_asked_last(
    kafka_broker: Broker, tmp_path: Path
) -> None:
    """A huge message and a short question in one burst: the model still sees the question,
    and the characters cut are recorded on the turn's LLM call."""
    conversation = Conversation(
        kafka_broker, tmp_path, WABOT_BURST_QUIET_S="1.5", WABOT_LLM_MAX_MESSAGE_CHARS="1000"
    )
    conversation.start_worker()
    chat = "4917100000501@c.us"
    huge = "Here is my whole order history. " + "line item, " * 20_000
    try:

        async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            await conversation.send(inbound(chat, huge), inbound(chat, "still there?"))
            out = await conversation.collect("outbound", lambda r: len(r) >= 1, timeout=60)
            calls = await conversation.collect(
                "llm_calls", lambda r: any(c["status"] == "ok" for c in r)
            )
            turns = await conversation.collect("turns", lambda r: len(r) >= 1)
            await conversation.stop_clients()
            return out, calls + turns

        out, records = asyncio.run(run())
    finally:
        conversation.close()
    [reply] = out
    assert reply["text"].endswith("still there?"), reply["text"][-200:]
    assert "Here is my whole order history." in reply["text"]
    [turn] = [r for r in records if "message_ids" in r]
    assert len(turn["message_ids"]) == 2
    assert len(turn["text"]) <= 1000
    [call] = [r for r in records if r.get("status") == "ok"]
    assert call["cut_chars"] == turn["cut_chars"] > len(huge) - 1000

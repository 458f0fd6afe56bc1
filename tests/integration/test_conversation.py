"""The conversation pipeline on Apache Kafka: wa.inbound records in, wa.outbound records out.

A real worker process runs guard, respond and apply_reply; the LLM is the stand-in
server on 127.0.0.1, which echoes the number of messages and the last user message of
the prompt it received, so a reply shows what the model was asked.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.config.settings import Settings
from pipeline.dev.standin.failures import Failure
from tests.conftest import Broker
from tests.conversation import ACCOUNT, Conversation, by_chat, inbound

pytestmark = pytest.mark.integration

SYS = hashlib.sha1(Settings().system_prompt.encode()).hexdigest()[:6]


def replies(records: list[dict[str, Any]], kind: str = "reply") -> list[dict[str, Any]]:
    return [r for r in records if r["kind"] == kind]


@pytest.fixture(scope="module")
def conv(kafka_broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Conversation]:
    """One worker with bursts and limits off, shared by the tests of plain behaviour."""
    conversation = Conversation(kafka_broker, tmp_path_factory.mktemp("conv"))
    conversation.start_worker()
    yield conversation
    conversation.close()


def test_many_chats_each_in_order_with_its_history(conv: Conversation) -> None:
    chats = [f"49170{i:04d}@c.us" for i in range(20)]
    conv.standin.set_failures([], latency_s=0.2)

    async def run() -> list[dict[str, Any]]:
        for k in range(4):
            await conv.send(*(inbound(chat, f"{chat} message {k}") for chat in chats))
        out = await conv.collect(
            "outbound", lambda r: len([x for x in r if x["chat_id"] in chats]) >= 80, timeout=90
        )
        await conv.stop_clients()
        return out

    records = asyncio.run(run())
    conv.standin.set_failures([], latency_s=0.0)
    grouped = by_chat([r for r in records if r["chat_id"] in chats])
    assert sorted(grouped) == sorted(chats)
    for chat, chat_replies in grouped.items():
        # Turn k's prompt holds the system prompt, k earlier exchanges and the new message.
        assert [r["text"] for r in chat_replies] == [
            f"echo[{2 * k + 2}|sys:{SYS}]: {chat} message {k}" for k in range(4)
        ], chat
        assert len({r["outbound_id"] for r in chat_replies}) == 4


def test_duplicates_and_ciphertext_are_answered_once(conv: Conversation) -> None:
    chat = "4917100000099@c.us"
    first = inbound(chat, "", type="ciphertext")
    decrypted = first.model_copy(update={"type": "chat", "body": "decrypted text"})

    async def run() -> list[dict[str, Any]]:
        await conv.send(first, decrypted, decrypted, gap_s=0.1)
        out = await conv.collect(
            "outbound", lambda r: any(x["chat_id"] == chat for x in r), settle=3.0
        )
        await conv.stop_clients()
        return out

    mine = [r for r in asyncio.run(run()) if r["chat_id"] == chat]
    assert [r["text"] for r in mine] == [f"echo[2|sys:{SYS}]: decrypted text"]


def test_owner_typing_pauses_the_chat(conv: Conversation) -> None:
    paused, control = "4917100000101@c.us", "4917100000102@c.us"

    async def run() -> list[dict[str, Any]]:
        await conv.send(inbound(paused, "I'll handle this", from_me=True, sender_id=ACCOUNT))
        await asyncio.sleep(0.5)
        await conv.send(inbound(paused, "hello?"), inbound(control, "hello?"))
        out = await conv.collect(
            "outbound", lambda r: any(x["chat_id"] == control for x in r), settle=3.0
        )
        await conv.stop_clients()
        return out

    records = asyncio.run(run())
    assert [r["chat_id"] for r in records if r["chat_id"] in (paused, control)] == [control]


def test_groups_answer_only_when_addressed(conv: Conversation) -> None:
    group = "120363000000001@g.us"
    silent = inbound(group, "just chatting among ourselves")
    prefixed = inbound(group, "!bot what are your opening hours?")
    mentioned = inbound(group, "@bot are you there", mentioned_ids=[ACCOUNT])

    async def run() -> list[dict[str, Any]]:
        await conv.send(silent, prefixed, mentioned, gap_s=0.2)
        out = await conv.collect(
            "outbound", lambda r: len([x for x in r if x["chat_id"] == group]) >= 2, settle=2.0
        )
        await conv.stop_clients()
        return out

    mine = [r for r in asyncio.run(run()) if r["chat_id"] == group]
    assert [r["text"].split(": ", 1)[1] for r in mine] == [
        "what are your opening hours?",
        "@bot are you there",
    ]
    # In groups the reply quotes the message it answers.
    assert mine[0]["reply_to_message_id"] == prefixed.message_id


def test_invalid_records_go_to_the_dlq_and_the_next_is_answered(conv: Conversation) -> None:
    chat = "4917100000103@c.us"
    good = inbound(chat, "still there?")

    async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        await conv.send_raw(chat.encode(), b"\xff\xfe not json")
        await conv.send_raw(chat.encode(), b'{"chat_id": "not-a-chat-id"}')
        await conv.send(good)
        out = await conv.collect("outbound", lambda r: any(x["chat_id"] == chat for x in r))
        dlq = await conv.collect(
            "dlq", lambda r: len([d for d in r if d["agent"] == "guard"]) >= 2, timeout=20
        )
        await conv.stop_clients()
        return out, dlq

    out, everyone = asyncio.run(run())
    assert [r["text"] for r in out if r["chat_id"] == chat] == [f"echo[2|sys:{SYS}]: still there?"]
    # Every agent that reads wa.inbound reports what it cannot read: the guard, the archive.
    assert {d["agent"] for d in everyone} <= {"guard", "archive"}
    dlq = [d for d in everyone if d["agent"] == "guard"]
    assert len(dlq) == 2
    assert all(d["reason"].startswith("invalid record") for d in dlq)
    assert {d["source_topic"] for d in dlq} == {conv.topics["inbound"]}
    import base64

    assert base64.urlsafe_b64decode(dlq[0]["raw"]) == b"\xff\xfe not json"


def test_a_burst_becomes_one_turn(kafka_broker: Broker, tmp_path: Path) -> None:
    conversation = Conversation(kafka_broker, tmp_path, WABOT_BURST_QUIET_S="1.0")
    conversation.start_worker()
    chat = "4917100000200@c.us"
    try:

        async def run() -> list[dict[str, Any]]:
            await conversation.send(
                inbound(chat, "hi"),
                inbound(chat, "I need help"),
                inbound(chat, "with my order"),
                gap_s=0.2,
            )
            await asyncio.sleep(2.0)
            await conversation.send(inbound(chat, "order 42"))
            out = await conversation.collect("outbound", lambda r: len(r) >= 2, settle=2.0)
            await conversation.stop_clients()
            return out

        texts = [r["text"] for r in asyncio.run(run())]
    finally:
        conversation.close()
    assert texts == [
        f"echo[2|sys:{SYS}]: hi\nI need help\nwith my order",
        f"echo[4|sys:{SYS}]: order 42",
    ]


def test_rate_limits_send_one_notice_and_record_the_decision(
    kafka_broker: Broker, tmp_path: Path
) -> None:
    conversation = Conversation(kafka_broker, tmp_path, WABOT_RATE_CHAT_PER_MINUTE="2")
    conversation.start_worker()
    chat = "4917100000300@c.us"
    try:

        async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            await conversation.send(*(inbound(chat, f"question {i}") for i in range(5)), gap_s=0.3)
            out = await conversation.collect("outbound", lambda r: len(r) >= 3, settle=3.0)
            calls = await conversation.collect(
                "llm_calls", lambda r: len([c for c in r if c["status"] == "skipped"]) >= 3
            )
            await conversation.stop_clients()
            return out, calls

        out, calls = asyncio.run(run())
    finally:
        conversation.close()
    assert len(replies(out)) == 2
    assert len(replies(out, "notice")) == 1  # one polite notice, not one per message
    skipped = [c for c in calls if c["status"] == "skipped"]
    assert [c["decision"] for c in skipped] == ["rate_limited_chat"] * 3
    assert len([c for c in calls if c["status"] == "ok"]) == 2


def test_llm_failures_are_retried_then_fall_back(kafka_broker: Broker, tmp_path: Path) -> None:
    conversation = Conversation(
        kafka_broker, tmp_path, WABOT_LLM_TIMEOUT_S="1.0", WABOT_LLM_RETRIES="2"
    )
    conversation.start_worker()
    first, second = "4917100000400@c.us", "4917100000401@c.us"
    try:

        async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            conversation.standin.set_failures(
                [Failure(kind="429", retry_after=0.3), Failure(kind="500")]
            )
            await conversation.send(inbound(first, "recovered?"))
            out = await conversation.collect("outbound", lambda r: len(r) >= 1)
            conversation.standin.set_failures([Failure(kind="hang", times=3)])
            await conversation.send(inbound(second, "anyone?"))
            out = await conversation.collect("outbound", lambda r: len(r) >= 2, timeout=60)
            calls = await conversation.collect("llm_calls", lambda r: len(r) >= 7)
            await conversation.stop_clients()
            return out, calls

        out, calls = asyncio.run(run())
    finally:
        conversation.close()
    texts = {r["chat_id"]: (r["kind"], r["text"]) for r in out}
    assert texts[first] == ("reply", f"echo[2|sys:{SYS}]: recovered?")
    assert texts[second] == ("fallback", Settings().llm_fallback_reply)
    statuses = {chat: [c["status"] for c in calls if c["chat_id"] == chat] for chat in texts}
    assert statuses[first] == ["retry", "retry", "ok"]
    assert statuses[second] == ["retry", "retry", "retry", "fallback"]
    assert [c["http_status"] for c in calls if c["chat_id"] == first][:2] == [429, 500]

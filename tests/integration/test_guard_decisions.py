"""Why a message got no answer, on Apache Kafka: wa.decisions records, the metric by reason,
edits and revokes of an open burst, and the notice for messages the bot cannot read.

One worker for the module (bursts of 1 s, two replies per chat and minute, a block list),
fed as the gateway would feed it; each test uses chats of its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline.observability.faust_metrics import metric_prefix
from schemas import DECISION_REASONS, InboundMessage
from tests.conftest import Broker
from tests.conversation import ACCOUNT, Conversation, inbound

pytestmark = pytest.mark.integration

BLOCKED = "4917200009999@c.us"
NOTICE = "Sorry, I can only read text. Please type your question."
VOICE = {"type": "ptt", "has_media": True, "media": {"mimetype": "audio/ogg; codecs=opus"}}
STICKER = {"type": "sticker", "has_media": True, "media": {"mimetype": "image/webp"}}


@pytest.fixture(scope="module")
def conv(kafka_broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Conversation]:
    conversation = Conversation(
        kafka_broker,
        tmp_path_factory.mktemp("decisions"),
        WABOT_BURST_QUIET_S="1.0",
        WABOT_RATE_CHAT_PER_MINUTE="2",
        WABOT_BLOCK_LIST=f'["{BLOCKED}"]',
        WABOT_UNREADABLE_NOTICE=NOTICE,
    )
    conversation.start_worker()
    yield conversation
    conversation.close()


def change(event: str, target: InboundMessage, body: str = "") -> InboundMessage:
    """An edit, revoke or reaction as the gateway produces it: its own message id, the
    original's id as target_message_id."""
    extra: dict[str, Any] = {"reaction": "👍"} if event == "reaction" else {}
    subtype = {"edit": "message_edit", "revoke": "sender_revoke"}.get(event)
    return inbound(
        target.chat_id,
        body,
        event=event,
        target_message_id=target.message_id,
        type="reaction" if event == "reaction" else "protocol",
        subtype=subtype,
        sender_id=target.sender_id,
        **extra,
    )


def of(records: list[dict[str, Any]], *chats: str) -> list[dict[str, Any]]:
    return [r for r in records if r["chat_id"] in chats]


def test_edits_and_revokes_change_an_open_burst_and_are_only_recorded_after_it(
    conv: Conversation,
) -> None:
    chat = "4917200000001@c.us"

    async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        hi, order, oops = (inbound(chat, t) for t in ("hi", "order 42 is late", "wrong chat!"))
        await conv.send(hi, order, oops, gap_s=0.1)
        await conv.send(change("edit", order, "order 43 is late"), change("revoke", oops))
        out = await conv.collect("outbound", lambda r: len(of(r, chat)) >= 1)
        # After the answer: recorded, never answered.
        later = [change("edit", hi, "hello"), change("revoke", order), change("reaction", hi)]
        await conv.send(*later, gap_s=0.1)
        decisions = await conv.collect("decisions", lambda r: len(of(r, chat)) >= 5)
        out = await conv.collect("outbound", lambda r: True, settle=2.5)
        await conv.stop_clients()
        return of(out, chat), of(decisions, chat)

    out, decisions = asyncio.run(run())
    assert [r["text"].split("]: ", 1)[1] for r in out] == ["hi\norder 43 is late"]
    assert [d["reason"] for d in decisions] == [
        "edited_in_burst",
        "revoked_in_burst",
        "edited_after_answer",
        "revoked_after_answer",
        "reaction",
    ]
    assert [d["event"] for d in decisions] == ["edit", "revoke", "edit", "revoke", "reaction"]


def test_every_unanswered_record_has_a_decision_and_the_takeover_is_logged(
    conv: Conversation,
) -> None:
    c = [f"49172000001{i:02d}@c.us" for i in range(10)]
    group = "120363000000901@g.us"
    now = datetime.now(UTC)
    owner = inbound(c[1], "I'll take it from here", from_me=True, sender_id=ACCOUNT)
    duplicate = inbound(c[2], "twice")
    cases: list[tuple[InboundMessage, str]] = [
        (inbound("status@broadcast", "my story", sender_id=c[0]), "status_broadcast"),
        (inbound("120363000000900@newsletter", "news", sender_id=c[0]), "newsletter"),
        (inbound(c[0], "", type="ciphertext"), "ciphertext"),
        (owner, "owner_takeover"),
        (inbound(c[1], "hello?"), "paused"),
        (duplicate, "duplicate"),  # the first copy is answered
        (
            inbound(c[3], "sent by the bot", from_me=True, sender_id=ACCOUNT, sent_by_bot=True),
            "own_message",
        ),
        (inbound(c[4], "yesterday", wa_timestamp=now - timedelta(hours=2)), "too_old"),
        (inbound(BLOCKED, "let me in"), "blocked"),
        (inbound(c[5], "Alice added Bob", type="gp2", subtype="add"), "system_message"),
        (inbound(group, "just chatting"), "group_not_addressed"),
        (inbound(c[6], "   "), "empty"),
        (inbound(c[7], "", **VOICE), "unreadable"),
    ]
    # Three turns in a minute against a limit of two: the third burst is skipped.
    limited = [inbound(c[8], f"question {i}") for i in range(3)]
    elsewhere = ("status@broadcast", "120363000000900@newsletter")

    async def run() -> list[dict[str, Any]]:
        await conv.send(duplicate)
        for message, _ in cases:
            await conv.send(message)
        for message in limited:
            await conv.send(message)
            await asyncio.sleep(1.3)
        decisions = await conv.collect(
            "decisions", lambda r: len(of(r, *c, group, BLOCKED, *elsewhere)) >= len(cases) + 1
        )
        await conv.stop_clients()
        return decisions

    decisions = asyncio.run(run())
    by_message = {(d["message_id"], d["reason"]) for d in decisions}
    for message, reason in cases:
        assert (message.message_id, reason) in by_message, reason
    assert [d["reason"] for d in decisions if d["chat_id"] == c[8]] == ["rate_limited_chat"]
    took_over = next(d for d in decisions if d["reason"] == "owner_takeover")
    until = owner.received_at + timedelta(seconds=1800)
    assert datetime.fromisoformat(took_over["paused_until"]) == until
    assert took_over["trace_id"] == owner.trace_id
    assert took_over["received_at"] == owner.received_at.isoformat().replace("+00:00", "Z")
    log = conv.workers[0].log.read_text()
    assert re.search(
        rf"INFO .* owner took over {re.escape(c[1])}: the bot is quiet there until "
        rf"{re.escape(until.isoformat())}",
        log,
    ), "the takeover is not logged at INFO with the chat and the end of the pause"


def test_unreadable_messages_get_one_notice_per_chat_and_day(conv: Conversation) -> None:
    first, second = "4917200000201@c.us", "4917200000202@c.us"
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    messages = [
        inbound(first, "", **VOICE),
        inbound(first, "", **STICKER),
        inbound(first, "", type="location"),  # a location without a comment
        inbound(second, "", **VOICE),
        # Judged by the message's own time: the next day gets a notice again.
        inbound(first, "", wa_timestamp=tomorrow, received_at=tomorrow, **VOICE),
    ]

    async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        await conv.send(*messages, gap_s=0.1)
        decisions = await conv.collect("decisions", lambda r: len(of(r, first, second)) >= 5)
        out = await conv.collect("outbound", lambda r: len(of(r, first, second)) >= 3, settle=2)
        await conv.stop_clients()
        return of(out, first, second), of(decisions, first, second)

    out, decisions = asyncio.run(run())
    # Two chats, two partitions: order holds within a chat only.
    assert sorted((r["chat_id"], r["kind"], r["text"]) for r in out) == [
        (first, "notice", NOTICE),
        (first, "notice", NOTICE),
        (second, "notice", NOTICE),
    ]
    days = [int(m.received_at.timestamp() // 86400) for m in (messages[0], messages[4])]
    assert [r["outbound_id"] for r in out if r["chat_id"] == first] == [
        "notice-" + hashlib.sha1(f"notice|unreadable|{first}|{day}".encode()).hexdigest()[:20]
        for day in days
    ]
    assert [d["reason"] for d in decisions] == ["unreadable"] * 5
    noticed = [d["notice_outbound_id"] for d in decisions if d["notice_outbound_id"]]
    assert sorted(noticed) == sorted(r["outbound_id"] for r in out)


def _metrics(conv: Conversation) -> dict[str, float]:
    port = conv.workers[0].port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    name = f"{metric_prefix(conv.app_id)}_guard_decisions_total"
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(rf'^{name}\{{reason="([a-z_]+)"\}} ([0-9.e+]+)$', text, re.M)
    }


def test_the_metric_counts_every_decision_on_the_topic_by_reason(conv: Conversation) -> None:
    # Runs after the tests above (same worker): whatever they decided is on the topic.
    async def counted() -> tuple[Counter[str], dict[str, float]]:
        for _ in range(40):
            records = await conv.collect("decisions", lambda r: True, timeout=2, settle=0.5)
            on_topic = Counter(d["reason"] for d in records)
            metrics = _metrics(conv)
            if {r: metrics.get(r) for r in on_topic} == dict(on_topic):
                break
        return on_topic, metrics

    on_topic, metrics = asyncio.run(counted())
    assert set(metrics) == set(DECISION_REASONS)  # every reason, at 0 until it happens
    assert {r: n for r, n in metrics.items() if n} == dict(on_topic)
    assert len(on_topic) >= 15, on_topic

"""What the sink records for each way a send can end, end to end: look-alike page in real
Chromium, Apache Kafka, a gateway process (``faust -A pipeline.gateway worker``).

Outbound records are produced straight to wa.outbound (no pipeline worker, no LLM); the
look-alike's ``/control/send_fault`` and ``/control/registered`` make the sends fail the
ways WhatsApp Web's do. Every test reads wa.delivery: a send is ``sent`` only when WhatsApp
took it, every other one is ``failed`` with a reason that names the cause, and nothing is
both. Retries are two (``WABOT_SEND_RETRIES``), so a passing failure is retried after 2 s
and 4 s; WhatsApp Web is given 2 s to answer a send (``WABOT_SEND_TIMEOUT_S``). Offsets are
committed every second, so a killed gateway replays only what was not finished.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import pytest
import pytest_asyncio
from aiokafka.partitioner import DefaultPartitioner

from pipeline.dev.lookalike import LookalikeConfig
from pipeline.dev.lookalike.server import run_in_thread
from schemas import OutboundMessage
from tests.conftest import Broker
from tests.conversation import Conversation
from tests.e2e.test_gateway import BOB, ME, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

PARTITIONS = 4  # tests.conversation's WABOT_TOPIC_PARTITIONS
#: The backoff before the first and the second retry of a passing failure.
RETRY_WAITS_S = (2.0, 4.0)
#: A send that fails for good, or goes out, is reported within this time of its record's
#: creation (typing, pacing and the consumer's fetch included): well under the 6 s that the
#: retry waits of a passing failure add up to.
PROMPT_S = 3.0


@pytest.fixture(scope="module")
def stack(kafka_broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("send-outcomes")
    lookalike = run_in_thread(LookalikeConfig(me=ME, keep_message_ids=True))
    conv = Conversation(kafka_broker, tmp)
    built = Stack(conv, lookalike, tmp, "kept")
    built.gateway_env.update(
        WABOT_GATEWAY_NAME="outcomes",
        WABOT_SEND_RETRIES="2",
        WABOT_SEND_TIMEOUT_S="2",
        WABOT_COMMIT_INTERVAL_S="1",
    )
    try:
        built.start_gateway()
        yield built
    finally:
        built.close()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def ready(stack: Stack) -> AsyncIterator[Stack]:
    """The gateway logged in (QR scanned) and ready to send."""
    await stack.wait_state("qr", timeout=120)
    stack.post("scan")
    await stack.wait_state("ready")
    yield stack
    await stack.conv.stop_clients()


async def outbound(stack: Stack, chat: str, text: str) -> OutboundMessage:
    """Produce one message to send to wa.outbound, as the respond agent or the API would."""
    message = OutboundMessage(
        outbound_id=f"e2e-{uuid.uuid4().hex}",
        chat_id=chat,
        account_id=ME,
        text=text,
        kind="manual",
    )
    producer = await stack.conv.producer()
    await producer.send_and_wait(
        stack.conv.topics["outbound"],
        key=chat.encode(),
        value=message.model_dump_json().encode(),
    )
    return message


def of(receipts: list[dict[str, Any]], message: OutboundMessage) -> list[dict[str, Any]]:
    return [r for r in receipts if r["outbound_id"] == message.outbound_id]


def statuses(receipts: list[dict[str, Any]], message: OutboundMessage) -> list[str]:
    """What was recorded for ``message``: sent / failed / duplicate_skipped (acks left out)."""
    return [
        r["status"]
        for r in of(receipts, message)
        if r["status"] in ("sent", "failed", "duplicate_skipped")
    ]


async def outcome(
    stack: Stack, *messages: OutboundMessage, settle: float = 2.0, timeout: float = 60.0
) -> list[dict[str, Any]]:
    """wa.delivery once every message has its sent or failed record (and ``settle`` more)."""
    return await stack.conv.collect(
        "delivery",
        lambda rs: all(statuses(rs, m) for m in messages),
        timeout=timeout,
        settle=settle,
    )


def seconds_to(receipt: dict[str, Any], message: OutboundMessage) -> float:
    """From the record's creation to its receipt."""
    return (datetime.fromisoformat(receipt["at"]) - message.created_at).total_seconds()


def only_receipt(receipts: list[dict[str, Any]], message: OutboundMessage) -> dict[str, Any]:
    found = [r for r in of(receipts, message) if r["status"] in ("sent", "failed")]
    assert len(found) == 1, found
    return found[0]


def same_partition_as(chat: str, prefix: str) -> str:
    """A user id starting with ``prefix`` whose records share ``chat``'s partition."""
    partitions = list(range(PARTITIONS))
    choose = DefaultPartitioner()
    wanted = choose(chat.encode(), partitions, partitions)
    for n in range(1000):
        candidate = f"{prefix}{n:03d}@c.us"
        if choose(candidate.encode(), partitions, partitions) == wanted:
            return candidate
    raise AssertionError("no chat id found in the same partition")


async def test_a_send_whatsapp_refuses_is_failed_with_its_result(ready: Stack) -> None:
    """The page resolves ``sendTextMessage`` with ``messageSendResult: 'ERROR_NETWORK'``
    (no exception): a passing failure, retried, then failed; never ``sent``."""
    chat = "4917100000001@c.us"
    ready.post("send_fault", {"chat": chat, "fault": "ERROR_NETWORK"})
    try:
        message = await outbound(ready, chat, "Your order has shipped.")
        receipts = await outcome(ready, message)
    finally:
        ready.post("send_fault", {"chat": chat, "fault": None})
    assert statuses(receipts, message) == ["failed"], of(receipts, message)
    failed = only_receipt(receipts, message)
    assert failed["reason"].startswith("refused"), failed
    assert "ERROR_NETWORK" in failed["reason"], failed
    assert seconds_to(failed, message) >= sum(RETRY_WAITS_S)  # it was retried
    assert not ready.bot_messages(chat)


async def test_a_refusal_that_passes_is_retried_and_sent_once(ready: Stack) -> None:
    chat = "4917100000002@c.us"
    ready.post("send_fault", {"chat": chat, "fault": "ERROR_NETWORK", "times": 1})
    message = await outbound(ready, chat, "Your table is booked for eight.")
    receipts = await outcome(ready, message)
    assert statuses(receipts, message) == ["sent"], of(receipts, message)
    sent = only_receipt(receipts, message)
    assert seconds_to(sent, message) >= RETRY_WAITS_S[0]
    assert [m["id"] for m in ready.bot_messages(chat)] == [sent["wa_message_id"]]


async def test_a_number_not_on_whatsapp_fails_at_once(ready: Stack) -> None:
    """An unregistered number (and ``12@c.us``, no phone number at all) is failed for good:
    no retry, so the receipt comes before any retry wait could have passed."""
    unregistered = "4917100000003@c.us"
    ready.post("registered", {"id": unregistered, "registered": False})
    first = await outbound(ready, unregistered, "Hello from the shop!")
    second = await outbound(ready, "12@c.us", "Hello from the shop!")
    receipts = await outcome(ready, first, second)
    for message in (first, second):
        assert statuses(receipts, message) == ["failed"], of(receipts, message)
        failed = only_receipt(receipts, message)
        assert failed["reason"].startswith("unregistered"), failed
        assert message.chat_id in failed["reason"]
        assert seconds_to(failed, message) < PROMPT_S, failed
        assert not ready.bot_messages(message.chat_id)


async def test_a_group_whatsapp_cannot_find_fails_at_once_and_holds_no_other_chat(
    ready: Stack,
) -> None:
    """The reported case: a reply to a group WhatsApp does not know was retried while the
    account's send lock was held, and a reply to another customer waited behind it."""
    group = "120363099999999999@g.us"
    lost = await outbound(ready, group, "Thanks, everyone!")
    other = await outbound(ready, BOB, "Your bike is ready.")
    receipts = await outcome(ready, lost, other)
    assert statuses(receipts, lost) == ["failed"], of(receipts, lost)
    failed = only_receipt(receipts, lost)
    assert failed["reason"].startswith("chat not found"), failed
    assert seconds_to(failed, lost) < PROMPT_S, failed
    assert statuses(receipts, other) == ["sent"], of(receipts, other)
    assert seconds_to(only_receipt(receipts, other), other) < PROMPT_S
    assert any(m["body"] == other.text for m in ready.bot_messages(BOB))


async def test_a_send_the_page_never_answers_fails_with_timeout(ready: Stack) -> None:
    """``sendTextMessage`` never resolves and the message never reaches the chat: each
    attempt is given up after WABOT_SEND_TIMEOUT_S, the chat is checked, and the record
    ends ``failed`` with reason ``timeout``."""
    chat = "4917100000004@c.us"
    ready.post("send_fault", {"chat": chat, "fault": "hang"})
    try:
        message = await outbound(ready, chat, "Are you still there?")
        receipts = await outcome(ready, message)
    finally:
        ready.post("send_fault", {"chat": chat, "fault": None})  # ends the hung calls
    assert statuses(receipts, message) == ["failed"], of(receipts, message)
    failed = only_receipt(receipts, message)
    assert failed["reason"].startswith("timeout"), failed
    assert seconds_to(failed, message) >= sum(RETRY_WAITS_S) + 3 * 2.0
    assert not ready.bot_messages(chat)


async def test_a_timed_out_send_that_reached_the_chat_is_sent_not_repeated(ready: Stack) -> None:
    """WhatsApp took the message, but the answer never came: after the timeout the gateway
    finds it in the chat and records it ``sent``, under its id, without sending it again."""
    chat = "4917100000005@c.us"
    ready.post("send_fault", {"chat": chat, "fault": "lost_answer", "times": 1})
    try:
        message = await outbound(ready, chat, "See you on Friday.")
        receipts = await outcome(ready, message, settle=4.0)
    finally:
        ready.post("send_fault", {"chat": chat, "fault": None})
    assert statuses(receipts, message) == ["sent"], of(receipts, message)
    sent = only_receipt(receipts, message)
    assert [m["id"] for m in ready.bot_messages(chat)] == [sent["wa_message_id"]]


async def test_a_retrying_chat_holds_neither_other_chats_nor_its_own_order(ready: Stack) -> None:
    """Chat A's first send is refused twice (retried after 2 s and 4 s); a reply to chat B
    produced right after it goes out at once; A's second reply waits for A's first."""
    chat_a = "4917100000006@c.us"
    chat_b = same_partition_as(chat_a, "49172000")  # one partition: one deliver stream too
    ready.post("send_fault", {"chat": chat_a, "fault": "ERROR_NETWORK", "times": 2})
    a1 = await outbound(ready, chat_a, "First: your parcel left the depot.")
    a2 = await outbound(ready, chat_a, "Second: it arrives tomorrow.")
    b1 = await outbound(ready, chat_b, "Your appointment is confirmed.")
    receipts = await outcome(ready, a1, a2, b1)
    for message in (a1, a2, b1):
        assert statuses(receipts, message) == ["sent"], of(receipts, message)
    b_sent = only_receipt(receipts, b1)
    a1_sent, a2_sent = only_receipt(receipts, a1), only_receipt(receipts, a2)
    assert seconds_to(b_sent, b1) < PROMPT_S, b_sent
    assert seconds_to(a1_sent, a1) >= sum(RETRY_WAITS_S)
    assert a1_sent["at"] < a2_sent["at"]
    assert [m["body"] for m in ready.bot_messages(chat_a)] == [a1.text, a2.text]


async def test_a_send_still_retrying_when_the_gateway_dies_is_sent_after_the_restart(
    ready: Stack,
) -> None:
    """Nothing is committed before it is finished: chat A's send is still being retried
    when the gateway is killed, while chat B's (later in the same partition) was sent and
    its offset could have been committed. The next gateway sends A's, and not B's again."""
    chat_a = "4917100000007@c.us"
    chat_b = same_partition_as(chat_a, "49173000")
    ready.post("send_fault", {"chat": chat_a, "fault": "ERROR_NETWORK"})
    a1 = await outbound(ready, chat_a, "Your repair is done.")
    b1 = await outbound(ready, chat_b, "Your voucher code is inside.")
    receipts = await outcome(ready, b1, settle=0.0)
    assert statuses(receipts, b1) == ["sent"], of(receipts, b1)
    assert not statuses(receipts, a1), of(receipts, a1)  # still retrying
    await asyncio.sleep(1.5)  # past the commit interval: B's offset is committed by now
    ready.gateway.stop(signal.SIGKILL)
    ready.post("send_fault", {"chat": chat_a, "fault": None})
    ready.start_gateway()
    await ready.wait_state("ready")
    receipts = await outcome(ready, a1, settle=3.0)
    # Sent once; a record the new gateway's consumer happens to read twice (fetched before
    # and after its seek to the committed offset) is skipped, and says so.
    a1_statuses = statuses(receipts, a1)
    assert a1_statuses[:1] == ["sent"], of(receipts, a1)
    assert set(a1_statuses[1:]) <= {"duplicate_skipped"}, of(receipts, a1)
    assert [m["body"] for m in ready.bot_messages(chat_a)] == [a1.text]
    assert [m["body"] for m in ready.bot_messages(chat_b)] == [b1.text]
    assert "sent" not in statuses(receipts, b1)[1:], of(receipts, b1)

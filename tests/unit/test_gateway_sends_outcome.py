"""What a send's answer means (pipeline.gateway.outcomes), which copies in a chat count as
sent (pipeline.gateway.messages), and the deliver agent's acks in offset order."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from agents.deliver import ChatLanes, Held, InOrderAcks
from pipeline.gateway.messages import find_own_send, own_ack
from pipeline.gateway.outcomes import judge_send, timed_out
from schemas import OutboundMessage

CHAT = "4917100000001@c.us"


def test_ok_is_sent_under_the_returned_id() -> None:
    verdict = judge_send({"id": f"true_{CHAT}_3EB0AA", "ack": 1, "result": "OK"}, CHAT)
    assert verdict.sent and verdict.wa_id == f"true_{CHAT}_3EB0AA" and verdict.reason is None


@pytest.mark.parametrize("result", ["ERROR_NETWORK", "ERROR_EXPIRED", "ERROR_UNKNOWN"])
def test_a_refusal_without_exception_is_a_passing_failure(result: str) -> None:
    verdict = judge_send({"id": "x", "ack": -1, "result": result, "error": None}, CHAT)
    assert verdict.kind == "transient"
    assert verdict.reason is not None and verdict.reason.startswith("refused")
    assert result in verdict.reason


def test_a_cancelled_send_is_not_tried_again() -> None:
    verdict = judge_send({"id": "x", "ack": -1, "result": "ERROR_CANCELLED"}, CHAT)
    assert verdict.permanent and "ERROR_CANCELLED" in (verdict.reason or "")


def test_without_a_send_result_the_ack_decides() -> None:
    assert judge_send({"id": "x", "ack": 1, "result": None}, CHAT).sent
    pending = judge_send({"id": "x", "ack": 0, "result": None}, CHAT)
    assert pending.kind == "transient" and (pending.reason or "").startswith("unconfirmed")
    failed = judge_send({"id": "x", "ack": -1, "result": None}, CHAT)
    assert failed.kind == "transient" and (failed.reason or "").startswith("refused")


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        ({"code": "not_a_registered_number", "message": "x"}, "unregistered"),
        ({"code": "chat_not_found", "message": f"Chat not found for {CHAT}"}, "chat not found"),
        ({"code": None, "message": f"Failed to find or create chat for {CHAT}"}, "chat not found"),
        ({"code": "invalid_wid", "message": "Invalid WID value for 12"}, "invalid chat id"),
        ({"code": "can_not_send_message_to_this_groupType", "message": "COMMUNITY"}, "refused"),
    ],
)
def test_what_whatsapp_cannot_send_to_fails_for_good(error: dict[str, Any], cause: str) -> None:
    verdict = judge_send({"id": None, "ack": None, "result": None, "error": error}, CHAT)
    assert verdict.permanent
    assert (verdict.reason or "").startswith(cause + ": ")
    assert CHAT in (verdict.reason or "")


def test_exceptions_and_an_offline_page_are_passing() -> None:
    raised = judge_send({"error": {"code": None, "message": "TypeError: x is undefined"}}, CHAT)
    assert raised.kind == "transient" and (raised.reason or "").startswith("error: ")
    offline = judge_send({"error": {"code": "offline", "message": "WhatsApp Web is offline"}}, CHAT)
    assert offline.kind == "transient" and (offline.reason or "").startswith("offline: ")


def test_a_timeout_names_its_limit() -> None:
    verdict = timed_out(2.5)
    assert verdict.kind == "transient" and verdict.reason == (
        "timeout: WhatsApp Web did not answer the send in 2.5s"
    )


def test_a_refused_copy_in_the_chat_is_not_a_send() -> None:
    recent = [
        {"id": "3EB0MINE", "body": "hello", "t": 100, "ack": -1},
        {"id": "3EB0OTHER", "body": "hello", "t": 101, "ack": -1},
    ]
    assert find_own_send(recent, wa_id="3EB0MINE", text="hello", since=90) is None
    recent[1]["ack"] = 0  # waiting to go out: it is in WhatsApp's hands, never sent again
    assert find_own_send(recent, wa_id="3EB0MINE", text="hello", since=90) == "3EB0OTHER"
    assert own_ack(recent, "3EB0OTHER") == 0
    assert own_ack(recent, "3EB0MINE") == -1
    assert own_ack(recent, "3EB0NONE") == 0


@dataclass(frozen=True)
class _Message:
    tp: tuple[str, int]
    offset: int


@dataclass(frozen=True)
class _Event:
    message: _Message


def _event(partition: int, offset: int) -> _Event:
    return _Event(_Message(("wa.outbound", partition), offset))


async def test_acks_follow_offsets_whatever_order_records_finish_in() -> None:
    acked: list[int] = []
    acks = InOrderAcks()

    def ack_of(offset: int) -> Any:
        async def ack() -> None:
            acked.append(offset)

        return ack

    events = [_event(0, n) for n in range(3)]
    tickets = [acks.track(e, ack_of(e.message.offset)) for e in events]
    other = _event(1, 7)
    await acks.finished(acks.track(other, ack_of(7)), other.message.tp)
    await acks.finished(tickets[2], events[2].message.tp)
    await acks.finished(tickets[1], events[1].message.tp)
    assert acked == [7]  # partition 0 waits for its offset 0
    await acks.finished(tickets[0], events[0].message.tp)
    assert acked == [7, 0, 1, 2]


async def test_after_a_rebalance_nothing_fetched_before_is_acked() -> None:
    acked: list[int] = []
    acks = InOrderAcks()

    async def ack() -> None:
        acked.append(0)

    event = _event(0, 0)
    ticket = acks.track(event, ack)
    acks.revoke_all()
    await acks.finished(ticket, event.message.tp)
    assert acked == []


async def test_lanes_keep_each_chats_order_and_let_other_chats_pass() -> None:
    release = asyncio.Event()
    order: list[str] = []
    acked: list[int] = []

    async def work(held: Held) -> bool:
        if held.message.text == "a1":
            await release.wait()  # chat A's first message is being retried
        order.append(held.message.text)
        return True

    lanes = ChatLanes(work, max_held=10)
    texts = [("a1", CHAT), ("a2", CHAT), ("b1", "4917100000009@c.us")]  # one partition
    for offset, (text, chat) in enumerate(texts):
        message = OutboundMessage(
            outbound_id=text, chat_id=chat, account_id="10000@c.us", text=text
        )

        async def ack(offset: int = offset) -> None:
            acked.append(offset)

        await lanes.submit(message, _event(0, offset), ack)
    for _ in range(20):
        await asyncio.sleep(0)
    assert order == ["b1"] and acked == []  # b1 done, its ack waits for a1's offset
    release.set()
    for _ in range(20):
        await asyncio.sleep(0)
    assert order == ["b1", "a1", "a2"]
    assert acked == [0, 1, 2] and lanes.held == 0 and lanes.chats == 0

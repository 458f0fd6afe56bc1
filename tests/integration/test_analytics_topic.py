"""The pseudonymized analytics.events topic on Apache Kafka, read raw as an analytics team would.

A real worker (guard, respond, apply_reply and the analytics agent, with the LLM stand-in)
answers a short conversation: two people (one spelled the Baileys way), a group where we are
mentioned, and a record that is not JSON. Delivery receipts are produced as the gateway would,
one failed with a number in its reason. Then every byte of analytics.events is searched for
raw ids, phone digits and message text; and every inbound message, outbound message, LLM call
and receipt must have its event, under the pseudonym the operator's key gives.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from agents.pseudonyms import Pseudonymizer
from schemas import DeliveryReceipt
from tests.conftest import Broker
from tests.conversation import Conversation, inbound

pytestmark = pytest.mark.integration

KEY = "integration-test-key-0123456789abcdef"
ACCOUNT = "4915550001234@c.us"
ALICE = "491700000011@c.us"
BOB_BAILEYS = "491700000022@s.whatsapp.net"
BOB = "491700000022@c.us"
GROUP = "120363000000077@g.us"
CAROL = "491700000033@c.us"  # writes in the group
RAW_IDS = [ACCOUNT, ALICE, BOB, GROUP, CAROL]
DIGITS = ["4915550001234", "491700000011", "491700000022", "120363000000077", "491700000033"]
#: The word every message text carries; it must not reach the topic unless texts are opted in.
WORD = "marzipan"

Raw = tuple[bytes, bytes]


def conversation(broker: Broker, tmp: Path, include_text: bool) -> Conversation:
    return Conversation(
        broker,
        tmp,
        WABOT_ANALYTICS_ENABLED="true",
        WABOT_ANALYTICS_HMAC_KEY=KEY,
        WABOT_ANALYTICS_INCLUDE_TEXT="true" if include_text else "false",
    )


@pytest.fixture(scope="module")
def plain(kafka_broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Conversation]:
    conv = conversation(kafka_broker, tmp_path_factory.mktemp("analytics"), include_text=False)
    conv.start_worker()
    yield conv
    conv.close()


async def read_raw(
    conv: Conversation, topic: str, until: Callable[[list[Raw]], bool], timeout: float = 60.0
) -> list[Raw]:
    """Every (key, value) of ``topic`` from the start, once ``until`` holds (or at timeout)."""
    consumer = AIOKafkaConsumer(
        conv.topics[topic],
        bootstrap_servers=conv.broker.bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        metadata_max_age_ms=1000,
    )
    await consumer.start()
    records: list[Raw] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not until(records):
            batch = await consumer.getmany(timeout_ms=200)
            for partition_records in batch.values():
                records.extend((r.key or b"", r.value or b"") for r in partition_records)
    finally:
        await consumer.stop()
    return records


def events(records: list[Raw]) -> list[dict[str, Any]]:
    return [json.loads(value) for _, value in records]


def having(records: list[Raw], field: str, wanted: set[str]) -> bool:
    return wanted <= {e.get(field) for e in events(records)}


async def run_conversation(conv: Conversation) -> dict[str, Any]:
    """Send the conversation and wait for its replies; return what the pipeline wrote."""
    messages = [
        inbound(ALICE, f"{WORD} one", account_id=ACCOUNT),
        inbound(BOB_BAILEYS, f"{WORD} from bob", account_id=ACCOUNT),
        inbound(GROUP, f"{WORD} among ourselves", account_id=ACCOUNT, sender_id=CAROL),
        inbound(
            GROUP,
            f"@{ACCOUNT.split('@')[0]} {WORD} are you open?",
            account_id=ACCOUNT,
            sender_id=CAROL,
            mentioned_ids=[ACCOUNT],
        ),
        inbound(ALICE, f"{WORD} two", account_id=ACCOUNT),
    ]
    await conv.send(*messages, gap_s=0.1)
    await conv.send_raw(ALICE.encode(), b"this is not json " + ALICE.encode())
    chats = {ALICE, BOB, GROUP}
    outbound = await conv.collect(
        "outbound", lambda r: len([x for x in r if x["chat_id"] in chats]) >= 4, timeout=90
    )
    calls = await conv.collect(
        "llm_calls", lambda r: len([x for x in r if x["chat_id"] in chats]) >= 4
    )
    assert len(outbound) == 4, outbound
    assert len(calls) == 4, calls

    # Receipts as the gateway's sink writes them; the failure reason carries a number.
    receipts = [
        DeliveryReceipt(
            outbound_id=outbound[0]["outbound_id"],
            chat_id=outbound[0]["chat_id"],
            account_id=ACCOUNT,
            status="sent",
            wa_message_id="3EB0" + "A1" * 8,
        ),
        DeliveryReceipt(
            outbound_id=outbound[1]["outbound_id"],
            chat_id=outbound[1]["chat_id"],
            account_id=ACCOUNT,
            status="failed",
            reason=f"{outbound[1]['chat_id'].split('@')[0]} is not on WhatsApp",
        ),
    ]
    producer = await conv.producer()
    for receipt in receipts:
        await producer.send_and_wait(
            conv.topics["delivery"],
            key=receipt.chat_id.encode(),
            value=receipt.model_dump_json().encode(),
        )

    p = Pseudonymizer(KEY)
    wanted = {
        "inbound": {p.ref(m.message_id) for m in messages},
        "outbound": {p.ref(o["outbound_id"]) for o in outbound},
        "llm_call": {p.ref(c["call_id"]) for c in calls},
    }

    def complete(records: list[Raw]) -> bool:
        got = events(records)
        return (
            having(records, "message", wanted["inbound"])
            and having(records, "outbound", wanted["outbound"])
            and having(records, "call", wanted["llm_call"])
            and len([e for e in got if e["kind"] == "delivery"]) >= 2
        )

    analytics = await read_raw(conv, "analytics", complete, timeout=60)
    dead = await conv.collect("dlq", lambda r: any(x["agent"] == "analytics" for x in r))
    await conv.stop_clients()
    return {
        "messages": messages,
        "outbound": outbound,
        "calls": calls,
        "analytics": analytics,
        "wanted": wanted,
        "dead": dead,
    }


def test_no_raw_id_or_text_and_every_record_has_its_event(plain: Conversation) -> None:
    run = asyncio.run(run_conversation(plain))
    records: list[Raw] = run["analytics"]
    p = Pseudonymizer(KEY)

    # Nothing in the raw bytes, keys included, names a person, a chat or what they wrote.
    everything = b"\n".join(key + b"\t" + value for key, value in records)
    assert records
    for secret in [*RAW_IDS, *DIGITS, BOB_BAILEYS, WORD, "@c.us", "@g.us", "s.whatsapp.net"]:
        assert secret.encode() not in everything, f"{secret!r} leaked into analytics.events"
    for message in run["messages"]:
        assert message.message_id.encode() not in everything
    for out in run["outbound"]:
        assert out["outbound_id"].encode() not in everything
        assert out["turn_id"].encode() not in everything

    got = events(records)
    for key, value in records:
        assert key == json.loads(value)["chat"].encode(), "keyed by the chat's pseudonym"
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for event in got:
        by_kind.setdefault(event["kind"], []).append(event)
    wanted = run["wanted"]
    assert {e["message"] for e in by_kind["inbound"]} == wanted["inbound"]
    assert {e["outbound"] for e in by_kind["outbound"]} == wanted["outbound"]
    assert {e["call"] for e in by_kind["llm_call"]} == wanted["llm_call"]
    assert sorted(e["status"] for e in by_kind["delivery"]) == ["failed", "sent"]
    assert all(e["text"] is None and e["text_length"] > 0 for e in by_kind["inbound"])

    # The operator's key links the events to people: Bob's two spellings are one pseudonym,
    # the group's mention is the account, and a reply's turn is its LLM call's turn.
    chats = {e["chat"] for e in by_kind["inbound"]}
    assert chats == {p.chat(ALICE), p.chat(BOB), p.chat(GROUP)}
    mention = next(e for e in by_kind["inbound"] if e["mentions"])
    assert mention["mentions"] == [p.chat(ACCOUNT)] == [mention["account"]]
    assert mention["sender"] == p.chat(CAROL) and mention["is_group"] is True
    assert {e["turn"] for e in by_kind["outbound"]} == {e["turn"] for e in by_kind["llm_call"]}

    # The bad record went to the DLQ from the analytics agent too, and the stream went on.
    letter = next(x for x in run["dead"] if x["agent"] == "analytics")
    assert "invalid inbound record for analytics" in letter["reason"]


def test_texts_only_when_opted_in(
    kafka_broker: Broker, tmp_path_factory: pytest.TempPathFactory
) -> None:
    conv = conversation(kafka_broker, tmp_path_factory.mktemp("analytics-text"), True)
    conv.start_worker()
    try:
        run = asyncio.run(run_conversation(conv))
    finally:
        conv.close()
    records: list[Raw] = run["analytics"]
    everything = b"\n".join(key + b"\t" + value for key, value in records)
    got = events(records)
    inbound_texts = {e["text"] for e in got if e["kind"] == "inbound"}
    assert f"{WORD} one" in inbound_texts
    assert f"@{Pseudonymizer(KEY).chat(ACCOUNT)} {WORD} are you open?" in inbound_texts
    assert all(WORD in e["text"] for e in got if e["kind"] == "outbound")
    # Texts are in, ids are still out: the mention's number became the account's pseudonym.
    for secret in [*RAW_IDS, *DIGITS, "@c.us", "@g.us"]:
        assert secret.encode() not in everything, f"{secret!r} leaked into analytics.events"

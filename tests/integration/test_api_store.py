"""The operator API on a real store (SQLite and PostgreSQL), a real Kafka and uvicorn on
127.0.0.1: reads, controls and manual messages as records on their topics, the QR, stats,
readiness, and a database that goes down (503 with a clear body).

The store is filled by the archive's own sink (``StoreWriter``), as a worker's archive fills
it; the bot's side (a worker applying what the API produces) is in test_api_bot.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from agents.archive import Archived, Kind
from pipeline.api.app import create_api
from pipeline.broker import free_port
from pipeline.config.settings import Settings, topic_keys
from pipeline.store.writer import StoreWriter
from schemas import (
    DeliveryReceipt,
    GatewayEvent,
    GuardDecision,
    InboundMessage,
    LLMCall,
    OutboundMessage,
    Turn,
)
from tests.conftest import Broker
from tests.conversation import ACCOUNT, inbound
from tests.databases import (  # noqa: F401  (fixtures)
    Database,
    database_fixture,
    postgres_server_fixture,
    throwaway_postgres,
)

pytestmark = pytest.mark.integration

TOKEN = "ops-token-" + uuid.uuid4().hex
A, B, C = "491600000001@c.us", "491600000002@c.us", "491600000003@c.us"


def api_settings(broker: Broker, database_url: str, tmp: Path, **more: Any) -> Settings:
    """Settings of an API with topics of its own (t<run>.<name>), 4 partitions."""
    run = uuid.uuid4().hex[:8]
    fields: dict[str, Any] = {
        "app_id": f"api-{run}",
        "broker_url": broker.url,
        "database_url": database_url,
        "data_dir": tmp / "data",
        "topic_partitions": 4,
        "api_tokens": {"ops": TOKEN},
        "api_port": free_port(),
        "api_scheduler_interval_s": 0.2,
        **{f"topic_{key}": f"t{run}.{key}" for key in topic_keys()},
    }
    fields.update(more)
    return Settings(**fields)


class ApiServer:
    """``create_api(settings)`` under uvicorn in a thread of its own, on 127.0.0.1."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = settings.api_port
        self.base = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(
                create_api(settings),
                host="127.0.0.1",
                port=self.port,
                log_config=None,
                access_log=False,
                lifespan="on",
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ApiServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the API did not start"
            time.sleep(0.05)
        self.until(lambda: self.call("GET", "/readyz")[0] == 200, 90, "the API is ready")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = TOKEN,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        """One request; the JSON body decoded (bytes when it is not JSON)."""
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        given = {"Content-Type": "application/json", **(headers or {})}
        if token:
            given["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=given)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, head, out = response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            status, head, out = error.code, dict(error.headers), error.read()
        try:
            return status, head, json.loads(out)
        except ValueError:
            return status, head, out

    @staticmethod
    def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            time.sleep(0.2)
        raise AssertionError(f"{what}: not true after {timeout}s")


async def read_topic(
    broker: Broker, topic: str, until: Callable[[list[Any]], bool], timeout: float = 30
) -> list[Any]:
    """Records of ``topic`` from the start (key, partition, JSON value) once ``until`` holds;
    then 1 s more, so a record that must not be there has time to show."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        auto_offset_reset="earliest",
        metadata_max_age_ms=1000,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        done_at = None
        while time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records += [
                    SimpleNamespace(
                        key=r.key.decode(), partition=r.partition, value=json.loads(r.value)
                    )
                    for r in batch
                ]
            if done_at is None and until(records):
                done_at = time.monotonic()
            if done_at is not None and time.monotonic() - done_at > 1.0:
                break
    finally:
        await consumer.stop()
    return records


def _archived(kind: Kind, record: Any) -> Archived:
    raw = record.model_dump_json().encode()
    return Archived(kind, record, hashlib.sha256(raw).hexdigest()[:32], None)


async def seed(url: str, now: datetime) -> dict[str, Any]:
    """Three chats (A oldest, C newest), a turn of A answered 1.5 s after it closed, an LLM
    call, a rate limit in C and a gateway waiting for a QR scan."""

    def at(minutes: float) -> datetime:
        return now - timedelta(minutes=minutes)

    a = inbound(A, "Hello there", wa_timestamp=at(10), received_at=at(10))
    b = inbound(B, "Where is my ORDER, 50% off?", wa_timestamp=at(5), received_at=at(5))
    c = inbound(C, "bye", wa_timestamp=at(1), received_at=at(1))
    turn = Turn(
        turn_id="turn-a",
        chat_id=A,
        account_id=ACCOUNT,
        sender_id=A,
        seq=0,
        message_ids=[a.message_id],
        text=a.body,
        is_group=False,
        first_received_at=a.received_at,
        last_received_at=a.received_at,
    )
    reply = OutboundMessage(
        outbound_id="reply-a",
        chat_id=A,
        account_id=ACCOUNT,
        text="Hi! How can I help?",
        turn_id="turn-a",
        created_at=at(9.9),
    )
    sent = DeliveryReceipt(
        outbound_id="reply-a",
        chat_id=A,
        account_id=ACCOUNT,
        status="sent",
        wa_message_id="true_A_1",
        at=a.received_at + timedelta(seconds=1.5),
    )
    call = LLMCall(
        call_id="call-a",
        turn_id="turn-a",
        chat_id=A,
        model="gpt-test",
        base_url="http://x",
        status="ok",
        prompt_tokens=20,
        completion_tokens=10,
        total_tokens=30,
        at=at(10),
    )
    limited = GuardDecision(
        decision_id="d-c",
        account_id=ACCOUNT,
        chat_id=C,
        sender_id=C,
        message_id=c.message_id,
        event="message",
        type="chat",
        reason="rate_limited_chat",
        received_at=at(1),
    )
    # WhatsApp Web shows the bot's reply in the chat, so the gateway forwards it to wa.inbound
    # (from_me, sent_by_bot): the same message as the outbound row, not a second one.
    echo = inbound(
        A,
        "Hi! How can I help?",
        sender_id=ACCOUNT,
        from_me=True,
        sent_by_bot=True,
        wa_timestamp=at(9.9),
        received_at=at(9.9),
    )
    qr = GatewayEvent(gateway="main", kind="state", state="qr", qr="2@QR-PAYLOAD,1", at=at(0.5))
    writer = StoreWriter(url)
    try:
        await writer.prepare()
        await writer.write(
            [
                _archived("inbound", a),
                _archived("inbound", b),
                _archived("inbound", c),
                _archived("inbound", echo),
                _archived("turn", turn),
                _archived("outbound", reply),
                _archived("delivery", sent),
                _archived("llm_call", call),
                _archived("decision", limited),
                _archived("event", qr),
            ]
        )
    finally:
        await writer.close()
    return {"qr": qr}


async def produce(broker: Broker, topic: str, key: str, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, key=key.encode(), value=value)
    finally:
        await producer.stop()


@pytest.fixture
def served(
    kafka_broker: Broker, database: Database, tmp_path: Path
) -> Iterator[tuple[ApiServer, dict[str, Any]]]:
    settings = api_settings(kafka_broker, database.url, tmp_path)
    seeded = asyncio.run(seed(database.url, datetime.now(UTC)))
    asyncio.run(
        produce(
            kafka_broker,
            settings.topic("events"),
            "main",
            seeded["qr"].model_dump_json().encode(),
        )
    )
    with ApiServer(settings) as server:
        yield server, seeded


def test_reads_chats_history_and_stats(served: tuple[ApiServer, dict[str, Any]]) -> None:
    api, _ = served
    status, _, page = api.call("GET", "/api/chats")
    assert status == 200
    assert [c["chat_id"] for c in page["chats"]] == [C, B, A] and page["next_cursor"] is None

    # Cursor paging: every chat once, in order.
    seen, cursor = [], ""
    while True:
        status, _, page = api.call("GET", f"/api/chats?limit=2{cursor}")
        assert status == 200
        seen += [c["chat_id"] for c in page["chats"]]
        if not page["next_cursor"]:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert seen == [C, B, A]

    # q: case-insensitive text search; % and _ are literal.
    assert [c["chat_id"] for c in api.call("GET", "/api/chats?q=order")[2]["chats"]] == [B]
    assert [c["chat_id"] for c in api.call("GET", "/api/chats?q=50%25")[2]["chats"]] == [B]
    assert api.call("GET", "/api/chats?q=5_%25")[2]["chats"] == []

    status, _, history = api.call("GET", f"/api/chats/{A}/messages")
    assert status == 200
    assert [(m["direction"], m["text"], m["delivery_status"]) for m in history["messages"]] == [
        ("out", "Hi! How can I help?", "sent"),
        ("in", "Hello there", None),
    ]
    status, _, older = api.call("GET", f"/api/chats/{A}/messages?limit=1")
    assert len(older["messages"]) == 1 and older["next_before"]
    _, _, rest = api.call("GET", f"/api/chats/{A}/messages?before={older['next_before']}")
    assert [m["text"] for m in rest["messages"]] == ["Hello there"]
    # A time works too (messages strictly older).
    when = urllib.request.quote(history["messages"][0]["at"])
    _, _, rest = api.call("GET", f"/api/chats/{A}/messages?before={when}")
    assert [m["text"] for m in rest["messages"]] == ["Hello there"]
    assert api.call("GET", f"/api/chats/{A}/messages?before=yesterday")[0] == 422
    status, _, missing = api.call("GET", "/api/chats/491699999999@c.us/messages")
    assert status == 404 and missing["code"] == "unknown_chat"

    status, _, stats = api.call("GET", "/api/stats")
    assert status == 200
    assert sum(stats["messages_per_minute"]["in"]) == 3
    assert sum(stats["messages_per_minute"]["out"]) == 1
    assert len(stats["messages_per_minute"]["in"]) == 60
    assert stats["reply_latency_ms"]["p50"] == pytest.approx(1500, abs=1)
    assert list(stats["tokens_per_hour"]) == ["gpt-test"]
    assert sum(stats["tokens_per_hour"]["gpt-test"].values()) == 30
    assert stats["limit_drops"]["rate_limited_chat"] == 1
    assert stats["gateway_state"] == "qr"


GROUP = "120363000000000077@g.us"


async def seed_names(url: str, now: datetime) -> None:
    """Names as the gateway carries them: A renamed (the later message's name wins, though
    the archive writes it first), B without any name (an old record, schema_version 2), a
    group with its subject and its writers' names."""

    def at(minutes: float) -> datetime:
        return now - timedelta(minutes=minutes)

    first = inbound(A, "Hi", sender_name="Alice", chat_name=None, wa_timestamp=at(6))
    later = inbound(A, "It's me again", sender_name="Alice Smith", wa_timestamp=at(4))
    old = inbound(B, "No name here", wa_timestamp=at(3)).model_dump(mode="json")
    for field in ("sender_name", "chat_name"):
        del old[field]
    unnamed = InboundMessage.model_validate({**old, "schema_version": 2})
    bob = "491600000009@c.us"
    in_group = inbound(
        GROUP,
        "Who brings the cake?",
        sender_id=bob,
        author_id=bob,
        sender_name="Bob",
        chat_name="Birthday planning",
        wa_timestamp=at(2),
    )
    writer = StoreWriter(url)
    try:
        await writer.prepare()
        await writer.write([_archived("inbound", later), _archived("inbound", in_group)])
        await writer.write([_archived("inbound", first), _archived("inbound", unnamed)])
    finally:
        await writer.close()


def test_chat_listing_and_history_show_the_names_whatsapp_gave(
    kafka_broker: Broker, database: Database, tmp_path: Path
) -> None:
    asyncio.run(seed_names(database.url, datetime.now(UTC)))
    with ApiServer(api_settings(kafka_broker, database.url, tmp_path)) as api:
        status, _, page = api.call("GET", "/api/chats")
        assert status == 200
        assert [(c["chat_id"], c["name"]) for c in page["chats"]] == [
            (GROUP, "Birthday planning"),
            (B, None),
            (A, "Alice Smith"),
        ]
        _, _, history = api.call("GET", f"/api/chats/{A}/messages")
        assert history["chat_name"] == "Alice Smith"
        assert [(m["text"], m["sender_name"]) for m in history["messages"]] == [
            ("It's me again", "Alice Smith"),
            ("Hi", "Alice"),
        ]
        _, _, group = api.call("GET", f"/api/chats/{GROUP}/messages")
        assert group["chat_name"] == "Birthday planning"
        assert [(m["sender_id"], m["sender_name"]) for m in group["messages"]] == [
            ("491600000009@c.us", "Bob")
        ]
        _, _, unnamed = api.call("GET", f"/api/chats/{B}/messages")
        assert unnamed["chat_name"] is None
        assert [m["sender_name"] for m in unnamed["messages"]] == [None]


def test_qr_png_while_the_gateway_waits_for_a_scan(
    served: tuple[ApiServer, dict[str, Any]],
) -> None:
    api, _ = served
    status, _, body = api.call("GET", "/api/whatsapp/status")
    assert status == 200 and body["state"] == "qr"
    qr = api.until(lambda: (r := api.call("GET", "/api/whatsapp/qr"))[0] == 200 and r, 30, "QR")
    assert qr[1]["content-type"] == "image/png" and qr[2][:8] == b"\x89PNG\r\n\x1a\n"
    assert api.call("GET", "/api/whatsapp/qr", token=None)[0] == 401


def test_controls_are_records_on_chat_control(
    served: tuple[ApiServer, dict[str, Any]], kafka_broker: Broker
) -> None:
    api, _ = served
    topic = api.settings.topic("control")
    status, _, paused = api.call("POST", f"/api/chats/{A}/pause", {"minutes": 30})
    assert status == 202 and paused["action"] == "pause"
    assert api.call("POST", f"/api/chats/{A}/resume")[0] == 202
    status, _, profile = api.call(
        "PUT", f"/api/chats/{B}/profile", {"persona": "You are terse.", "enabled": True}
    )
    assert status == 200 and profile["persona"] == "You are terse."
    assert api.call("GET", f"/api/chats/{B}/profile")[2]["persona"] == "You are terse."
    assert api.call("GET", f"/api/chats/{C}/profile")[2] == {
        "chat_id": C,
        "persona": None,
        "enabled": True,
        "paused_until": None,
        "updated_at": None,
    }
    status, _, body = api.call("POST", "/api/chats/491699999999@c.us/pause", {"minutes": 5})
    assert status == 404 and body == {
        "code": "unknown_chat",
        "message": "no message of this chat is in the store",
        "field": "chat_id",
    }
    status, _, body = api.call("POST", f"/api/chats/{A}/pause", {"minutes": 0})
    assert status == 422 and body["field"] == "minutes"

    status, _, account = api.call(
        "PUT",
        f"/api/accounts/{ACCOUNT}/profile",
        {"system_prompt": "Answer in German.", "model": "gpt-x", "rate_chat_per_minute": 2},
    )
    assert status == 200 and account["model"] == "gpt-x"
    listed = api.call("GET", "/api/accounts")[2]["accounts"]
    assert [a["account_id"] for a in listed] == [ACCOUNT]
    assert listed[0]["system_prompt"] == "Answer in German."
    assert api.call("GET", "/api/accounts/4900000@c.us/profile")[0] == 404

    records = asyncio.run(read_topic(kafka_broker, topic, lambda r: len(r) >= 3 + 4))
    chats = [r for r in records if r.value["action"] != "account_profile"]
    # One chat's records are in order (one partition); there is no order across chats.
    assert [r.value["action"] for r in chats if r.key == A] == ["pause", "resume"]
    assert [r.value["action"] for r in chats if r.key == B] == ["profile"]
    assert len(chats) == 3
    pause = next(r for r in chats if r.value["action"] == "pause")
    assert pause.value["operator"] == "ops" and pause.value["until"]
    accounts = [r for r in records if r.value["action"] == "account_profile"]
    assert sorted(r.partition for r in accounts) == [0, 1, 2, 3]  # one per partition
    assert {r.value["persona"] for r in accounts} == {"Answer in German."}


def test_manual_messages_idempotent_scheduled_and_limited(
    served: tuple[ApiServer, dict[str, Any]], kafka_broker: Broker
) -> None:
    api, _ = served
    topic = api.settings.topic("outbound")
    key = {"Idempotency-Key": "retry-" + uuid.uuid4().hex}
    first = api.call(
        "POST", "/api/messages", {"chat_id": A, "text": "Your order shipped."}, headers=key
    )
    again = api.call(
        "POST", "/api/messages", {"chat_id": A, "text": "Your order shipped."}, headers=key
    )
    assert first[0] == again[0] == 202
    assert first[2]["outbound_id"] == again[2]["outbound_id"] and first[2]["state"] == "produced"

    send_at = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
    status, _, held = api.call(
        "POST",
        "/api/messages",
        {"chat_id": B, "text": "Reminder", "send_at": send_at, "priority": 1},
    )
    assert status == 202 and held["state"] == "scheduled" and held["priority"] == 1
    _, _, history = api.call("GET", f"/api/chats/{B}/messages")
    assert history["messages"][0]["delivery_status"] == "scheduled"
    assert history["messages"][0]["priority"] == 1

    unknown = api.call("POST", "/api/messages", {"chat_id": "491699999999@c.us", "text": "hi"})
    assert unknown[0] == 404 and unknown[2]["code"] == "unknown_chat"
    new_chat = api.call(
        "POST",
        "/api/messages",
        {"chat_id": "491699999999@c.us", "text": "hi", "account_id": ACCOUNT},
    )
    assert new_chat[0] == 202

    # The per-chat limit (the account's, 1 a minute here) holds unless overridden.
    assert (
        api.call("PUT", f"/api/accounts/{ACCOUNT}/profile", {"rate_chat_per_minute": 1})[0] == 200
    )
    over = api.call("POST", "/api/messages", {"chat_id": A, "text": "one more"})
    assert over[0] == 429 and over[2]["code"] == "chat_rate_limited" and over[1]["retry-after"]
    forced = api.call(
        "POST", "/api/messages", {"chat_id": A, "text": "one more", "override_limits": True}
    )
    assert forced[0] == 202

    def manual(records: list[Any]) -> list[Any]:
        return [r for r in records if r.value["kind"] == "manual"]

    began = time.monotonic()
    records = asyncio.run(read_topic(kafka_broker, topic, lambda r: len(manual(r)) >= 4, 30))
    out = manual(records)
    assert [r.value["text"] for r in out].count("Your order shipped.") == 1
    assert {r.value["outbound_id"] for r in out} == {
        first[2]["outbound_id"],
        held["outbound_id"],
        new_chat[2]["outbound_id"],
        forced[2]["outbound_id"],
    }
    reminder = next(r for r in out if r.value["text"] == "Reminder")
    assert reminder.key == B and datetime.fromisoformat(reminder.value["created_at"]) >= (
        datetime.fromisoformat(send_at)
    )
    assert time.monotonic() - began < 30
    _, _, history = api.call("GET", f"/api/chats/{B}/messages")
    assert all(m["delivery_status"] != "scheduled" for m in history["messages"])


def test_database_down_is_503_and_back(kafka_broker: Broker, tmp_path: Path) -> None:
    with throwaway_postgres() as server:
        url = server.create_database()
        asyncio.run(seed(url, datetime.now(UTC)))
        with ApiServer(api_settings(kafka_broker, url, tmp_path)) as api:
            assert api.call("GET", "/api/chats")[0] == 200
            server.stop("fast")
            status, head, body = api.call("GET", "/api/chats")
            assert status == 503 and body["code"] == "store_unavailable", body
            assert "store cannot be reached" in body["message"] and head["retry-after"]
            status, _, ready = api.call("GET", "/readyz")
            assert status == 503 and ready["store"] is False and ready["broker"] is True
            assert api.call("GET", "/healthz")[0] == 200
            server.start()
            api.until(lambda: api.call("GET", "/api/chats")[0] == 200, 30, "the store is back")

"""No message text in the logs at any level (Apache Kafka, SQLite store, the API in the worker).

A conversation at WABOT_LOG_LEVEL=DEBUG and WABOT_LOG_LIBRARIES=DEBUG: a customer's message,
the bot's reply, the archive writing both to the store, an operator searching the chats for a
word of the message and sending a message by hand. Libraries log what they handle at DEBUG
(SQLAlchemy its statements' parameters, aiosqlite the calls it runs, openai its requests'
bodies, uvicorn the paths with their query strings): none of the texts nor the search word may
reach the log.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from pipeline.broker import free_port
from tests.conftest import Broker
from tests.conversation import Conversation, inbound

pytestmark = pytest.mark.integration

#: Words that occur nowhere else: a log line holding one holds a customer's text.
SECRET = "marmalade-zeppelin"
SEARCH = "zeppelin"
MANUAL = "quokka-saxophone from the operator"


def call(port: int, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        method="POST" if data else "GET",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_a_conversation_at_debug_logs_no_message_text(kafka_broker: Broker, tmp_path: Path) -> None:
    port = free_port()
    conv = Conversation(
        kafka_broker,
        tmp_path,
        WABOT_API_IN_WORKER="true",
        WABOT_API_PORT=str(port),
        WABOT_LOG_LEVEL="DEBUG",
        WABOT_LOG_LIBRARIES="DEBUG",
    )
    chat = "491630000077@c.us"
    try:
        worker = conv.start_worker()
        token = worker.token
        assert token

        async def talk() -> None:
            await conv.send(inbound(chat, f"my secret is {SECRET}, keep it"))
            await conv.collect("outbound", lambda r: any(x["chat_id"] == chat for x in r))
            await conv.stop_clients()

        asyncio.run(talk())
        deadline = time.monotonic() + 30
        found: list[Any] = []
        while not found and time.monotonic() < deadline:
            status, page = call(port, f"/api/chats?q={SEARCH}", token)
            found = page.get("chats", []) if status == 200 else []
            time.sleep(0.5)
        assert [c["chat_id"] for c in found] == [chat]
        status, accepted = call(port, "/api/messages", token, {"chat_id": chat, "text": MANUAL})
        assert status == 202, accepted
        status, page = call(port, f"/api/chats/{chat}/messages", token)
        assert status == 200 and any(SECRET in (m["text"] or "") for m in page["messages"])
        assert worker.stop() == 0
    finally:
        conv.close()
    log = worker.log.read_text(errors="replace")
    assert log.count("\n") > 200, "expected a DEBUG log"
    leaks = [line for line in log.splitlines() if SEARCH in line or "quokka" in line]
    assert not leaks, f"{len(leaks)} log lines hold message texts, e.g.:\n" + "\n".join(
        line[:300] for line in leaks[:5]
    )

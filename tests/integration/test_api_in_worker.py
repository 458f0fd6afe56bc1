"""The operator API inside a worker (WABOT_API_IN_WORKER, what `make dev` runs), on Apache Kafka.

One process: the worker answers a message, its archive fills the store, and the API it
serves on WABOT_API_PORT lists the chat and its history with the reply; SIGTERM stops the
worker and the API together, cleanly.
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


def get(port: int, path: str, token: str | None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_the_worker_serves_the_api_and_stops_with_it(kafka_broker: Broker, tmp_path: Path) -> None:
    port = free_port()
    conv = Conversation(
        kafka_broker, tmp_path, WABOT_API_IN_WORKER="true", WABOT_API_PORT=str(port)
    )
    chat = "491630000001@c.us"
    try:
        worker = conv.start_worker()
        token = worker.token
        assert get(port, "/healthz", None)[0] == 200
        assert get(port, "/api/chats", None)[0] == 401

        async def talk() -> None:
            await conv.send(inbound(chat, "hello api"))
            await conv.collect("outbound", lambda r: any(x["chat_id"] == chat for x in r))
            await conv.stop_clients()

        asyncio.run(talk())
        deadline = time.monotonic() + 30
        while True:
            status, page = get(port, f"/api/chats/{chat}/messages", token)
            texts = [m["text"] for m in page["messages"]] if status == 200 else []
            if len(texts) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert status == 200, page
        assert "hello api" in texts and any(t.endswith("]: hello api") for t in texts), texts
        status, chats = get(port, "/api/chats", token)
        assert status == 200 and chat in [c["chat_id"] for c in chats["chats"]]

        assert worker.stop() == 0
        log = worker.log.read_text(errors="replace")
        assert "Traceback" not in log, log[-3000:]
        with pytest.raises(OSError):
            get(port, "/healthz", None)
    finally:
        conv.close()

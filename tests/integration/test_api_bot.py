"""The operator API steering a real worker on Apache Kafka (store: SQLite and PostgreSQL).

Through the API: a paused chat stays quiet and answers again once resumed, a persona shows
in the stand-in's echo (it echoes a hash of the system prompt it got), an account's system
prompt reaches the account's other chats while the chat's persona wins in its own, and a
manual message reaches wa.outbound as kind ``manual``. Straight on chat.control: a control for
a chat the bot has never seen creates its state, and a record that does not decode goes to
the DLQ while the next one is applied.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline.config.settings import Settings
from pipeline.testing.workers import WorkerProcess
from schemas import ChatControl
from tests.conftest import Broker
from tests.conversation import ACCOUNT, Conversation, inbound
from tests.databases import (  # noqa: F401  (fixtures)
    Database,
    database_fixture,
    postgres_server_fixture,
)
from tests.integration.test_api_store import TOKEN, ApiServer

pytestmark = pytest.mark.integration


def sys_hash(prompt: str) -> str:
    return hashlib.sha1(prompt.encode()).hexdigest()[:6]


DEFAULT = sys_hash(Settings().system_prompt)


def settings_of(conv: Conversation) -> Settings:
    """The API's settings: the worker's topics, store and broker."""
    fields: dict[str, Any] = {
        k.removeprefix("WABOT_").lower(): v for k, v in conv.env.items() if k.startswith("WABOT_")
    }
    fields["api_tokens"] = {"ops": TOKEN}
    fields["api_port"] = WorkerProcess({}, conv.tmp_path / "unused.log", conv.tmp_path).port
    return Settings(**fields)


def logged(worker: WorkerProcess, predicate: Callable[[str], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate(worker.log.read_text(errors="replace")):
            return
        time.sleep(0.2)
    raise AssertionError(f"not in the worker's log after {timeout}s:\n{worker.tail()}")


def send(conv: Conversation, *messages: Any) -> None:
    """Produce inbound messages in a loop of their own (the producer does not outlive it)."""

    async def run() -> None:
        await conv.send(*messages)
        await conv.stop_clients()

    asyncio.run(run())


def count(text: str, *parts: str) -> int:
    return sum(all(p in line for p in parts) for line in text.splitlines())


async def replies_in(conv: Conversation, chat: str, n: int, settle: float = 0.0) -> list[str]:
    records = await conv.collect(
        "outbound",
        lambda r: len([x for x in r if x["chat_id"] == chat and x["kind"] == "reply"]) >= n,
        timeout=60,
        settle=settle,
    )
    return [x["text"] for x in records if x["chat_id"] == chat and x["kind"] == "reply"]


def test_pause_resume_persona_account_and_manual_through_the_api(
    kafka_broker: Broker, tmp_path: Path, database: Database
) -> None:
    a, b = "491610000001@c.us", "491610000002@c.us"
    conv = Conversation(kafka_broker, tmp_path, WABOT_DATABASE_URL=database.url)
    try:
        worker = conv.start_worker()
        with ApiServer(settings_of(conv)) as api:
            send(conv, inbound(a, "hello"), inbound(b, "hi"))
            assert asyncio.run(replies_in(conv, a, 1)) == [f"echo[2|sys:{DEFAULT}]: hello"]
            api.until(lambda: api.call("GET", f"/api/chats/{a}/messages")[0] == 200, 60, "archived")

            # Paused: the bot stays quiet, and says why on wa.decisions.
            assert api.call("POST", f"/api/chats/{a}/pause", {"minutes": 10})[0] == 202
            logged(worker, lambda t: count(t, "control", a, "paused until", "by ops") == 1)
            quiet = inbound(a, "are you there?")
            send(conv, quiet)
            decisions = asyncio.run(
                conv.collect(
                    "decisions", lambda r: any(d["message_id"] == quiet.message_id for d in r)
                )
            )
            assert [d["reason"] for d in decisions if d["message_id"] == quiet.message_id] == [
                "paused"
            ]
            assert len(asyncio.run(replies_in(conv, a, 1, settle=2.0))) == 1

            # Resumed: it answers again.
            assert api.call("POST", f"/api/chats/{a}/resume")[0] == 202
            logged(worker, lambda t: count(t, "control", a, "resumed") == 1)
            send(conv, inbound(a, "back?"))
            assert asyncio.run(replies_in(conv, a, 2))[-1].endswith("]: back?")

            # A persona set through the API is the chat's system prompt.
            persona = "You are a pirate. Answer like one."
            status, _, _ = api.call("PUT", f"/api/chats/{a}/profile", {"persona": persona})
            assert status == 200
            logged(worker, lambda t: count(t, "control", a, "profile set") == 1)
            send(conv, inbound(a, "who are you"))
            assert (
                f"|sys:{sys_hash(persona)}]: who are you" in asyncio.run(replies_in(conv, a, 3))[-1]
            )

            # The account's system prompt reaches its other chats; a's persona still wins.
            prompt = "You answer for the bakery on Main Street."
            status, _, _ = api.call(
                "PUT", f"/api/accounts/{ACCOUNT}/profile", {"system_prompt": prompt}
            )
            assert status == 200
            logged(worker, lambda t: count(t, "control", ACCOUNT, "profile set") == 4)
            send(conv, inbound(b, "open today?"), inbound(a, "and now?"))
            assert (
                f"|sys:{sys_hash(prompt)}]: open today?" in asyncio.run(replies_in(conv, b, 2))[-1]
            )
            assert f"|sys:{sys_hash(persona)}]: and now?" in asyncio.run(replies_in(conv, a, 4))[-1]

            # A manual message: on wa.outbound, kind manual, the id the API answered.
            status, _, sent = api.call(
                "POST", "/api/messages", {"chat_id": a, "text": "A human here, hello!"}
            )
            assert status == 202
            records = asyncio.run(
                conv.collect(
                    "outbound", lambda r: any(x["outbound_id"] == sent["outbound_id"] for x in r)
                )
            )
            manual = [x for x in records if x["outbound_id"] == sent["outbound_id"]]
            assert [(m["kind"], m["chat_id"], m["text"]) for m in manual] == [
                ("manual", a, "A human here, hello!")
            ]

            # The account's model and per-chat limit reach the bot (the worker's settings
            # have the limit off): a new chat is answered by that model, once a minute.
            status, _, _ = api.call(
                "PUT",
                f"/api/accounts/{ACCOUNT}/profile",
                {"system_prompt": prompt, "model": "bakery-model", "rate_chat_per_minute": 1},
            )
            assert status == 200
            logged(worker, lambda t: count(t, "control", ACCOUNT, "model bakery-model") == 4)
            if datetime.now(UTC).second > 40:  # both messages in one minute's window
                time.sleep(61 - datetime.now(UTC).second)
            c = "491610000003@c.us"
            first, second = inbound(c, "one"), inbound(c, "two")
            send(conv, first)
            results = asyncio.run(
                conv.collect("llm_results", lambda r: any(x["turn"]["chat_id"] == c for x in r))
            )
            calls = [call for x in results if x["turn"]["chat_id"] == c for call in x["calls"]]
            assert [(call["model"], call["status"]) for call in calls] == [("bakery-model", "ok")]
            send(conv, second)
            decisions = asyncio.run(
                conv.collect(
                    "decisions", lambda r: any(d["message_id"] == second.message_id for d in r)
                )
            )
            assert [d["reason"] for d in decisions if d["chat_id"] == c] == ["rate_limited_chat"]
            assert len(asyncio.run(replies_in(conv, c, 1, settle=2.0))) == 1
        assert "A human here" not in worker.log.read_text() and TOKEN not in worker.log.read_text()
    finally:
        conv.close()


def test_controls_for_unknown_chats_and_bad_control_records(
    kafka_broker: Broker, tmp_path: Path
) -> None:
    never_seen = "491620000001@c.us"
    conv = Conversation(kafka_broker, tmp_path)
    try:
        worker = conv.start_worker()

        async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            producer = await conv.producer()
            topic = conv.topics["control"]
            await producer.send_and_wait(topic, key=never_seen.encode(), value=b"{not json")
            pause = ChatControl(
                action="pause",
                chat_id=never_seen,
                until="2999-01-01T00:00:00Z",  # type: ignore[arg-type]
            )
            await producer.send_and_wait(
                topic, key=never_seen.encode(), value=pause.model_dump_json().encode()
            )
            logged(worker, lambda t: count(t, "control", never_seen, "paused until") == 1)
            message = inbound(never_seen, "hello?")
            await conv.send(message)
            decisions = await conv.collect(
                "decisions", lambda r: any(d["message_id"] == message.message_id for d in r)
            )
            dead = await conv.collect("dlq", lambda r: any(d["agent"] == "guard" for d in r))
            await conv.stop_clients()
            return decisions, dead

        decisions, dead = asyncio.run(run())
        assert [d["reason"] for d in decisions if d["chat_id"] == never_seen] == ["paused"]
        letters = [d for d in dead if d["agent"] == "guard"]
        assert [d["source_topic"] for d in letters] == [conv.topics["control"]]
        assert "invalid record" in letters[0]["reason"]
        assert json.loads(json.dumps(letters[0]))["raw"]  # the bytes are kept (base64)
    finally:
        conv.close()

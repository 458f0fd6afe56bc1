"""The API's scheduler of held manual messages on a real store (SQLite and PostgreSQL) and a
real broker: a message that can never be sent ends ``failed`` with its reason and a dead
letter, and every other due message still goes out; a broker outage only holds them.

The bad rows are written straight into the store, as an older version of the API (which
took them) left them there.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.broker import EmbeddedBroker, free_port
from pipeline.store.engine import create_engine
from pipeline.store.models import ChatRow, ManualMessageRow
from tests.conftest import Broker
from tests.conversation import ACCOUNT
from tests.databases import (  # noqa: F401  (fixtures)
    Database,
    database_fixture,
    postgres_server_fixture,
)
from tests.integration.test_api_store import A, ApiServer, B, C, api_settings, read_topic, seed

pytestmark = pytest.mark.integration

STATUS = "status@broadcast"


async def insert(url: str, *rows: Any) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            for row in rows:
                table = type(row).__table__
                values = {c.name: getattr(row, c.key) for c in table.columns}
                await connection.execute(table.insert().values(**values))
    finally:
        await engine.dispose()


def stuck(outbound_id: str, chat_id: str, text: str, *, state: str, ago: float) -> ManualMessageRow:
    """A row an older API stored: due ``ago`` seconds ago, priority 1 (it sorts first)."""
    at = datetime.now(UTC) - timedelta(seconds=ago)
    return ManualMessageRow(
        outbound_id=outbound_id,
        idempotency_key=None,
        chat_id=chat_id,
        account_id=ACCOUNT,
        text=text,
        priority=1,
        send_at=at,
        state=state,
        created_at=at,
        operator="ops",
    )


def manual(records: list[Any]) -> list[Any]:
    return [r for r in records if r.value.get("kind") == "manual"]


def shown(api: ApiServer, chat_id: str, outbound_id: str) -> dict[str, Any]:
    status, _, page = api.call("GET", f"/api/chats/{chat_id}/messages")
    assert status == 200, page
    [found] = [m for m in page["messages"] if m["outbound_id"] == outbound_id]
    return dict(found)


def test_a_message_that_cannot_be_sent_blocks_no_other(
    kafka_broker: Broker, database: Database, tmp_path: Path
) -> None:
    asyncio.run(seed(database.url, datetime.now(UTC)))  # chats A, B, C; the schema at head
    asyncio.run(
        insert(
            database.url,
            ChatRow(chat_id=STATUS, account_id=ACCOUNT, is_group=False),
            stuck("manual-old-status", STATUS, "my story", state="scheduled", ago=60),
            # A POST that died between storing and producing (``sending`` past its grace).
            stuck("manual-old-blank", A, " \n ", state="sending", ago=300),
        )
    )
    settings = api_settings(kafka_broker, database.url, tmp_path)
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    with ApiServer(settings) as api:
        sent = {}
        for chat, priority in ((B, 5), (C, 3)):
            body = {"chat_id": chat, "text": f"p{priority}", "send_at": soon, "priority": priority}
            status, _, held = api.call("POST", "/api/messages", body)
            assert status == 202 and held["state"] == "scheduled", held
            sent[chat] = held["outbound_id"]

        out = asyncio.run(
            read_topic(kafka_broker, settings.topic("outbound"), lambda r: len(manual(r)) >= 2, 30)
        )
        assert sorted((r.key, r.value["text"]) for r in manual(out)) == [(B, "p5"), (C, "p3")]
        letters = asyncio.run(
            read_topic(kafka_broker, settings.topic("dlq"), lambda r: len(r) >= 2, 30)
        )
        by_id = {
            json.loads(base64.urlsafe_b64decode(r.value["raw"]))["outbound_id"]: r for r in letters
        }
        assert sorted(by_id) == ["manual-old-blank", "manual-old-status"]
        status_letter = by_id["manual-old-status"]
        assert status_letter.key == STATUS and "status@broadcast" in status_letter.value["reason"]
        assert status_letter.value["source_topic"] == "manual_messages"
        assert "blank" in by_id["manual-old-blank"].value["reason"]

        failed = shown(api, STATUS, "manual-old-status")
        assert failed["delivery_status"] == "failed" and failed["failed_at"]
        assert "status@broadcast" in failed["failure_reason"]
        assert failed["text"] == "my story" and failed["priority"] == 1
        blank = shown(api, A, "manual-old-blank")
        assert blank["delivery_status"] == "failed" and "blank" in blank["failure_reason"]
        # In its place by time (due 5 minutes ago, after A's two messages), page by page.
        seen, before = [], ""
        for _ in range(5):
            _, _, page = api.call("GET", f"/api/chats/{A}/messages?limit=1{before}")
            seen += [(m["direction"], m["delivery_status"]) for m in page["messages"]]
            if not page["next_before"]:
                break
            before = f"&before={page['next_before']}"
        assert seen == [("out", "failed"), ("out", "sent"), ("in", None)]

        # What the sink would refuse is refused at once now, not stored.
        status, _, refused = api.call(
            "POST", "/api/messages", {"chat_id": STATUS, "text": "hi", "account_id": ACCOUNT}
        )
        assert status == 422 and refused["field"] == "chat_id", refused

    # After a restart: failed stays failed, nothing is sent or dead-lettered again.
    with ApiServer(settings.model_copy(update={"api_port": free_port()})) as api:
        time.sleep(1.5)  # several scheduler rounds (every 0.2 s)
        assert shown(api, STATUS, "manual-old-status")["delivery_status"] == "failed"
        again = asyncio.run(read_topic(kafka_broker, settings.topic("dlq"), lambda r: True, 5))
        assert len(again) == 2
        out = asyncio.run(read_topic(kafka_broker, settings.topic("outbound"), lambda r: True, 5))
        assert len(manual(out)) == 2


def test_a_broker_outage_only_holds_due_messages(tmp_path: Path) -> None:
    """The API's broker stops answering (its process is stopped with SIGSTOP, then
    continued) while a message is due: the message stays ``scheduled`` (never ``failed``,
    no dead letter) and goes out once the broker answers again."""
    broker = EmbeddedBroker("127.0.0.1", free_port(), tmp_path / "broker")
    own = Broker("embedded", asyncio.run(broker.start()).bootstrap)
    running = broker.info()
    assert running is not None
    url = f"sqlite+aiosqlite:///{tmp_path / 'store' / 'wabot.db'}"
    asyncio.run(seed(url, datetime.now(UTC)))
    settings = api_settings(own, url, tmp_path, topic_partitions=1)
    try:
        with ApiServer(settings) as api:
            due = datetime.now(UTC) + timedelta(seconds=2)
            body = {"chat_id": A, "text": "after the outage", "send_at": due.isoformat()}
            status, _, held = api.call("POST", "/api/messages", body)
            assert status == 202 and held["state"] == "scheduled"
            os.kill(running.pid, signal.SIGSTOP)
            try:
                assert datetime.now(UTC) < due
                # Due for 14 s: rounds whose produce times out (10 s) and rounds after.
                time.sleep((due - datetime.now(UTC)).total_seconds() + 14)
                assert shown(api, A, held["outbound_id"])["delivery_status"] == "scheduled"
            finally:
                os.kill(running.pid, signal.SIGCONT)
            out = asyncio.run(
                read_topic(own, settings.topic("outbound"), lambda r: len(manual(r)) >= 1, 60)
            )
            # Perhaps twice (a produce that timed out may have reached the broker): the same
            # outbound_id, which the sink sends once.
            assert {r.value["outbound_id"] for r in manual(out)} == {held["outbound_id"]}
            # Produced: no longer held (the archive, not running here, would show it sent).
            api.until(
                lambda: (
                    not any(
                        m["delivery_status"] == "scheduled"
                        for m in api.call("GET", f"/api/chats/{A}/messages")[2]["messages"]
                    )
                ),
                30,
                "marked produced",
            )
            letters = asyncio.run(read_topic(own, settings.topic("dlq"), lambda r: True, 3))
            assert letters == []
    finally:
        broker.stop()

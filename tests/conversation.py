"""A running conversation pipeline for tests: worker processes, the LLM stand-in, clients.

Each harness has its own app id and topic names, so tests share one broker without
seeing each other's records.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from pipeline.config.settings import INTERNAL_TOPICS, topic_keys
from pipeline.dev.standin.config import StandinConfig
from pipeline.dev.standin.threaded import ThreadedStandin, run_in_thread
from pipeline.testing.workers import WorkerProcess
from schemas import InboundMessage
from tests.conftest import REPO, Broker

ACCOUNT = "10000@c.us"
_ids = itertools.count()


def inbound(chat: str, body: str, **fields: Any) -> InboundMessage:
    """An InboundMessage as the gateway would produce it."""
    defaults: dict[str, Any] = {
        "account_id": ACCOUNT,
        "message_id": f"3EB0{uuid.uuid4().hex[:16].upper()}{next(_ids)}",
        "chat_id": chat,
        "sender_id": fields.pop("sender_id", chat if not chat.endswith("@g.us") else "49111@c.us"),
        "from_me": False,
        "is_group": chat.endswith("@g.us"),
        "body": body,
        "type": "chat",
        "has_media": False,
        "wa_timestamp": datetime.now(UTC),
    }
    defaults.update(fields)
    return InboundMessage(**defaults)


class Conversation:
    def __init__(self, broker: Broker, tmp_path: Path, **settings: str) -> None:
        run = uuid.uuid4().hex[:8]
        self.broker = broker
        self.tmp_path = tmp_path
        self.app_id = f"conv-{run}"
        names = {name: f"t{run}.{name}" for name in topic_keys()}
        #: The topics' names as the worker uses them (internal ones carry the app id).
        self.topics = {
            name: f"{self.app_id}-{value}" if name in INTERNAL_TOPICS else value
            for name, value in names.items()
        }
        self.standin: ThreadedStandin = run_in_thread(StandinConfig())
        self.env = {
            "WABOT_BROKER_URL": broker.url,
            "WABOT_APP_ID": self.app_id,
            "WABOT_API_TOKENS": json.dumps({"tests": uuid.uuid4().hex}),
            "WABOT_DATA_DIR": str(tmp_path / "data"),
            "WABOT_TOPIC_PARTITIONS": "4",
            "WABOT_LLM_BASE_URL": self.standin.base_url,
            "WABOT_LLM_BACKOFF_S": "0.05",
            "WABOT_BURST_QUIET_S": "0",
            "WABOT_RATE_CHAT_PER_MINUTE": "0",
            "WABOT_RATE_SENDER_PER_DAY": "0",
            **{f"WABOT_TOPIC_{k.upper()}": v for k, v in names.items()},
            **settings,
        }
        self.workers: list[WorkerProcess] = []
        self._producer: AIOKafkaProducer | None = None

    # -- workers -------------------------------------------------------------
    def start_worker(self, wait: bool = True) -> WorkerProcess:
        n = len(self.workers) + 1
        worker = WorkerProcess(self.env, self.tmp_path / f"worker{n}.log", cwd=REPO).start()
        self.workers.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    def close(self) -> None:
        for worker in self.workers:
            if worker.proc is not None and worker.proc.poll() is None:
                worker.stop()
        self.standin.stop()

    # -- records ---------------------------------------------------------------
    async def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            self._producer = AIOKafkaProducer(bootstrap_servers=self.broker.bootstrap)
            await self._producer.start()
        return self._producer

    async def send(self, *messages: InboundMessage, gap_s: float = 0.0) -> None:
        producer = await self.producer()
        for message in messages:
            await producer.send_and_wait(
                self.topics["inbound"],
                key=message.chat_id.encode(),
                value=message.model_dump_json().encode(),
            )
            if gap_s:
                await asyncio.sleep(gap_s)

    async def send_raw(self, key: bytes, value: bytes) -> None:
        producer = await self.producer()
        await producer.send_and_wait(self.topics["inbound"], key=key, value=value)

    async def stop_clients(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def collect(
        self,
        topic: str,
        until: Callable[[list[dict[str, Any]]], bool],
        timeout: float = 60.0,
        settle: float = 0.0,
    ) -> list[dict[str, Any]]:
        """Records of ``topic`` (as JSON dicts, from the start) once ``until`` holds.

        ``settle`` keeps reading that long after ``until`` first holds, to catch records
        that must NOT appear (a duplicate reply, say). On timeout, returns what it has.
        """
        consumer = AIOKafkaConsumer(
            self.topics[topic],
            bootstrap_servers=self.broker.bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            metadata_max_age_ms=1000,
        )
        await consumer.start()
        records: list[dict[str, Any]] = []
        try:
            deadline = time.monotonic() + timeout
            done_at: float | None = None
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=200)
                for partition_records in batch.values():
                    records.extend(json.loads(r.value) for r in partition_records)
                if done_at is None and until(records):
                    done_at = time.monotonic()
                if done_at is not None and time.monotonic() - done_at >= settle:
                    break
        finally:
            await consumer.stop()
        return records


def by_chat(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    chats: dict[str, list[dict[str, Any]]] = {}
    # One chat lives in one partition, so topic order is the chat's order.
    for record in records:
        chats.setdefault(record["chat_id"], []).append(record)
    return chats

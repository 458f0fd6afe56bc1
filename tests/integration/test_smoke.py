"""Smoke test on a real broker: agent, changelog table, downstream topic, recovery.

A Ping produced to the ping topic is consumed by the ping agent in a real worker
process, which increments a changelog-backed counter and produces a Pong. A second
worker started after the first has stopped must continue the count, which it can only
do by recovering the table from the changelog topic.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from pipeline.testing.workers import WorkerProcess
from schemas import Ping, Pong
from tests.conftest import REPO, Broker

pytestmark = pytest.mark.integration


async def _ping_and_collect(
    bootstrap: str,
    ping_topic: str,
    pong_topic: str,
    keys: list[str],
    seen: int,
    timeout: float = 60.0,
) -> list[Pong]:
    """Produce one Ping per key; return all Pongs on the topic once ``seen + len(keys)`` are."""
    consumer = AIOKafkaConsumer(
        pong_topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        metadata_max_age_ms=1000,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await consumer.start()
    await producer.start()
    try:
        for key in keys:
            await producer.send_and_wait(
                ping_topic, key=key.encode(), value=Ping(key=key).model_dump_json().encode()
            )
        pongs: list[Pong] = []
        async with asyncio.timeout(timeout):
            while len(pongs) < seen + len(keys):
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    pongs.extend(Pong.model_validate_json(r.value) for r in records)
        return pongs
    finally:
        await producer.stop()
        await consumer.stop()


def test_agent_table_changelog_recovery(any_broker: Broker, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    ping_topic, pong_topic = f"smoke-{run}.ping", f"smoke-{run}.pong"
    env = {
        "WABOT_BROKER_URL": any_broker.url,
        "WABOT_LLM_BASE_URL": "http://127.0.0.1:9/v1",  # the worker needs one; none is called
        "WABOT_APP_ID": f"smoke-{run}",
        "WABOT_TOPIC_PING": ping_topic,
        "WABOT_TOPIC_PONG": pong_topic,
        "WABOT_TOPIC_PARTITIONS": "4",
        "WABOT_DATA_DIR": str(tmp_path / "data"),
    }

    first = WorkerProcess(env, tmp_path / "worker1.log", cwd=REPO).start()
    try:
        first.wait_ready()
        pongs = asyncio.run(
            _ping_and_collect(
                any_broker.bootstrap, ping_topic, pong_topic, ["alice", "bob", "alice"], seen=0
            )
        )
    finally:
        assert first.stop() == 0, first.tail()
    counts = sorted((p.key, p.count) for p in pongs)
    assert counts == [("alice", 1), ("alice", 2), ("bob", 1)], first.tail()

    second = WorkerProcess(env, tmp_path / "worker2.log", cwd=REPO).start()
    try:
        second.wait_ready()
        later = asyncio.run(
            _ping_and_collect(
                any_broker.bootstrap, ping_topic, pong_topic, ["alice", "bob"], seen=3
            )
        )
    finally:
        second.stop()
    # The counts go on from the first worker's: the table came back from the changelog.
    new = sorted({(p.key, p.count) for p in later} - set(counts))
    assert new == [("alice", 3), ("bob", 2)], second.tail()
    assert len(later) == 5 and all(p.trace_id for p in later)

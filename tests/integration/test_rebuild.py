"""`faust -A pipeline rebuild-tables` on Apache Kafka, with real workers and RocksDB stores.

A worker with ``WABOT_STORE=rocksdb://`` holds a short conversation (several chats, several
turns each, a ping), so every table of the app has content; it stops. Its RocksDB stores,
read from disk with rocksdict, are the state before. ``rebuild-tables`` must print, per
table, the digest of exactly that state (read from the changelogs) and delete the stores;
a new worker started on the empty store must rebuild them from the changelogs to the
same content, partition by partition; and a read-only ``--digest-only`` then prints the
same digests again. While that worker runs, the command refuses, with and without
``--force`` (the store is open on this machine).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from pipeline.application.app import ROCKSDB_OPTIONS
from pipeline.broker import free_port
from pipeline.ops.rebuild import state_digest
from pipeline.testing.workers import FAUST
from schemas import Ping
from tests.conftest import REPO, Broker
from tests.conversation import Conversation, inbound

pytestmark = pytest.mark.integration

rocksdict = pytest.importorskip("rocksdict")

#: Faust's RocksDB store keeps the changelog offset it recovered to under this key.
OFFSET_KEY = b"__faust\0offset__"
TABLES = {
    "chat_state",
    "guard_state",
    "ping_counts",
    "rate_counters",
    "sender_replies",
    "token_usage",
    "windows",
}
CHATS, TURNS = 4, 3

State = dict[str, dict[int, dict[bytes, bytes]]]


def read_stores(tabledir: Path) -> tuple[State, dict[str, dict[int, int]]]:
    """Every ``<table>-<partition>.db`` under ``tabledir``, read-only: the keys and values
    the worker left, and the changelog offset each partition was recovered to (if any)."""
    state: State = {}
    offsets: dict[str, dict[int, int]] = {}
    options = rocksdict.Options(raw_mode=True)
    for db in sorted(tabledir.glob("*.db")):
        found = re.fullmatch(r"(.+)-(\d+)\.db", db.name)
        assert found, db
        table, partition = found[1], int(found[2])
        store = rocksdict.Rdict(str(db), options, access_type=rocksdict.AccessType.read_only())
        try:
            items = dict(store.items())
        finally:
            store.close()
        if OFFSET_KEY in items:
            offsets.setdefault(table, {})[partition] = int(items.pop(OFFSET_KEY))
        state.setdefault(table, {})[partition] = items
    return state, offsets


def rebuild_tables(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FAUST, "-A", "pipeline", "rebuild-tables", *args],
        cwd=REPO,
        env={**env, "WABOT_WEB_PORT": str(free_port())},
        capture_output=True,
        text=True,
        timeout=120,
    )


def digests(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    return {t["table"]: t for t in report["tables"]}


async def converse(conv: Conversation) -> None:
    chats = [f"4915{100 + n}@c.us" for n in range(CHATS)]
    for turn in range(TURNS):
        await conv.send(*(inbound(chat, f"turn {turn} of {chat}") for chat in chats))
    producer = AIOKafkaProducer(bootstrap_servers=conv.broker.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            conv.topics["ping"],
            key=b"rebuild",
            value=Ping(key="rebuild").model_dump_json().encode(),
        )
    finally:
        await producer.stop()
    replies = await conv.collect("outbound", lambda r: len(r) >= CHATS * TURNS, timeout=60)
    assert len(replies) == CHATS * TURNS, replies
    await conv.collect("pong", lambda r: len(r) >= 1, timeout=30)
    await conv.stop_clients()


def test_rebuild_tables_restores_every_table(kafka_broker: Broker, tmp_path: Path) -> None:
    began = time.monotonic()
    conv = Conversation(
        kafka_broker,
        tmp_path,
        WABOT_STORE="rocksdb://",
        WABOT_RATE_CHAT_PER_MINUTE="100",
        WABOT_RATE_SENDER_PER_DAY="100",
    )
    tabledir = tmp_path / "data" / "worker" / "v1" / "tables"
    env = {**os.environ, **conv.env}
    try:
        first = conv.start_worker()
        asyncio.run(converse(conv))
        assert first.stop() == 0, first.tail()

        before, _ = read_stores(tabledir)
        assert set(before) == TABLES, sorted(before)
        # Opened with the worker's bounded sizes, not faust's 64 MiB memtables (RocksDB
        # writes the options of each open into an OPTIONS-<n> file beside its data).
        buffers = f"write_buffer_size={ROCKSDB_OPTIONS['write_buffer_size']}"
        for db in tabledir.glob("*.db"):
            latest = sorted(db.glob("OPTIONS-*"))[-1].read_text()
            assert buffers in latest, (
                db.name,
                [ln for ln in latest.splitlines() if "write_buffer_size" in ln],
            )
        for table, partitions in before.items():
            assert any(partitions.values()), f"{table} is empty before the rebuild"

        rebuilt = rebuild_tables(env, "--json")
        printed = digests(rebuilt)
        assert set(printed) == TABLES
        for table in TABLES:
            assert printed[table]["digest"] == state_digest(before[table]), table
            assert printed[table]["keys"] == sum(map(len, before[table].values())), table
        assert not list(tabledir.glob("*.db")), "the stores were not deleted"
        assert json.loads(rebuilt.stdout)["deleted"]

        second = conv.start_worker()
        live = rebuild_tables(env)
        assert live.returncode == 1, live.stdout + live.stderr
        assert "is live" in live.stderr and len(live.stderr.strip().splitlines()) == 1
        forced = rebuild_tables(env, "--force")
        assert forced.returncode == 1, forced.stdout + forced.stderr
        assert "LOCK is held" in forced.stderr, forced.stderr
        assert second.stop() == 0, second.tail()

        after, offsets = read_stores(tabledir)
        for table in TABLES:
            assert after[table] == before[table], f"{table} differs after the rebuild"
            # The offset key is written only by changelog recovery: the tables came back
            # from their changelogs, not from a store left behind.
            recovered = {p for p, keys in before[table].items() if keys}
            assert recovered <= set(offsets.get(table, {})), (table, offsets.get(table))

        audit = digests(rebuild_tables(env, "--digest-only", "--json"))
        assert {t: d["digest"] for t, d in audit.items()} == {
            t: d["digest"] for t, d in printed.items()
        }
        assert list(tabledir.glob("*.db")), "--digest-only deleted the store"

        # Switching to memory:// removes the RocksDB store the earlier runs left.
        switched = rebuild_tables({**env, "WABOT_STORE": "memory://"})
        assert switched.returncode == 0, switched.stdout + switched.stderr
        assert "left by an earlier rocksdb:// run" in switched.stdout, switched.stdout
        assert not list(tabledir.glob("*.db"))
    finally:
        conv.close()
    print(f"rebuild test took {time.monotonic() - began:.1f}s")


def test_unreachable_broker_is_one_line(tmp_path: Path) -> None:
    env = {
        "WABOT_BROKER_URL": f"kafka://127.0.0.1:{free_port()}",
        "WABOT_DATA_DIR": str(tmp_path / "data"),
        "WABOT_APP_ID": "rebuild-nobroker",
    }
    result = rebuild_tables({**os.environ, **env}, "--timeout", "3")
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach the broker"), lines

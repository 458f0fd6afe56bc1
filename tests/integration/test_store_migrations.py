"""The store's schema on SQLite and PostgreSQL: `faust -A pipeline db upgrade|current`, the
migrations matching the models, and the archive refusing nothing it should keep.

- `db current` on an empty database says it is behind (exit 1); `db upgrade` creates the
  schema; `db current` then says head;
- the migrated database and the models agree (Alembic's comparison finds no difference);
- an unreachable database is one line (exit 2) without the URL's password; a bad
  WABOT_DATABASE_URL stops start-up with one line naming the variable, without the password;
- the archive's sink: records the database refuses are dead-lettered one by one, the rest of
  the batch is written (in process, on the real databases).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from agents.archive import ArchiveConfig, Archived, Archiver
from pipeline.broker import free_port
from pipeline.store.engine import create_engine
from pipeline.store.models import Base
from pipeline.store.schema import head_revision
from pipeline.store.writer import StoreWriter
from schemas import DeliveryReceipt, Turn
from tests.conftest import REPO
from tests.conversation import ACCOUNT, inbound
from tests.databases import (  # noqa: F401  (fixtures)
    Database,
    database_fixture,
    postgres_server_fixture,
    snapshot,
)

pytestmark = pytest.mark.integration

FAUST = str(Path(sys.executable).with_name("faust"))


def faust_db(action: str, url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WABOT_DATABASE_URL": url, "WABOT_DATA_DIR": str(tmp_path / "data")}
    return subprocess.run(
        [FAUST, "-A", "pipeline", "db", action],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_db_upgrade_and_current(database: Database, tmp_path: Path) -> None:
    head = head_revision()
    before = faust_db("current", database.url, tmp_path)
    assert before.returncode == 1, before.stderr
    assert f"at nothing (empty), behind {head} (head)" in before.stdout

    upgraded = faust_db("upgrade", database.url, tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"upgraded from empty to {head} (head)" in upgraded.stdout

    current = faust_db("current", database.url, tmp_path)
    assert current.returncode == 0, current.stderr
    assert current.stdout.strip().endswith(f"at {head} (head)")

    engine = create_engine(database.url)
    try:
        async with engine.connect() as connection:

            def differences(sync: Any) -> list[Any]:
                context = MigrationContext.configure(sync, opts={"compare_type": True})
                return list(compare_metadata(context, Base.metadata))

            assert await connection.run_sync(differences) == []
    finally:
        await engine.dispose()
    assert all(rows == [] for rows in (await snapshot(database.url)).values())


def test_processes_starting_together_migrate_once(database: Database, tmp_path: Path) -> None:
    """A worker's archive and the API (in one process with WABOT_API_IN_WORKER, or in two),
    or several workers, starting on a fresh store at once: every one of them finds the schema
    at head, none fails half-way. (Alembic's ``context`` is global to a process, and SQLite
    runs DDL outside the migration's transaction.)"""
    env = {**os.environ, "WABOT_DATABASE_URL": database.url, "WABOT_DATA_DIR": str(tmp_path)}
    script = (
        "import asyncio\n"
        "from pipeline.store.engine import create_engine\n"
        "from pipeline.store.schema import upgrade, state\n"
        "async def main():\n"
        f"    engines = [create_engine({database.url!r}) for _ in range(2)]\n"
        "    await asyncio.gather(*(upgrade(engine) for engine in engines))\n"
        "    print((await state(engines[0])).behind)\n"
        "    for engine in engines:\n"
        "        await engine.dispose()\n"
        "asyncio.run(main())\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [proc.communicate(timeout=120) for proc in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err[-2000:]
        assert out.strip() == "False"


def test_unreachable_database_is_one_line_without_password(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://wabot:s3cret-pw@127.0.0.1:{free_port()}/nothing"
    result = faust_db("current", url, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach the store"), lines
    assert "s3cret-pw" not in result.stdout + result.stderr


def test_bad_database_url_stops_start_up_in_one_line(tmp_path: Path) -> None:
    result = faust_db("current", "mysql://root:s3cret-pw@db/wabot", tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "wabot: configuration error: WABOT_DATABASE_URL: unsupported database 'mysql'; use "
        "sqlite+aiosqlite:///path/to/file.db or "
        "postgresql+asyncpg://user:password@host:5432/database"
    ]


class ListTopic:
    """Stands in for the DLQ topic: keeps what is sent (the agent's own producer is Faust's)."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def send(self, key: bytes | None, value: Any) -> None:
        self.sent.append(value)


def source(n: int) -> SimpleNamespace:
    return SimpleNamespace(topic="t", partition=0, offset=n, key=b"k", value=b"{}")


async def test_refused_record_is_dead_lettered_and_the_rest_written(database: Database) -> None:
    """A turn id longer than a PostgreSQL index entry can hold (about 2.7 kB) is refused there
    (SQLite takes it); NUL characters, which PostgreSQL refuses in text, are stored as U+FFFD."""
    writer = StoreWriter(database.url)
    dlq = ListTopic()
    kinds: dict[str, Any] = {"inbound": "inbound", "delivery": "delivery", "turn": "turn"}
    archiver = Archiver(ArchiveConfig(["127.0.0.1:1"], kinds, "g"), writer, dlq)
    try:
        await writer.prepare()
        message = inbound("491530000001@c.us", "nul\x00inside")
        huge = secrets.token_hex(5000)  # random: PostgreSQL compresses repetitive keys
        turn = Turn(
            turn_id=huge,
            chat_id=message.chat_id,
            account_id=ACCOUNT,
            sender_id=message.sender_id,
            seq=0,
            message_ids=[message.message_id],
            text="x",
            is_group=False,
            first_received_at=message.received_at,
            last_received_at=message.received_at,
        )
        receipts = [
            DeliveryReceipt(
                outbound_id=f"o{i}", chat_id=message.chat_id, account_id=ACCOUNT, status="sent"
            )
            for i in range(6)
        ]
        batch = [
            Archived("inbound", message, "d0", source(0)),
            *(Archived("delivery", r, f"d{i}", source(i + 1)) for i, r in enumerate(receipts)),
            Archived("turn", turn, "d9", source(9)),
        ]
        await archiver.archive({"tp": batch_sources(batch)})  # type: ignore[dict-item]
        tables = await snapshot(database.url)
    finally:
        await writer.close()
    ids = {m["id"] for m in tables["messages"]}
    assert ids == {f"in|{ACCOUNT}|{message.chat_id}|{message.message_id}"} | {
        f"out|o{i}" for i in range(6)
    }
    assert [m["text"] for m in tables["messages"] if m["direction"] == "in"] == ["nul\ufffdinside"]
    if database.kind == "postgresql":
        assert [d.offset for d in dlq.sent] == [9] and tables["turns"] == []
        assert "the store refused the turn record" in dlq.sent[0].reason
    else:
        assert dlq.sent == [] and [t["turn_id"] for t in tables["turns"]] == [huge]


def batch_sources(batch: list[Archived]) -> list[Any]:
    """Kafka-like records whose values decode to ``batch``'s records, for Archiver.archive."""
    return [
        SimpleNamespace(
            topic=item.kind,
            partition=0,
            offset=item.source.offset,
            key=b"k",
            value=item.record.model_dump_json().encode(),
        )
        for item in batch
    ]

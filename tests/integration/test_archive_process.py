"""``faust -A pipeline archive``: the archive in a process of its own, beside a worker that
does not archive (``WABOT_ARCHIVE_ENABLED=false``), on a real Kafka and real databases.

- the worker alone answers and archives nothing (the archive group's lag grows);
- the archive process fills the store with exactly the ids on the topics, sends a record
  that does not decode to the DLQ (agent ``archive``) and counts both on its /metrics;
- it lowers its own CPU priority (nice 10), so the bot's turns come first;
- SIGTERM stops it promptly with exit 0; what arrives while it is down is archived by the
  next one, and nothing is archived twice.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from pipeline.broker import free_port
from pipeline.observability.faust_metrics import metric_prefix
from pipeline.testing.workers import FAUST
from tests.conftest import REPO, Broker
from tests.conversation import Conversation, inbound
from tests.databases import (  # noqa: F401  (fixtures)
    Database,
    archive_lag,
    database_fixture,
    postgres_server_fixture,
    snapshot,
)
from tests.integration.test_store_archive import (
    caught_up,
    conversation,
    expected_ids,
    ids_in,
    produce,
    topics_of,
)

pytestmark = pytest.mark.integration


class ArchiveProcess:
    """``faust -A pipeline archive --metrics-port P`` with the conversation's settings."""

    def __init__(self, conv: Conversation, log: Path) -> None:
        self.port = free_port()
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [FAUST, "-A", "pipeline", "archive", "--metrics-port", str(self.port)],
                cwd=REPO,
                env={**os.environ, **conv.env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM; the exit code (raises when it did not exit within ``timeout``)."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def archive_until_exit(env: dict[str, str], timeout: float) -> tuple[int, str]:
    """``faust -A pipeline archive`` with ``env`` over this process's environment, run to its
    end: its exit code and stderr."""
    done = subprocess.run(
        [FAUST, "-A", "pipeline", "archive"],
        cwd=REPO,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
    )
    return done.returncode, done.stderr.decode()


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        found = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if not found or found.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', found.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(found.group(3))
    return total


async def test_archive_process_beside_a_worker_that_does_not_archive(
    kafka_broker: Broker, tmp_path: Path, database: Database
) -> None:
    a, b = "491510000011@c.us", "491510000012@c.us"
    with conversation(kafka_broker, tmp_path, database.url, WABOT_ARCHIVE_ENABLED="false") as conv:
        conv.start_worker()
        await conv.send(inbound(a, "hello"), inbound(b, "hi there"))
        await conv.collect("outbound", lambda r: len(r) >= 2, timeout=60)
        group = f"{conv.app_id}-archive"
        # The worker answered and archived nothing.
        assert await archive_lag(kafka_broker.bootstrap, group, topics_of(conv)) > 0

        archive = ArchiveProcess(conv, tmp_path / "archive.log")
        try:
            await produce(conv, "delivery", [(a, b"{not json")])
            await caught_up(conv)
            assert ids_in(await snapshot(database.url)) == await expected_ids(conv)
            letters = await conv.collect(
                "dlq", lambda r: any(d["agent"] == "archive" for d in r), timeout=30
            )
            assert [d["source_topic"] for d in letters if d["agent"] == "archive"] == [
                conv.topics["delivery"]
            ]
            # It runs below the bot's priority (--nice 10 by default).
            stat = Path(f"/proc/{archive.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            assert int(stat[16]) == os.nice(0) + 10
            text = archive.metrics()
            prefix = metric_prefix(conv.app_id)
            archived = metric(text, f"{prefix}_records_total", agent="archive", direction="in")
            assert archived >= 9  # 2 inbound, 2 turns, 2 calls, 2 replies, the bad receipt
            assert metric(text, f"{prefix}_dead_letters_total", agent="archive") == 1
            assert f"{prefix}_store_lag_records" in text

            started = time.monotonic()
            assert archive.stop() == 0
            assert time.monotonic() - started < 15
            assert "archive: stopped" in archive.log.read_text()
        finally:
            archive.kill()

        # While no archive runs the bot answers; the next archive process catches up.
        await conv.send(inbound(a, "still there?"))
        await conv.collect("outbound", lambda r: len(r) >= 3, timeout=60)
        await asyncio.sleep(1)
        assert await archive_lag(kafka_broker.bootstrap, group, topics_of(conv)) > 0
        again = ArchiveProcess(conv, tmp_path / "archive-2.log")
        try:
            await caught_up(conv)
            tables = await snapshot(database.url)
            assert ids_in(tables) == await expected_ids(conv)
            # Nothing twice: one row per id (the ids' sets above would hide a repeat).
            assert len(tables["messages"]) == len({r["id"] for r in tables["messages"]})
            assert again.stop() == 0
        finally:
            again.kill()
            await conv.stop_clients()


def test_archive_process_without_a_broker_is_one_line_and_exit_2(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    code, stderr = archive_until_exit(
        {
            "WABOT_BROKER_URL": f"kafka://127.0.0.1:{port}",
            "WABOT_BROKER_START_TIMEOUT": "2",
            "WABOT_DATA_DIR": str(tmp_path / "data"),
        },
        timeout=60,
    )
    assert code == 2, stderr[-2000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    wanted = f"cannot reach the Kafka broker at 127.0.0.1:{port} (WABOT_BROKER_URL) within 2 s"
    assert len(errors) == 1 and wanted in errors[0], stderr[-2000:]
    assert "Traceback" not in stderr


def test_archive_process_on_a_store_newer_than_the_code_exits_1(
    kafka_broker: Broker, tmp_path: Path
) -> None:
    """A store migrated by a newer version: the archive cannot write it, says why, exits 1
    (the worker's archive stops alone and the bot goes on; a process of its own ends)."""
    path = tmp_path / "newer.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        db.execute("INSERT INTO alembic_version VALUES ('f00dfeedbeef')")
    code, stderr = archive_until_exit(
        {
            "WABOT_BROKER_URL": kafka_broker.url,
            "WABOT_APP_ID": f"newer-{uuid.uuid4().hex[:8]}",
            "WABOT_DATABASE_URL": f"sqlite+aiosqlite:///{path}",
            "WABOT_DATA_DIR": str(tmp_path / "data"),
        },
        timeout=120,
    )
    assert code == 1, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == (
        f"error: the archive stopped: cannot archive into sqlite+aiosqlite:///{path}"
    ), stderr[-3000:]
    assert "f00dfeedbeef" in stderr  # the logged reason names the revision it does not know

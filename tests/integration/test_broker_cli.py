"""The project's own broker commands, run as a user runs them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from pipeline.broker import free_port
from pipeline.testing.workers import FAUST
from tests.conftest import REPO

pytestmark = pytest.mark.integration


def _broker(action: str, kind: str, port: int, data: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WABOT_DATA_DIR": str(data)}
    return subprocess.run(
        [FAUST, "-A", "pipeline", "broker", action, "--kind", kind, "--port", str(port)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.parametrize("kind", ["embedded", "kafka"])
def test_start_status_stop(kind: str, tmp_path: Path) -> None:
    port = free_port()
    started = _broker("start", kind, port, tmp_path)
    try:
        assert started.returncode == 0, started.stderr
        assert f"{kind} broker ready on 127.0.0.1:{port}" in started.stdout

        status = _broker("status", kind, port, tmp_path)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "running on" in status.stdout and "answering metadata" in status.stdout
        assert (tmp_path / kind / f"{kind}.log").exists()

        # Starting again is harmless: it reports the broker that runs.
        again = _broker("start", kind, port, tmp_path)
        assert again.returncode == 0, again.stderr
    finally:
        stopped = _broker("stop", kind, port, tmp_path)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stdout
    after = _broker("status", kind, port, tmp_path)
    assert after.returncode == 3 and "not running" in after.stdout


def test_port_in_use_is_one_clear_line(tmp_path: Path, embedded_broker: object) -> None:
    port = int(str(embedded_broker.bootstrap).rsplit(":", 1)[1])
    result = _broker("start", "embedded", port, tmp_path)
    assert result.returncode == 1
    assert "already in use" in result.stderr and str(port) in result.stderr
    assert "Traceback" not in result.stderr


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=b"chat", partition=0)
    finally:
        await producer.stop()


async def _read_back(bootstrap: str, topic: str, group: str) -> tuple[list[bytes], int | None]:
    """Every record of partition 0 from the start, and the group's committed offset."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        committed = await consumer.committed(tp)
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        values: list[bytes] = []
        while len(values) < end:
            batch = await consumer.getmany(tp, timeout_ms=2000)
            values += [r.value for r in batch.get(tp, []) if r.value is not None]
        return values, committed
    finally:
        await consumer.stop()


async def _commit(bootstrap: str, topic: str, group: str, offset: int) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.commit({tp: offset})
    finally:
        await consumer.stop()


def test_dev_broker_keeps_topics_and_offsets_across_a_stop_and_a_crash(tmp_path: Path) -> None:
    """`make dev`'s broker (`--kind auto`) is Apache Kafka with its log on disk: records and
    a consumer group's committed offset are there after `make stop` + `make dev`, and after
    the broker is killed as a machine crash kills it."""
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    started = _broker("start", "auto", port, tmp_path)
    try:
        assert started.returncode == 0, started.stderr
        assert "kafka broker ready" in started.stdout and "topics kept in" in started.stdout
        asyncio.run(_produce(bootstrap, "wa.inbound", [b"hello", b"price?", b"thanks"]))
        asyncio.run(_commit(bootstrap, "wa.inbound", "wabot", 2))

        assert _broker("stop", "auto", port, tmp_path).returncode == 0
        assert _broker("start", "auto", port, tmp_path).returncode == 0
        values, committed = asyncio.run(_read_back(bootstrap, "wa.inbound", "wabot"))
        assert values == [b"hello", b"price?", b"thanks"]
        assert committed == 2

        asyncio.run(_produce(bootstrap, "wa.inbound", [b"after restart"]))
        pid = json.loads((tmp_path / "kafka" / "broker.json").read_text())["pid"]
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid)
        again = _broker("start", "auto", port, tmp_path)
        assert again.returncode == 0, again.stderr
        values, committed = asyncio.run(_read_back(bootstrap, "wa.inbound", "wabot"))
        assert values == [b"hello", b"price?", b"thanks", b"after restart"]
        assert committed == 2
    finally:
        _broker("stop", "auto", port, tmp_path)


def _wait_gone(pid: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"broker pid {pid} still alive {timeout}s after SIGKILL")


def test_auto_falls_back_to_the_memory_broker_and_says_so(tmp_path: Path) -> None:
    """Without the Kafka jars and without Maven to fetch them, `--kind auto` starts the
    embedded broker and warns, on one line, that its topics are kept in memory only."""
    port = free_port()
    env_path = str(Path(FAUST).parent)  # the venv only: no `mvn` (and no `java`) on PATH
    env = {
        **os.environ,
        "WABOT_DATA_DIR": str(tmp_path),
        "WABOT_KAFKA_HOME": str(tmp_path / "no-jars"),
        "PATH": env_path,
    }
    env.pop("JAVA_HOME", None)

    def run(action: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [FAUST, "-A", "pipeline", "broker", action, "--kind", "auto", "--port", str(port)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    started = run("start")
    try:
        assert started.returncode == 0, started.stderr
        assert "embedded broker ready" in started.stdout
        warning = [line for line in started.stderr.splitlines() if line.startswith("warning:")]
        assert len(warning) == 1 and "Maven" in warning[0] and "memory only" in warning[0]
        status = run("status")
        assert status.returncode == 0 and "embedded broker: running" in status.stdout
    finally:
        stopped = run("stop")
    assert "stopped embedded broker" in stopped.stdout

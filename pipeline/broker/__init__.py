"""Brokers the project starts itself: ``embedded`` (Tansu) and ``kafka`` (Apache Kafka)."""

from __future__ import annotations

from typing import Literal

from pipeline.broker.embedded import EmbeddedBroker
from pipeline.broker.kafka import KafkaBroker
from pipeline.broker.process import BrokerInfo, ManagedBroker, free_port, port_in_use
from pipeline.broker.readiness import BrokerError, metadata_ok, wait_ready
from pipeline.config.settings import Settings

BrokerKind = Literal["embedded", "kafka"]
KINDS: tuple[BrokerKind, ...] = ("embedded", "kafka")


def make_broker(settings: Settings, kind: BrokerKind, port: int | None = None) -> ManagedBroker:
    """The broker of ``kind`` at the address of ``settings.broker_url`` (first server)."""
    host, _, port_text = settings.bootstrap_servers[0].rpartition(":")
    chosen = port if port is not None else int(port_text)
    workdir = settings.data_dir.resolve() / kind
    if kind == "embedded":
        return EmbeddedBroker(host, chosen, workdir, start_timeout=settings.broker_start_timeout)
    if kind == "kafka":
        return KafkaBroker(
            host,
            chosen,
            workdir,
            kafka_home=settings.kafka_home,
            version=settings.kafka_version,
            heap=settings.kafka_heap,
            start_timeout=settings.broker_start_timeout,
        )
    raise BrokerError(f"unknown broker kind {kind!r}; use one of {', '.join(KINDS)}")


__all__ = [
    "KINDS",
    "BrokerError",
    "BrokerInfo",
    "BrokerKind",
    "EmbeddedBroker",
    "KafkaBroker",
    "ManagedBroker",
    "free_port",
    "make_broker",
    "metadata_ok",
    "port_in_use",
    "wait_ready",
]

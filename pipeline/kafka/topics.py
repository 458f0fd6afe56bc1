"""Topic objects of the app; names come from settings (see DESIGN.md for the full list).

Topics that agents read carry raw bytes: the agent decodes them itself, so a record
that does not decode goes to the dead-letter topic with its original bytes instead of
stopping the stream. Topics the app writes carry a pydantic codec.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from pipeline.config.settings import Settings
from pipeline.kafka.codec import ModelCodec
from schemas import (
    AnalyticsEvent,
    DeadLetter,
    DeliveryReceipt,
    GatewayEvent,
    GuardDecision,
    LLMCall,
    LLMResult,
    OutboundMessage,
    Ping,
    Pong,
    Turn,
)


@dataclass(frozen=True)
class Topics:
    ping: Any
    pong: Any
    inbound: Any
    events: Any
    turns: Any
    outbound: Any
    delivery: Any
    llm_calls: Any
    llm_results: Any
    guard_ticks: Any
    dlq: Any
    analytics: Any
    decisions: Any
    #: chat.control: operator controls from the API (raw: the guard decodes them itself).
    control: Any

    def all(self) -> list[Any]:
        return [getattr(self, f.name) for f in fields(self)]


def declare_topics(app: Any, settings: Settings) -> Topics:
    def topic(name: str, model: type | None) -> Any:
        return app.topic(
            name,
            key_serializer="raw",
            value_serializer=ModelCodec(model) if model is not None else "raw",
            partitions=settings.topic_partitions,
        )

    return Topics(
        ping=topic(settings.topic("ping"), Ping),
        pong=topic(settings.topic("pong"), Pong),
        inbound=topic(settings.topic("inbound"), None),
        events=topic(settings.topic("events"), GatewayEvent),
        turns=topic(settings.topic("turns"), Turn),
        outbound=topic(settings.topic("outbound"), OutboundMessage),
        delivery=topic(settings.topic("delivery"), DeliveryReceipt),
        llm_calls=topic(settings.topic("llm_calls"), LLMCall),
        llm_results=topic(settings.topic("llm_results"), LLMResult),
        guard_ticks=topic(settings.topic("guard_ticks"), None),
        dlq=topic(settings.topic("dlq"), DeadLetter),
        analytics=topic(settings.topic("analytics"), AnalyticsEvent),
        decisions=topic(settings.topic("decisions"), GuardDecision),
        control=topic(settings.topic("control"), None),
    )


def raw_source(app: Any, settings: Settings, *names: str) -> Any:
    """One stream over ``names`` as raw bytes, for an agent that decodes for itself."""
    return app.topic(
        *names,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.topic_partitions,
    )

"""Topic objects of the app; names come from settings (see DESIGN.md for the full list)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from pipeline.codec import ModelCodec
from pipeline.settings import Settings
from schemas import Ping, Pong


@dataclass(frozen=True)
class Topics:
    ping: Any
    pong: Any

    def all(self) -> list[Any]:
        return [getattr(self, f.name) for f in fields(self)]


def declare_topics(app: Any, settings: Settings) -> Topics:
    return Topics(
        ping=app.topic(
            settings.topic_ping,
            key_serializer="raw",
            value_serializer=ModelCodec(Ping),
            partitions=settings.topic_partitions,
        ),
        pong=app.topic(
            settings.topic_pong,
            key_serializer="raw",
            value_serializer=ModelCodec(Pong),
            partitions=settings.topic_partitions,
        ),
    )

"""Health-check records: a Ping in, a Pong out with a per-key count kept in a table."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import Field

from schemas.base import Record


def _now() -> datetime:
    return datetime.now(UTC)


class Ping(Record):
    """Asks a worker to answer; ``key`` selects the counter that is incremented."""

    key: str = Field(min_length=1)
    sent_at: datetime = Field(default_factory=_now)


class Pong(Record):
    """The answer: how many pings this key has had, over all workers and restarts."""

    key: str
    count: int = Field(ge=1)
    worker: str
    answered_at: datetime = Field(default_factory=_now)

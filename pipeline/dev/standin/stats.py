"""What the stand-in has received (:class:`StandinStats`, the body of ``GET /admin/stats``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["HISTORY", "StandinStats"]

HISTORY = 1000
"""How many received ``messages`` lists the stats keep: enough for tests, bounded for benchmarks."""


@dataclass(frozen=True)
class StandinStats:
    """A snapshot of what the server has received since it started or was last reset.

    ``by_status`` keys are HTTP status codes as strings, plus ``"hang"`` for each request that
    began a scripted hang (whatever ended it). ``messages`` holds the ``messages`` value of the
    last :data:`HISTORY` chat-completion requests whose body had a ``messages`` list, oldest first,
    including requests that were then failed on purpose; ``max_tokens`` the ``max_tokens`` (or
    ``max_completion_tokens``) of the same requests, ``None`` where it was not set.
    """

    requests: int
    by_status: dict[str, int]
    messages: list[list[Any]]
    max_tokens: list[int | None]
    pending_failures: int
    in_flight: int
    max_in_flight: int
    latency_s: float

    def to_json(self) -> dict[str, Any]:
        """The body of ``GET /admin/stats``."""
        return {
            "requests": self.requests,
            "by_status": dict(self.by_status),
            "messages": self.messages,
            "max_tokens": self.max_tokens,
            "pending_failures": self.pending_failures,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "latency_s": self.latency_s,
        }

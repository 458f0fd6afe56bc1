"""rate_counters: fixed-window counters for the per-chat and per-sender limits."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class Counter(BaseModel):
    window: int
    count: int = 0
    noticed: bool = False


def rate_counters_table(app: Any, partitions: int) -> Any:
    # Counters of a window that has passed are dead weight: expire them with the table's
    # key on the next hit (a new window index replaces the value).
    return app.Table(
        "rate_counters",
        default=None,
        partitions=partitions,
        key_type=str,
        help="Fixed-window counters: chat per minute, sender per day, notices sent.",
    )

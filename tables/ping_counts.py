"""How many pings each key has had: the smallest table that proves changelog recovery."""

from __future__ import annotations

from typing import Any


def ping_counts(app: Any, partitions: int) -> Any:
    """A table key -> int, co-partitioned with the ping topic."""
    return app.Table(
        "ping_counts",
        default=int,
        partitions=partitions,
        key_type=str,
        value_type=int,
        help="Pings answered per key (health check).",
    )

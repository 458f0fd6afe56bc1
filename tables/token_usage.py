"""token_usage: LLM tokens spent per UTC day, summed over partitions by every worker."""

from __future__ import annotations

from typing import Any

from tables.per_partition import global_counts_table, partition_key, summed


def usage_key(day: str, partition: int) -> str:
    return partition_key(day, partition)


def used_on(table: Any, day: str) -> int:
    """Tokens spent on ``day`` by the whole account."""
    return summed(table, day)


def token_usage_table(app: Any, partitions: int) -> Any:
    return global_counts_table(
        app, "token_usage", partitions, "LLM tokens per UTC day and partition (sum the day's keys)."
    )

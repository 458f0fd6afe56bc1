"""token_usage: LLM tokens spent per UTC day, readable by every worker.

A GlobalTable: each worker reads every partition, so the daily budget is enforced for
the account, not per worker. Tables are written in the partition of the record being
processed, so two workers writing one key would overwrite each other; each partition
therefore writes its own key ``<day>|<partition>`` and readers add them up.
"""

from __future__ import annotations

from typing import Any


def usage_key(day: str, partition: int) -> str:
    return f"{day}|{partition}"


def used_on(table: Any, day: str, partitions: int) -> int:
    """Tokens spent on ``day``: the day's key of every partition (no scan of the table)."""
    return sum(int(table.get(usage_key(day, p)) or 0) for p in range(partitions))


def token_usage_table(app: Any, partitions: int) -> Any:
    return app.GlobalTable(
        "token_usage",
        default=int,
        partitions=partitions,
        key_type=str,
        value_type=int,
        help="LLM tokens per UTC day and partition (sum the day's keys).",
    )

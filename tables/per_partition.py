"""Counts every worker reads and each partition writes, in a GlobalTable.

A GlobalTable is replicated to every worker, so a count kept in it holds for the whole
account, not per worker. But a table is written in the partition of the record being
processed, and two workers writing one key would overwrite each other; so each partition
writes its own key ``<name>|<partition>`` and readers add the partitions up (a lookup
per partition, no scan of the table).
"""

from __future__ import annotations

from typing import Any


def partition_key(name: str, partition: int) -> str:
    return f"{name}|{partition}"


def summed(table: Any, name: str) -> int:
    """The count of ``name`` over all of ``table``'s partitions."""
    return sum(int(table.get(partition_key(name, p)) or 0) for p in range(table.partitions))


def global_counts_table(app: Any, name: str, partitions: int, help: str) -> Any:
    return app.GlobalTable(
        name, default=int, partitions=partitions, key_type=str, value_type=int, help=help
    )

"""sender_replies: replies per sender and UTC day, for the per-sender limit.

Counted for the whole account (summed over partitions): a sender active in several groups
writes in the partitions of those groups, and a per-partition count would give them the
limit once per partition. Keys of the days before are dropped when the sender is answered
again; a sender never seen again leaves one small key per partition behind.
"""

from __future__ import annotations

from typing import Any

from tables.per_partition import global_counts_table, partition_key, summed

#: Days back whose keys are dropped when a sender's new day starts.
PRUNE_DAYS = 7


def _name(sender: str, day: int) -> str:
    return f"{sender}|{day}"


def replies_to(table: Any, sender: str, day: int) -> int:
    """Replies to ``sender`` on ``day`` (days since the epoch, UTC), all partitions."""
    return summed(table, _name(sender, day))


def count_reply(table: Any, sender: str, day: int, partition: int) -> None:
    """One more reply to ``sender`` (in stream context, in the record's partition)."""
    key = partition_key(_name(sender, day), partition)
    if key not in table:
        for before in range(day - PRUNE_DAYS, day):
            old = partition_key(_name(sender, before), partition)
            if old in table:
                del table[old]
    table[key] += 1


def sender_replies_table(app: Any, partitions: int) -> Any:
    return global_counts_table(
        app, "sender_replies", partitions, "Replies per sender, UTC day and partition."
    )

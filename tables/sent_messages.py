"""What the gateway's sink has sent: outbound_id -> WhatsApp message id."""

from __future__ import annotations

from typing import Any


def sent_messages_table(app: Any, partitions: int) -> Any:
    """Co-partitioned with ``wa.outbound`` (key: chat id), so a redelivered record finds its entry.

    Written before the offset of its outbound record is committed (Faust flushes changelog
    writes before each commit), so after a crash the sink knows what it has sent.
    """
    return app.Table(
        "sent_messages",
        default=None,
        partitions=partitions,
        key_type=str,
        value_type=str,
        help="outbound_id -> WhatsApp message id of every message the sink sent.",
    )

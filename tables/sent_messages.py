"""What the gateway's sink has sent: outbound_id -> WhatsApp message id, and back.

Two entries per sent message, in one table:

* ``<outbound_id>`` -> the WhatsApp message id: a redelivered outbound record is not sent again;
* ``wa:<WhatsApp message id>`` -> JSON ``{outbound_id, chat_id, account_id, trace_id}``: the
  gateway turns WhatsApp's delivered/read acks into receipts for the right outbound_id, and
  recognises its own messages, also for messages sent before a restart of the gateway.
"""

from __future__ import annotations

import json
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
        help="outbound_id -> WhatsApp message id of every message the sink sent, and back.",
    )


def remember_sent(
    table: Any,
    *,
    outbound_id: str,
    wa_message_id: str,
    chat_id: str,
    account_id: str,
    trace_id: str,
) -> None:
    """Both entries of one sent message (in stream context, as every table write)."""
    table[outbound_id] = wa_message_id
    table[f"wa:{wa_message_id}"] = json.dumps(
        {
            "outbound_id": outbound_id,
            "chat_id": chat_id,
            "account_id": account_id,
            "trace_id": trace_id,
        }
    )


def sent_as(table: Any, wa_message_id: str) -> dict[str, str] | None:
    """What the sink sent as ``wa_message_id``, or None (readable outside stream context)."""
    raw = table.get(f"wa:{wa_message_id}")
    if not raw:
        return None
    try:
        found = json.loads(raw)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None

"""Records to rows: what one batch of archived records upserts into each table (pure, no I/O).

A batch becomes one :class:`RowSet`: per table, one row per primary key (a key twice in a
batch, as after a redelivery, is merged here; one statement may not touch a row twice on
PostgreSQL). Merging follows the same rules as the upserts (``pipeline/store/upserts.py``),
so the result does not depend on the order records arrive in:

- records with an id keep the first version (a re-emitted reply has the same outbound id
  and may carry a newer ``created_at``: the first is what was sent);
- an inbound message replaces a ``ciphertext`` placeholder with the same id (WhatsApp gives
  the decrypted message the placeholder's id);
- delivery receipts keep the furthest status and the earliest time of each status;
- chats keep their earliest and latest message times, and the name of the latest
  inbound message that carried one (``name_at``; a tie keeps the greater name).

Text is made storable everywhere: NUL characters (PostgreSQL refuses them in text) become
U+FFFD, and so do lone surrogates (no UTF-8 encoding).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agents.archive import Archived
from schemas import (
    DeliveryReceipt,
    GatewayEvent,
    GuardDecision,
    InboundMessage,
    LLMCall,
    OutboundMessage,
    Turn,
    is_group,
)

__all__ = ["DELIVERY_RANK", "RowSet", "build_rows", "inbound_row_id", "outbound_row_id"]

Row = dict[str, Any]

#: The order of delivery statuses: a receipt never moves a message back.
DELIVERY_RANK = {"failed": 1, "duplicate_skipped": 2, "sent": 3, "delivered": 4, "read": 5}

#: The column of the earliest receipt of each status (duplicate_skipped has none).
DELIVERY_TIME = {
    "sent": "sent_at",
    "delivered": "delivered_at",
    "read": "read_at",
    "failed": "failed_at",
}

INBOUND_COLUMNS = (
    "id",
    "direction",
    "chat_id",
    "account_id",
    "at",
    "text",
    "trace_id",
    "message_id",
    "sender_id",
    "sender_name",
    "event",
    "target_message_id",
    "type",
    "from_me",
    "sent_by_bot",
    "has_media",
    "media",
    "quoted_message_id",
    "reaction",
    "received_at",
)
OUTBOUND_COLUMNS = (
    "id",
    "direction",
    "chat_id",
    "account_id",
    "at",
    "text",
    "trace_id",
    "outbound_id",
    "turn_id",
    "kind",
    "part",
    "parts",
    "reply_to_message_id",
)
DELIVERY_COLUMNS = (
    "id",
    "direction",
    "chat_id",
    "account_id",
    "outbound_id",
    "delivery_status",
    "delivery_rank",
    "wa_message_id",
    "sent_at",
    "delivered_at",
    "read_at",
    "failed_at",
    "failure_reason",
)


def inbound_row_id(account_id: str, chat_id: str, message_id: str) -> str:
    """The ``messages.id`` of an inbound record: its dedupe key, prefixed."""
    return f"in|{account_id}|{chat_id}|{message_id}"


def outbound_row_id(outbound_id: str) -> str:
    """The ``messages.id`` of an outbound message (and of its delivery receipts)."""
    return f"out|{outbound_id}"


@dataclass
class RowSet:
    """Rows of one batch by table, each dict keyed by the row's primary key."""

    chats: dict[str, Row] = field(default_factory=dict)
    inbound: dict[str, Row] = field(default_factory=dict)
    outbound: dict[str, Row] = field(default_factory=dict)
    deliveries: dict[str, Row] = field(default_factory=dict)
    turns: dict[str, Row] = field(default_factory=dict)
    turn_messages: dict[tuple[str, int], Row] = field(default_factory=dict)
    llm_calls: dict[str, Row] = field(default_factory=dict)
    decisions: dict[str, Row] = field(default_factory=dict)
    events: dict[str, Row] = field(default_factory=dict)

    def tables(self) -> list[dict[Any, Row]]:
        return [
            self.chats,
            self.inbound,
            self.outbound,
            self.deliveries,
            self.turns,
            self.turn_messages,
            self.llm_calls,
            self.decisions,
            self.events,
        ]

    def __len__(self) -> int:
        return sum(len(rows) for rows in self.tables())


def build_rows(batch: Sequence[Archived]) -> RowSet:
    """The rows of ``batch`` (decoded records of any kinds, in topic order per partition)."""
    rows = RowSet()
    for item in batch:
        record = item.record
        if item.kind == "inbound":
            _inbound(rows, record)
        elif item.kind == "outbound":
            _outbound(rows, record)
        elif item.kind == "delivery":
            _delivery(rows, record)
        elif item.kind == "turn":
            _turn(rows, record)
        elif item.kind == "llm_call":
            _llm_call(rows, record)
        elif item.kind == "decision":
            _decision(rows, record)
        elif item.kind == "event":
            _event(rows, record, item.digest)
    for table in rows.tables():
        for row in table.values():
            for column, value in row.items():
                if isinstance(value, str):
                    row[column] = clean(value)
                elif isinstance(value, dict | list):
                    row[column] = _clean_json(value)
    return rows


def _inbound(rows: RowSet, m: InboundMessage) -> None:
    key = inbound_row_id(m.account_id, m.chat_id, m.message_id)
    known = rows.inbound.get(key)
    if known is not None and not (known["type"] == "ciphertext" and m.type != "ciphertext"):
        return
    rows.inbound[key] = {
        "id": key,
        "direction": "in",
        "chat_id": m.chat_id,
        "account_id": m.account_id,
        "at": m.wa_timestamp,
        "text": m.body,
        "trace_id": m.trace_id,
        "message_id": m.message_id,
        "sender_id": m.sender_id,
        "sender_name": m.sender_name,
        "event": m.event,
        "target_message_id": m.target_message_id,
        "type": m.type,
        "from_me": m.from_me,
        "sent_by_bot": m.sent_by_bot,
        "has_media": m.has_media,
        "media": m.media.model_dump(mode="json") if m.media else None,
        "quoted_message_id": m.quoted_message_id,
        "reaction": m.reaction,
        "received_at": m.received_at,
    }
    # Ours (the bot's echo, or the owner typing on the phone) is not a customer's message.
    _chat(rows, m.chat_id, m.account_id, m.is_group, m.wa_timestamp, inbound=not m.from_me)
    _chat_name(rows.chats[m.chat_id], chat_name(m), m.wa_timestamp)


def chat_name(m: InboundMessage) -> str | None:
    """The name a message gives its chat: the chat's own (a group's subject, a contact's
    name), else, in a 1:1 chat, the name of the person who wrote."""
    if m.chat_name:
        return m.chat_name
    return None if m.is_group or m.from_me else m.sender_name


def _chat_name(row: Row, name: str | None, at: datetime) -> None:
    if name is None:
        return
    known = row.get("name_at")
    if known is None or at > known or (at == known and name > (row.get("name") or "")):
        row["name"] = name
        row["name_at"] = at


def _outbound(rows: RowSet, m: OutboundMessage) -> None:
    key = outbound_row_id(m.outbound_id)
    if key in rows.outbound:
        return
    rows.outbound[key] = {
        "id": key,
        "direction": "out",
        "chat_id": m.chat_id,
        "account_id": m.account_id,
        "at": m.created_at,
        "text": m.text,
        "trace_id": m.trace_id,
        "outbound_id": m.outbound_id,
        "turn_id": m.turn_id,
        "kind": m.kind,
        "part": m.part,
        "parts": m.parts,
        "reply_to_message_id": m.reply_to_message_id,
    }
    _chat(rows, m.chat_id, m.account_id, is_group(m.chat_id), m.created_at, inbound=False)


def _delivery(rows: RowSet, r: DeliveryReceipt) -> None:
    key = outbound_row_id(r.outbound_id)
    row = rows.deliveries.get(key)
    if row is None:
        row = rows.deliveries[key] = {
            "id": key,
            "direction": "out",
            "chat_id": r.chat_id,
            "account_id": r.account_id,
            "outbound_id": r.outbound_id,
            "delivery_status": r.status,
            "delivery_rank": DELIVERY_RANK[r.status],
            "wa_message_id": None,
            "sent_at": None,
            "delivered_at": None,
            "read_at": None,
            "failed_at": None,
            "failure_reason": None,
        }
    elif DELIVERY_RANK[r.status] > row["delivery_rank"]:
        row["delivery_status"] = r.status
        row["delivery_rank"] = DELIVERY_RANK[r.status]
    row["wa_message_id"] = row["wa_message_id"] or r.wa_message_id
    row["failure_reason"] = row["failure_reason"] or r.reason
    column = DELIVERY_TIME.get(r.status)
    if column is not None:
        row[column] = earliest(row[column], r.at)


def _turn(rows: RowSet, t: Turn) -> None:
    if t.turn_id in rows.turns:
        return
    rows.turns[t.turn_id] = {
        "turn_id": t.turn_id,
        "chat_id": t.chat_id,
        "account_id": t.account_id,
        "sender_id": t.sender_id,
        "seq": t.seq,
        "text": t.text,
        "is_group": t.is_group,
        "message_count": len(t.message_ids),
        "quoted_message_id": t.quoted_message_id,
        "first_received_at": t.first_received_at,
        "last_received_at": t.last_received_at,
        "created_at": t.created_at,
        "trace_id": t.trace_id,
    }
    for position, message_id in enumerate(t.message_ids):
        rows.turn_messages[(t.turn_id, position)] = {
            "turn_id": t.turn_id,
            "position": position,
            "message_id": message_id,
        }


def _llm_call(rows: RowSet, c: LLMCall) -> None:
    if c.call_id in rows.llm_calls:
        return
    rows.llm_calls[c.call_id] = {
        "call_id": c.call_id,
        "turn_id": c.turn_id,
        "chat_id": c.chat_id,
        "model": c.model,
        "base_url": c.base_url,
        "status": c.status,
        "attempt": c.attempt,
        "prompt_tokens": c.prompt_tokens,
        "completion_tokens": c.completion_tokens,
        "total_tokens": c.total_tokens,
        "latency_ms": c.latency_ms,
        "http_status": c.http_status,
        "error": c.error,
        "decision": c.decision,
        "at": c.at,
        "trace_id": c.trace_id,
    }


def _decision(rows: RowSet, d: GuardDecision) -> None:
    if d.decision_id in rows.decisions:
        return
    rows.decisions[d.decision_id] = {
        "decision_id": d.decision_id,
        "account_id": d.account_id,
        "chat_id": d.chat_id,
        "sender_id": d.sender_id,
        "message_id": d.message_id,
        "event": d.event,
        "target_message_id": d.target_message_id,
        "type": d.type,
        "reason": d.reason,
        "received_at": d.received_at,
        "turn_id": d.turn_id,
        "paused_until": d.paused_until,
        "notice_outbound_id": d.notice_outbound_id,
        "trace_id": d.trace_id,
    }


def _event(rows: RowSet, e: GatewayEvent, digest: str) -> None:
    if digest in rows.events:
        return
    rows.events[digest] = {
        "event_id": digest,
        "gateway": e.gateway,
        "account_id": e.account_id,
        "kind": e.kind,
        "state": e.state,
        "reason": e.reason,
        "ack": e.ack,
        "chat_id": e.chat_id,
        "message_ids": list(e.message_ids),
        "at": e.at,
        "trace_id": e.trace_id,
    }


def _chat(
    rows: RowSet, chat_id: str, account_id: str, group: bool, at: datetime, *, inbound: bool
) -> None:
    row = rows.chats.get(chat_id)
    if row is None:
        row = rows.chats[chat_id] = {
            "chat_id": chat_id,
            "account_id": account_id,
            "is_group": group,
            "first_message_at": at,
            "last_message_at": at,
            "last_inbound_at": None,
            "last_outbound_at": None,
            "name": None,
            "name_at": None,
        }
    else:
        row["first_message_at"] = earliest(row["first_message_at"], at)
        row["last_message_at"] = latest(row["last_message_at"], at)
    column = "last_inbound_at" if inbound else "last_outbound_at"
    row[column] = latest(row[column], at)


def earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    return a if b is None or a <= b else b


def latest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    return a if b is None or a >= b else b


def clean(text: str) -> str:
    """``text`` as every database stores it: NULs and lone surrogates become U+FFFD."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


def _clean_json(value: Any) -> Any:
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {clean(str(k)): _clean_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_json(v) for v in value]
    return value

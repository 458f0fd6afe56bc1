"""The conversation store's tables (SQLAlchemy 2 typed declarative), filled by the archive agent.

Every row is keyed by an id the records themselves carry, so archiving a record again (after
a crash, or a topic read again from offset 0) finds its row instead of adding one:

=================  ==========================================================================
table              primary key (source)
=================  ==========================================================================
``chats``          ``chat_id`` (canonical chat id of any message)
``messages``       ``id``: ``in|<account>|<chat>|<message_id>`` (wa.inbound: the dedupe key)
                   or ``out|<outbound_id>`` (wa.outbound; wa.delivery fills its delivery
                   columns)
``turns``          ``turn_id`` (the app's internal turns topic)
``turn_messages``  ``(turn_id, position)``: the inbound messages of a turn, in order
``llm_calls``      ``call_id`` (llm.calls)
``decisions``      ``decision_id`` (wa.decisions: why a message got no answer, limits included)
``gateway_events`` ``event_id``: 32 hex digits of SHA-256 of the record's bytes (wa.events
                   records carry no id; the same bytes are the same event)
=================  ==========================================================================

The operator API (``pipeline/api``) owns three more tables, written by it alone:

===================  ========================================================================
``accounts``         ``account_id``: an account's profile as operators set it
``chat_profiles``    ``chat_id``: a chat's persona, enabled and pause as operators set them
``manual_messages``  ``outbound_id``: messages sent by hand, their priority, ``send_at`` and
                     ``state`` (``scheduled`` until due, ``sending`` while a request produces
                     it to wa.outbound, then ``produced``; ``failed`` with ``failed_at`` and
                     ``failure_reason`` when it can never be sent); ``idempotency_key``
                     (``<token name>|<key>``) is unique, ``request_sha256`` the fingerprint
                     of the request that made it
===================  ========================================================================

There are no foreign keys on purpose: the topics are read in parallel, so a delivery
receipt can be archived before its outbound message, or a turn before its messages; each
row stands on its own and the ids join them. Times are timezone-aware UTC
(:class:`UtcDateTime`: ``timestamptz`` on PostgreSQL, ISO text on SQLite read back as UTC).
Counts that can exceed 32 bits are ``BIGINT``; ids and texts have no length limit.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, Index, Integer, String, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "AccountRow",
    "Base",
    "ChatProfileRow",
    "ChatRow",
    "DecisionRow",
    "GatewayEventRow",
    "LLMCallRow",
    "ManualMessageRow",
    "MessageRow",
    "TurnMessageRow",
    "TurnRow",
    "UtcDateTime",
]


class UtcDateTime(TypeDecorator[datetime]):
    """An aware datetime in, an aware UTC datetime out, on every database.

    SQLite has no time zones (SQLAlchemy stores fixed-width ISO text, so text order is time
    order once every value is UTC); a naive value is refused rather than guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store keeps aware UTC times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """The store's metadata (what Alembic's migrations must match)."""


class ChatRow(Base):
    """One chat (a person or a group), with the times of its first and latest message.

    ``name`` is the latest name WhatsApp Web gave it (a group's subject, the person's
    contact or push name; None while none was seen), ``name_at`` the time of the message
    that carried it: a later message's name wins, whatever order the archive writes them in.
    """

    __tablename__ = "chats"

    chat_id: Mapped[str] = mapped_column(String, primary_key=True)
    account_id: Mapped[str | None] = mapped_column(String)
    is_group: Mapped[bool] = mapped_column(Boolean)
    first_message_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_message_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
    last_inbound_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_outbound_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    name: Mapped[str | None] = mapped_column(Text)
    name_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class MessageRow(Base):
    """An inbound message (or an edit, revoke, reaction) or an outbound one with its delivery.

    ``at`` is WhatsApp's time for inbound records, the creation time for outbound ones. An
    outbound row first made by a delivery receipt has only its delivery columns until its
    wa.outbound record is archived. ``delivery_status`` is the furthest status seen
    (failed < duplicate_skipped < sent < delivered < read, ``delivery_rank`` 1..5); each
    ``*_at`` is the earliest receipt of that status.
    """

    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_chat_at", "chat_id", "at"),)

    id: Mapped[str] = mapped_column(String, primary_key=True)
    direction: Mapped[str] = mapped_column(String)  # "in" or "out"
    chat_id: Mapped[str] = mapped_column(String)
    account_id: Mapped[str | None] = mapped_column(String)
    at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    text: Mapped[str | None] = mapped_column(Text)
    trace_id: Mapped[str | None] = mapped_column(String)
    # inbound
    message_id: Mapped[str | None] = mapped_column(String)
    sender_id: Mapped[str | None] = mapped_column(String)
    sender_name: Mapped[str | None] = mapped_column(Text)
    event: Mapped[str | None] = mapped_column(String)
    target_message_id: Mapped[str | None] = mapped_column(String)
    type: Mapped[str | None] = mapped_column(String)
    from_me: Mapped[bool | None] = mapped_column(Boolean)
    sent_by_bot: Mapped[bool | None] = mapped_column(Boolean)
    has_media: Mapped[bool | None] = mapped_column(Boolean)
    media: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    quoted_message_id: Mapped[str | None] = mapped_column(String)
    reaction: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # outbound
    outbound_id: Mapped[str | None] = mapped_column(String)
    turn_id: Mapped[str | None] = mapped_column(String, index=True)
    kind: Mapped[str | None] = mapped_column(String)
    part: Mapped[int | None] = mapped_column(BigInteger)
    parts: Mapped[int | None] = mapped_column(BigInteger)
    reply_to_message_id: Mapped[str | None] = mapped_column(String)
    # delivery (wa.delivery)
    delivery_status: Mapped[str | None] = mapped_column(String)
    delivery_rank: Mapped[int | None] = mapped_column(Integer)
    wa_message_id: Mapped[str | None] = mapped_column(String)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    read_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    failed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    failure_reason: Mapped[str | None] = mapped_column(Text)


class TurnRow(Base):
    """A turn: the messages a person sent before the bot answered, coalesced."""

    __tablename__ = "turns"

    turn_id: Mapped[str] = mapped_column(String, primary_key=True)
    chat_id: Mapped[str] = mapped_column(String, index=True)
    account_id: Mapped[str] = mapped_column(String)
    sender_id: Mapped[str] = mapped_column(String)
    seq: Mapped[int] = mapped_column(BigInteger)
    text: Mapped[str] = mapped_column(Text)
    is_group: Mapped[bool] = mapped_column(Boolean)
    message_count: Mapped[int] = mapped_column(Integer)
    quoted_message_id: Mapped[str | None] = mapped_column(String)
    first_received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    trace_id: Mapped[str] = mapped_column(String)


class TurnMessageRow(Base):
    """Which inbound message (its inner ``message_id``) is at ``position`` in a turn."""

    __tablename__ = "turn_messages"

    turn_id: Mapped[str] = mapped_column(String, primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[str] = mapped_column(String, index=True)


class LLMCallRow(Base):
    """One LLM attempt, or a skipped call with the guard's decision (a limit)."""

    __tablename__ = "llm_calls"

    call_id: Mapped[str] = mapped_column(String, primary_key=True)
    turn_id: Mapped[str] = mapped_column(String, index=True)
    chat_id: Mapped[str] = mapped_column(String, index=True)
    model: Mapped[str] = mapped_column(Text)
    base_url: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String)
    attempt: Mapped[int] = mapped_column(BigInteger)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    completion_tokens: Mapped[int] = mapped_column(BigInteger)
    total_tokens: Mapped[int] = mapped_column(BigInteger)
    latency_ms: Mapped[float] = mapped_column(Float)
    http_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    decision: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    trace_id: Mapped[str] = mapped_column(String)


class DecisionRow(Base):
    """Why an inbound record got no answer (the guard's GuardDecision), limits included."""

    __tablename__ = "decisions"

    decision_id: Mapped[str] = mapped_column(String, primary_key=True)
    account_id: Mapped[str] = mapped_column(String)
    chat_id: Mapped[str] = mapped_column(String, index=True)
    sender_id: Mapped[str] = mapped_column(String)
    message_id: Mapped[str] = mapped_column(String)
    event: Mapped[str] = mapped_column(String)
    target_message_id: Mapped[str | None] = mapped_column(String)
    type: Mapped[str] = mapped_column(String)
    reason: Mapped[str] = mapped_column(String, index=True)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    turn_id: Mapped[str | None] = mapped_column(String)
    paused_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    notice_outbound_id: Mapped[str | None] = mapped_column(String)
    trace_id: Mapped[str] = mapped_column(String)


class GatewayEventRow(Base):
    """A gateway session state change or an ack (the QR payload itself is not kept)."""

    __tablename__ = "gateway_events"

    event_id: Mapped[str] = mapped_column(String, primary_key=True)
    gateway: Mapped[str] = mapped_column(String)
    account_id: Mapped[str | None] = mapped_column(String)
    kind: Mapped[str] = mapped_column(String)
    state: Mapped[str | None] = mapped_column(String)
    reason: Mapped[str | None] = mapped_column(Text)
    ack: Mapped[int | None] = mapped_column(Integer)
    chat_id: Mapped[str | None] = mapped_column(String)
    message_ids: Mapped[list[str]] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    trace_id: Mapped[str] = mapped_column(String)


class AccountRow(Base):
    """An account's profile (operator API): system prompt, model, per-chat limit, enabled.

    ``rate_chat_per_minute`` None means the configured WABOT_RATE_CHAT_PER_MINUTE."""

    __tablename__ = "accounts"

    account_id: Mapped[str] = mapped_column(String, primary_key=True)
    system_prompt: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String)
    rate_chat_per_minute: Mapped[int | None] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_by: Mapped[str | None] = mapped_column(String)


class ChatProfileRow(Base):
    """What operators last set for a chat through the API (the guard holds the live state)."""

    __tablename__ = "chat_profiles"

    chat_id: Mapped[str] = mapped_column(String, primary_key=True)
    persona: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean)
    paused_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_by: Mapped[str | None] = mapped_column(String)


class ManualMessageRow(Base):
    """A message an operator sent by hand; ``priority`` 1 (first) to 5 (last).

    ``request_sha256``: 64 hex digits of SHA-256 over the canonical request (None for rows
    stored before it was kept): a retry with the same idempotency key must match it."""

    __tablename__ = "manual_messages"
    __table_args__ = (Index("ix_manual_messages_state_send_at", "state", "send_at"),)

    outbound_id: Mapped[str] = mapped_column(String, primary_key=True)
    idempotency_key: Mapped[str | None] = mapped_column(String, unique=True)
    chat_id: Mapped[str] = mapped_column(String, index=True)
    account_id: Mapped[str] = mapped_column(String)
    text: Mapped[str] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(Integer)
    send_at: Mapped[datetime] = mapped_column(UtcDateTime)
    state: Mapped[str] = mapped_column(String)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    produced_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    operator: Mapped[str | None] = mapped_column(String)
    request_sha256: Mapped[str | None] = mapped_column(String)
    failed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    failure_reason: Mapped[str | None] = mapped_column(Text)

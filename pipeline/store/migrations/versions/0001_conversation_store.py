"""the conversation store: chats, messages, turns, LLM calls, decisions, gateway events

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-30 17:06:13.949072
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "chats",
        sa.Column("chat_id", sa.String(), nullable=False),
        sa.Column("account_id", sa.String(), nullable=True),
        sa.Column("is_group", sa.Boolean(), nullable=False),
        sa.Column("first_message_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_message_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_inbound_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_outbound_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("chat_id"),
    )
    with op.batch_alter_table("chats", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_chats_last_message_at"), ["last_message_at"], unique=False
        )

    op.create_table(
        "decisions",
        sa.Column("decision_id", sa.String(), nullable=False),
        sa.Column("account_id", sa.String(), nullable=False),
        sa.Column("chat_id", sa.String(), nullable=False),
        sa.Column("sender_id", sa.String(), nullable=False),
        sa.Column("message_id", sa.String(), nullable=False),
        sa.Column("event", sa.String(), nullable=False),
        sa.Column("target_message_id", sa.String(), nullable=True),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("turn_id", sa.String(), nullable=True),
        sa.Column("paused_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("notice_outbound_id", sa.String(), nullable=True),
        sa.Column("trace_id", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("decision_id"),
    )
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_decisions_chat_id"), ["chat_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_decisions_reason"), ["reason"], unique=False)

    op.create_table(
        "gateway_events",
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("gateway", sa.String(), nullable=False),
        sa.Column("account_id", sa.String(), nullable=True),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("ack", sa.Integer(), nullable=True),
        sa.Column("chat_id", sa.String(), nullable=True),
        sa.Column("message_ids", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trace_id", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
    )
    with op.batch_alter_table("gateway_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_gateway_events_at"), ["at"], unique=False)

    op.create_table(
        "llm_calls",
        sa.Column("call_id", sa.String(), nullable=False),
        sa.Column("turn_id", sa.String(), nullable=False),
        sa.Column("chat_id", sa.String(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("base_url", sa.Text(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("attempt", sa.BigInteger(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("total_tokens", sa.BigInteger(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("decision", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trace_id", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("call_id"),
    )
    with op.batch_alter_table("llm_calls", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_llm_calls_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_llm_calls_chat_id"), ["chat_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_llm_calls_turn_id"), ["turn_id"], unique=False)

    op.create_table(
        "messages",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("direction", sa.String(), nullable=False),
        sa.Column("chat_id", sa.String(), nullable=False),
        sa.Column("account_id", sa.String(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("trace_id", sa.String(), nullable=True),
        sa.Column("message_id", sa.String(), nullable=True),
        sa.Column("sender_id", sa.String(), nullable=True),
        sa.Column("event", sa.String(), nullable=True),
        sa.Column("target_message_id", sa.String(), nullable=True),
        sa.Column("type", sa.String(), nullable=True),
        sa.Column("from_me", sa.Boolean(), nullable=True),
        sa.Column("sent_by_bot", sa.Boolean(), nullable=True),
        sa.Column("has_media", sa.Boolean(), nullable=True),
        sa.Column("media", sa.JSON(), nullable=True),
        sa.Column("quoted_message_id", sa.String(), nullable=True),
        sa.Column("reaction", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outbound_id", sa.String(), nullable=True),
        sa.Column("turn_id", sa.String(), nullable=True),
        sa.Column("kind", sa.String(), nullable=True),
        sa.Column("part", sa.BigInteger(), nullable=True),
        sa.Column("parts", sa.BigInteger(), nullable=True),
        sa.Column("reply_to_message_id", sa.String(), nullable=True),
        sa.Column("delivery_status", sa.String(), nullable=True),
        sa.Column("delivery_rank", sa.Integer(), nullable=True),
        sa.Column("wa_message_id", sa.String(), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index("ix_messages_chat_at", ["chat_id", "at"], unique=False)
        batch_op.create_index(batch_op.f("ix_messages_turn_id"), ["turn_id"], unique=False)

    op.create_table(
        "turn_messages",
        sa.Column("turn_id", sa.String(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("turn_id", "position"),
    )
    with op.batch_alter_table("turn_messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_turn_messages_message_id"), ["message_id"], unique=False
        )

    op.create_table(
        "turns",
        sa.Column("turn_id", sa.String(), nullable=False),
        sa.Column("chat_id", sa.String(), nullable=False),
        sa.Column("account_id", sa.String(), nullable=False),
        sa.Column("sender_id", sa.String(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("is_group", sa.Boolean(), nullable=False),
        sa.Column("message_count", sa.Integer(), nullable=False),
        sa.Column("quoted_message_id", sa.String(), nullable=True),
        sa.Column("first_received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trace_id", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("turn_id"),
    )
    with op.batch_alter_table("turns", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_turns_chat_id"), ["chat_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("turns", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_turns_chat_id"))

    op.drop_table("turns")
    with op.batch_alter_table("turn_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_turn_messages_message_id"))

    op.drop_table("turn_messages")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_messages_turn_id"))
        batch_op.drop_index("ix_messages_chat_at")

    op.drop_table("messages")
    with op.batch_alter_table("llm_calls", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_llm_calls_turn_id"))
        batch_op.drop_index(batch_op.f("ix_llm_calls_chat_id"))
        batch_op.drop_index(batch_op.f("ix_llm_calls_at"))

    op.drop_table("llm_calls")
    with op.batch_alter_table("gateway_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gateway_events_at"))

    op.drop_table("gateway_events")
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_decisions_reason"))
        batch_op.drop_index(batch_op.f("ix_decisions_chat_id"))

    op.drop_table("decisions")
    with op.batch_alter_table("chats", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_chats_last_message_at"))

    op.drop_table("chats")

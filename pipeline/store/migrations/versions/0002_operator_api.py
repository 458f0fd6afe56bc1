"""operator API: accounts, chat profiles, manual messages

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 17:52:48.987682
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("account_id", sa.String(), nullable=False),
        sa.Column("system_prompt", sa.Text(), nullable=True),
        sa.Column("model", sa.String(), nullable=True),
        sa.Column("rate_chat_per_minute", sa.Integer(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("account_id"),
    )
    op.create_table(
        "chat_profiles",
        sa.Column("chat_id", sa.String(), nullable=False),
        sa.Column("persona", sa.Text(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("paused_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("chat_id"),
    )
    op.create_table(
        "manual_messages",
        sa.Column("outbound_id", sa.String(), nullable=False),
        sa.Column("idempotency_key", sa.String(), nullable=True),
        sa.Column("chat_id", sa.String(), nullable=False),
        sa.Column("account_id", sa.String(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("send_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("produced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("operator", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("outbound_id"),
        sa.UniqueConstraint("idempotency_key"),
    )
    with op.batch_alter_table("manual_messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_manual_messages_chat_id"), ["chat_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_manual_messages_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(
            "ix_manual_messages_state_send_at", ["state", "send_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("manual_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_manual_messages_state_send_at")
        batch_op.drop_index(batch_op.f("ix_manual_messages_created_at"))
        batch_op.drop_index(batch_op.f("ix_manual_messages_chat_id"))

    op.drop_table("manual_messages")
    op.drop_table("chat_profiles")
    op.drop_table("accounts")

"""manual messages: the request's fingerprint, and why one failed

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 12:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("manual_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("request_sha256", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("failure_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("manual_messages", schema=None) as batch_op:
        batch_op.drop_column("failure_reason")
        batch_op.drop_column("failed_at")
        batch_op.drop_column("request_sha256")

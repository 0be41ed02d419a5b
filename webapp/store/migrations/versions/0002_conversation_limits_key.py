"""Conversations carry the key their owner's limits are counted against.

A guest's owner key changes with every reload, so the cap on conversations kept is counted
per limits key (the guest's network address, the logged-in user) instead. Existing rows get
their owner key, which is what they were counted against until now.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("limits_key", sa.String(200), nullable=True))
    op.execute("UPDATE conversations SET limits_key = owner")
    op.create_index(
        "ix_conversations_limits_key_updated", "conversations", ["limits_key", "updated_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_conversations_limits_key_updated", table_name="conversations")
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("limits_key")

"""Model loads: how long each start of the model server took, phase by phase.

The admin page shows a loading model's phases with an ETA taken from the past loads of the
same model on the same GPU type (``webapp.store.loads``); a load in progress is a row with
outcome ``loading`` (phase, ETA, updated_at), read by the chat page.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_loads",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("gpu_type", sa.String(100), nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("ready_at", sa.DateTime, nullable=True),
        sa.Column("phases", sa.JSON, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        # a load in progress (outcome "loading"), updated on each look by the switch job
        sa.Column("current_phase", sa.String(64), nullable=True),
        sa.Column("eta_s", sa.Float, nullable=True),
        sa.Column("updated_at", sa.DateTime, nullable=True),
    )
    op.create_index(
        "ix_model_loads_model_gpu_started", "model_loads", ["model", "gpu_type", "started_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_model_loads_model_gpu_started", table_name="model_loads")
    op.drop_table("model_loads")

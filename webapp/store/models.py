"""Table definitions of the conversation store (SQLAlchemy Core), and of the model loads
the admin page times (``model_loads``, see ``webapp.store.loads``).

These are the *current* shape of the schema; the Alembic scripts in
``migrations/versions`` create and evolve it. Table names are prefixed-free but
distinct from the audit module's ``audit_log``; Alembic's bookkeeping table is
``conversation_store_version`` so that another module may run its own Alembic
history on the same database.

Times are naive UTC ``DateTime`` (same representation on SQLite and PostgreSQL).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

VERSION_TABLE = "conversation_store_version"

metadata = MetaData()

conversations = Table(
    "conversations",
    metadata,
    # Internal key; the public, unguessable id is `public_id`.
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("public_id", String(64), nullable=False, unique=True),
    Column("owner", String(200), nullable=False),
    # What the cap on conversations kept counts against (webapp.access.identity.Owner.limits_key):
    # the owner for logged-in users, the network address for guests (who change owner key
    # with every reload).
    Column("limits_key", String(200), nullable=True),
    # NULL until the first prompt names it (or the user renames it).
    Column("title", String(200), nullable=True),
    Column("chat_settings", JSON, nullable=True),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Index("ix_conversations_owner_updated", "owner", "updated_at"),
    Index("ix_conversations_limits_key_updated", "limits_key", "updated_at"),
)

messages = Table(
    "messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "conversation_pk",
        Integer,
        ForeignKey("conversations.pk", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("role", String(16), nullable=False),
    Column("content", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("meta", JSON, nullable=True),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Index("ix_messages_conversation", "conversation_pk", "id"),
    Index("ix_messages_status", "status"),
)

# One row per message sent, for the per-user sliding-window rate limit (shared by replicas).
rate_events = Table(
    "rate_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("owner", String(200), nullable=False),
    Column("at", DateTime, nullable=False),
    Index("ix_rate_events_owner_at", "owner", "at"),
)

# At most one row per user: "an answer is being generated". Expires so that a killed
# process cannot lock its user out for longer than the lease time.
generation_leases = Table(
    "generation_leases",
    metadata,
    Column("owner", String(200), primary_key=True),
    Column("token", String(64), nullable=False),
    Column("expires_at", DateTime, nullable=False),
)

# One row per finished start of the model server (webapp.store.loads): which model on which GPU
# type, when it started and was ready, seconds per loading phase ({phase: seconds}) and how it
# ended. The ETA of the next load of the same model on the same GPU type is read from them.
model_loads = Table(
    "model_loads",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(200), nullable=False),
    Column("gpu_type", String(100), nullable=False),
    Column("started_at", DateTime, nullable=False),
    Column("ready_at", DateTime, nullable=True),
    Column("phases", JSON, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("current_phase", String(64), nullable=True),
    Column("eta_s", Float, nullable=True),
    Column("updated_at", DateTime, nullable=True),
    Index("ix_model_loads_model_gpu_started", "model", "gpu_type", "started_at"),
)

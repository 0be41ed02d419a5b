"""Alembic environment, run programmatically by ``webapp.store.engine.migrate``.

The caller passes an open connection (already inside a transaction and, on
PostgreSQL, holding the migration advisory lock) in ``config.attributes``.
"""

from alembic import context

from webapp.store.models import VERSION_TABLE, metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=True,  # SQLite needs batch mode for ALTER TABLE
)
with context.begin_transaction():
    context.run_migrations()

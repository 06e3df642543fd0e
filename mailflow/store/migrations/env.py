"""Alembic environment: always run from mailflow.store.db with a live
connection (``mailflow db upgrade`` or the first start on a new database)."""

from __future__ import annotations

from alembic import context

from mailflow.store.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()

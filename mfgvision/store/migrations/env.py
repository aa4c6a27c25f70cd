"""Alembic environment: always run online, on the connection ``Database.migrate()`` hands over."""

from __future__ import annotations

from alembic import context

from mfgvision.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "the mfgvision migrations run through mfgvision.store.database.Database.migrate(), "
        "which passes the connection; they have no URL of their own"
    )
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()

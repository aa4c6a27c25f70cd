"""Edge storage: the inference database (schema, migrations, batched writes, outage spool), the
image files (naming, atomic writes) and the upload outbox."""

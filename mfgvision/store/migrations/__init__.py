"""Alembic migrations of the edge database, applied by ``Database.migrate()`` at start.

Add a revision by copying the latest file in ``versions/``: give it the next number, set
``down_revision`` to the previous one, write ``upgrade()``/``downgrade()`` with ``op`` calls that work on
SQLite and MySQL/MariaDB (use ``op.batch_alter_table`` for column changes; SQLite rebuilds the table),
then update ``mfgvision/store/schema.py`` to match. ``tests/store/test_migrations.py`` checks that the
migrated schema equals ``schema.py`` and that an upgrade keeps existing rows.
"""

"""Fixtures for running the suite locally: a fresh database on the MariaDB server."""

from tests.services import mariadb_url  # noqa: F401  (fixture)

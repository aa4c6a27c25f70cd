"""Fixtures for storage tests: a throwaway MariaDB database per test session, and a
``db`` fixture that runs the same test on SQLite and on MariaDB.

The MariaDB tests skip when no server answers, unless ``MFGVISION_REQUIRE_SERVICES=1`` (CI), in
which case they fail. ``MFGVISION_TEST_MYSQL_URL`` points them at another server (no database part).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from mfgvision.store.database import Database
from mfgvision.store.schema import metadata
from tests.services import mariadb_url  # noqa: F401  (fixture)


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mysql)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A ``Database`` with its schema created, on each backend; tables dropped afterwards."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'nested' / 'edge.db'}"
    else:
        url = request.getfixturevalue("mariadb_url")
    database = Database(url)
    database.create_schema()
    try:
        yield database
    finally:
        drop_schema(database)
        database.close()


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mysql)])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A ``Database`` with no table at all, on each backend; emptied again afterwards."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'empty.db'}"
    else:
        url = request.getfixturevalue("mariadb_url")
    database = Database(url)
    drop_schema(database)
    try:
        yield database
    finally:
        drop_schema(database)
        database.close()


def drop_schema(database: Database) -> None:
    """Drop the product's tables and Alembic's version table, leaving an empty database."""
    metadata.drop_all(database.engine)
    with database.engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS detection_data"))
        conn.execute(text("DROP TABLE IF EXISTS inference_data"))
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))

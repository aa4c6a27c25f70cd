"""Fixtures for storage tests: a throwaway MariaDB database per test session, and a
``db`` fixture that runs the same test on SQLite and on MariaDB.

The MariaDB tests skip when no server answers, unless ``MFGVISION_REQUIRE_SERVICES=1`` (CI), in
which case they fail. ``MFGVISION_TEST_MYSQL_URL`` points them at another server (no database part).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mfgvision.store.database import Database
from tests.services import (  # noqa: F401  (fixtures)
    database_on_each_backend,
    drop_schema,
    mariadb_url,
)


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

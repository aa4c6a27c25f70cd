"""Fixtures for storage tests: a throwaway MariaDB database per test session, and a
``db`` fixture that runs the same test on SQLite and on MariaDB.

The MariaDB tests skip when no server answers, unless ``MFGVISION_REQUIRE_SERVICES=1`` (CI), in
which case they fail. ``MFGVISION_TEST_MYSQL_URL`` points them at another server (no database part).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from mfgvision.store.database import Database
from mfgvision.store.schema import metadata

DEFAULT_SERVER_URL = "mysql+mysqlconnector://root:@127.0.0.1:3306"
REQUIRE_ENV = "MFGVISION_REQUIRE_SERVICES"
SERVER_URL_ENV = "MFGVISION_TEST_MYSQL_URL"


def _unavailable(reason: str) -> None:
    """Skip, or fail when the environment says services are required."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def mariadb_url() -> Iterator[str]:
    """URL of a fresh, uniquely named database on the MariaDB server; dropped afterwards."""
    server = make_url(os.environ.get(SERVER_URL_ENV, DEFAULT_SERVER_URL))
    name = f"mfgvision_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, connect_args={"connection_timeout": 5})
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    except SQLAlchemyError as exc:
        admin.dispose()
        shown = server.render_as_string(hide_password=True)
        detail = str(getattr(exc, "orig", exc)).splitlines()[0]
        _unavailable(f"MariaDB/MySQL server not reachable at {shown}: {detail}")
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


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

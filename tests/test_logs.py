"""Structured logging: one JSON object per line with UTC time, module and extra fields."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mfgvision.logs import configure_logging
from mfgvision.store.database import Database


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Leave the process's logging as the test found it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quiet = {
        name: logging.getLogger(name).level for name in ("alembic", "waitress", "waitress.queue")
    }
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, saved in quiet.items():
        logging.getLogger(name).setLevel(saved)


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines()]


def test_each_event_is_one_json_line_in_utc(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("cis")
    log = logging.getLogger("mfgvision.test")
    log.info("frame stored", extra={"camera_id": "line1-top", "rows": 3})
    try:
        raise ValueError("bad frame")
    except ValueError:
        log.exception("frame failed")
    first, second = lines(capsys)
    assert first["event"] == "frame stored" and first["level"] == "info"
    assert first["module"] == "cis" and first["logger"] == "mfgvision.test"
    assert first["camera_id"] == "line1-top" and first["rows"] == 3
    assert first["ts"].endswith("+00:00")
    assert second["level"] == "error" and "ValueError: bad frame" in second["exc"]


def test_server_queue_notices_are_quiet_but_server_errors_show(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("dashboard")
    logging.getLogger("waitress.queue").warning("Task queue depth is 2")
    logging.getLogger("waitress").info("Serving on http://127.0.0.1:23000")
    logging.getLogger("waitress").error("socket failed")
    assert [line["event"] for line in lines(capsys)] == ["socket failed"]


def test_a_migration_run_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("cis")
    db = Database(f"sqlite:///{tmp_path / 'fresh.db'}")
    db.migrate()
    db.migrate()
    db.close()
    logged = lines(capsys)
    assert [line["logger"] for line in logged if line["logger"].startswith("alembic")] == []
    ready = [line for line in logged if line["event"] == "database schema ready"]
    assert [line["from_revision"] for line in ready] == [None, ready[0]["revision"]]


def test_secrets_are_masked_in_every_field_and_the_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("cis")
    log = logging.getLogger("mfgvision.test")
    log.info(
        "camera opened rtsp://admin:hunter2@10.0.0.5/s",
        extra={"settings": {"camera_features": {"UserPassword": "hunter2"}}, "db_password": "x1"},
    )
    try:
        raise ValueError("cannot connect: AccountKey=hunter2==;EndpointSuffix=x")
    except ValueError:
        log.exception("upload failed", extra={"target": object()})
    text = capsys.readouterr().err
    assert "hunter2" not in text and '"x1"' not in text
    first, second = (json.loads(line) for line in text.splitlines())
    assert first["event"] == "camera opened rtsp://***@10.0.0.5/s"
    assert first["settings"]["camera_features"]["UserPassword"] == "***"
    assert "AccountKey=***" in second["exc"]

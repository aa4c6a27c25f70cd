"""The short chaos run: a few faults of each kind that CI can afford, counted end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.edge.standin_env import require_mosquitto
from tests.services import REPO

pytestmark = pytest.mark.slow
FAULTS = (
    "kill_cis",
    "kill_image_upload",
    "db_outage",
    "blob_outage",
    "edgehub_restart",
    "disk_full",
)


def test_nothing_is_lost_or_duplicated_under_faults(tmp_path: Path) -> None:
    """Every announced inference has its rows, every stored image its blob, exactly once."""
    require_mosquitto()
    result = subprocess.run(
        [
            sys.executable,
            "benchmarks/chaos.py",
            "--minutes",
            "1",
            "--seed",
            "3",
            "--faults",
            ",".join(FAULTS),
            "--gap",
            "4",
            "8",
            "--outage",
            "3",
            "6",
            "--drain",
            "60",
            "--tmpfs-mb",
            "256",
            "--workdir",
            str(tmp_path / "run"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    lost = (tmp_path / "run" / "lost.json").read_text()
    assert set(report["faults"]) | set(report["faults_skipped"]) == set(FAULTS), (report, lost)
    assert report["inferences_announced"] > 0
    assert report["rows"] == report["inferences_announced"], (report, lost)
    assert report["rows_lost"] == report["rows_not_announced"] == 0, (report, lost)
    assert report["detection_rows_lost"] == report["detection_rows_duplicated"] == 0, (report, lost)
    assert report["detection_rows"] == 2 * report["rows"], (report, lost)  # two boxes per frame
    assert report["images_in_rows"] > 0
    assert report["uploads_lost"] == report["uploads_duplicated"] == 0, (report, lost)
    assert report["uploads_corrupt"] == 0, (report, lost)
    assert report["unexpected_exits"] == 0, (report, lost)
    assert set(report["exit_codes"].values()) == {0}, (report, lost)

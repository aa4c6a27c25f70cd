"""``./dev``: the demo installs only the package, ``test`` adds the dev extra once, edits reinstall.

The script runs in a copy of the repository's ``dev`` and ``pyproject.toml`` with a stand-in
``python3`` on PATH that makes a venv of logging stand-ins instead of installing anything.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAND_IN = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "$DEV_LOG"
if [ "$1 $2" = "-m venv" ]; then
  mkdir -p "$3/bin"
  for tool in python ruff mfgvision; do cp "$0" "$3/bin/$tool"; done
fi
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy2(ROOT / "dev", repo / "dev")
    shutil.copy2(ROOT / "pyproject.toml", repo / "pyproject.toml")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python3 = bin_dir / "python3"
    python3.write_text(STAND_IN)
    python3.chmod(0o755)
    return repo


def dev(repo: Path, *args: str) -> list[str]:
    """Run ``./dev args`` and return the installs it made (pip's arguments)."""
    log = repo.parent / "calls.log"
    log.unlink(missing_ok=True)
    env = {
        **os.environ,
        "PATH": f"{repo.parent / 'bin'}:{os.environ['PATH']}",
        "DEV_LOG": str(log),
    }
    done = subprocess.run(
        ["bash", "./dev", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines() if log.exists() else []
    return [c.split("-e ", 1)[1] for c in calls if c.startswith("python -m pip install -q -e")]


def test_demo_installs_the_package_alone_and_test_adds_the_dev_extra(checkout: Path) -> None:
    assert dev(checkout, "demo", "--duration", "1") == ["."]
    assert dev(checkout, "demo") == []
    assert dev(checkout, "test", "-x") == [".[dev]"]
    assert dev(checkout, "test") == []
    assert dev(checkout, "demo") == []


def test_a_fresh_test_run_installs_the_dev_extra_once(checkout: Path) -> None:
    assert dev(checkout, "test") == [".[dev]"]
    assert dev(checkout, "infer", "model", "image.jpg") == []


def test_an_edited_pyproject_reinstalls(checkout: Path) -> None:
    assert dev(checkout, "demo") == ["."]
    later = time.time() + 10
    os.utime(checkout / "pyproject.toml", (later, later))
    assert dev(checkout, "demo") == ["."]


def test_help_installs_nothing(checkout: Path) -> None:
    assert dev(checkout, "help") == []
    assert not (checkout / ".venv").exists()

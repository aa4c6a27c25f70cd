"""The database-write benchmark still runs, and says whether each side's connection was encrypted."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.services import REPO, unavailable


@pytest.mark.parametrize("server", ["tls", "plain"])
def test_benchmark_runs_on_a_private_server(server: str) -> None:
    if shutil.which("mariadb-install-db") is None and shutil.which("mysql_install_db") is None:
        unavailable("MariaDB server binaries (mariadb-install-db) not installed")
    result = subprocess.run(
        [sys.executable, "benchmarks/db_writes.py", "--private-server", server, "--rows", "12"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["rows"] == 12 and report["server_config"] == server
    ciphers = set(report["tls_cipher"].values())
    if server == "tls":
        assert None not in ciphers, ciphers
    else:
        assert ciphers == {None}
    assert report["original"]["rows_per_s"] > 0 and report["mfgvision"]["rows_per_s"] > 0

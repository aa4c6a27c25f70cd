"""A module imports only what it runs: no model runtime, image library or web framework in the
processes that do not use them (each one costs tens of MiB per module on a small device)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PROBE = """
import json, sys
from pathlib import Path
from mfgvision.cli import build_parser, chosen_command
from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.launch import run_module  # what the module command runs
from mfgvision.module_registry import ModuleContext, build_module, module_watch
from mfgvision.runtime import Paths

command = sys.argv[1]
data = Path(sys.argv[2])
build_parser(chosen_command([command]))
paths = Paths(assets=data, models=data / "models", data=data)
hub = InProcessBroker([]).hub(command)
ctx = ModuleContext(hub, paths, f"sqlite:///{data / 'db.sqlite'}")
service = build_module([command], ctx)
module_watch([command], ctx, service)
print(json.dumps(sorted(name for name in sys.modules if "." not in name)))
"""

#: Libraries a module must not load unless it uses them.
HEAVY = {"onnxruntime", "cv2", "flask", "plotly", "jinja2", "asyncua", "pymodbus"}


@pytest.mark.parametrize(
    ("command", "allowed"),
    [
        ("image-upload", set()),
        ("line-bridge", set()),
        ("file-cleanup", set()),
        ("cis", {"onnxruntime", "cv2"}),
    ],
)
def test_a_module_loads_only_the_libraries_it_uses(
    command: str, allowed: set[str], tmp_path: Path
) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, command, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded = set(json.loads(out.stdout.splitlines()[-1]))
    assert not loaded & (HEAVY - allowed), f"{command} loads {sorted(loaded & (HEAVY - allowed))}"

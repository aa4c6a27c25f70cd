"""Memory of each module run on its own: peak resident set size of ``mfgvision <module>`` over a short
run on its default settings (the shipped sample camera and model for the CIS), metrics off.

    python benchmarks/module_memory.py --seconds 8

Prints one JSON object: ``{"modules": {"<command>": {"peak_rss_mib": ...}}, "machine": {...}}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe

MODULES = ("cis", "image-upload", "line-bridge", "file-cleanup", "model-repo")


def _high_water_kib(pid: int) -> int | None:
    """The process's peak resident size so far (``VmHWM``, Linux), None once it has gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


def peak_rss_mib(command: str, seconds: float) -> float:
    """Peak RSS of one module process run for ``seconds`` in a data folder of its own."""
    with tempfile.TemporaryDirectory(prefix="mfgvision-memory-") as data:
        env = {**os.environ, "MFGVISION_DATA": data, "MFGVISION_METRICS_PORT": "0"}
        process = subprocess.Popen(
            [sys.executable, "-m", "mfgvision", command, "--duration", str(seconds)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        peak = 0
        while process.poll() is None:
            peak = max(peak, _high_water_kib(process.pid) or 0)
            time.sleep(0.1)
        if process.returncode != 0:
            raise RuntimeError(f"mfgvision {command} exited with {process.returncode}")
        return round(peak / 1024, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="how long each module runs")
    parser.add_argument("--modules", default=",".join(MODULES), help="commands, in order")
    args = parser.parse_args()
    out = {
        "modules": {
            name: {"peak_rss_mib": peak_rss_mib(name, args.seconds)}
            for name in args.modules.split(",")
        },
        "seconds": args.seconds,
        "machine": describe(),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()

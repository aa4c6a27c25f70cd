"""tools/images.sh and ``./dev images``: the images are tagged as the expanded manifest names them, and
``./dev images`` builds and smoke-checks them with the local engine, or says why it cannot.

A machine without a container engine cannot build images, so the engine here is a stand-in ``docker``
on PATH that logs its arguments and answers ``--version`` like an image would; the pipelines run the
same script with the real one.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from mfgvision.deploy.checks import PLATFORMS, module_image

REPO = Path(__file__).resolve().parents[2]
FOLDERS = sorted(p.parent.name for p in (REPO / "modules").glob("*/module.json"))

ENGINE = """#!/usr/bin/env bash
line="$*"
echo "${line//$'\\n'/ }" >> "$ENGINE_LOG"
case "$1" in
  info) [ "$ENGINE_UP" = 1 ] ;;
  buildx) exit 1 ;;
  run)
    for arg in "$@"; do
      if [ "$arg" = --version ]; then echo "mfgvision ${ENGINE_REPORTS:-$MFGVISION_VERSION}"; fi
    done
    ;;
esac
"""


def _run(
    cmd: list[str], tmp_path: Path, **env: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run ``cmd`` in the repository with the stand-in engine first on PATH; its logged calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("docker", "podman"):
        (bin_dir / name).write_text(ENGINE)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "engine.log"
    log.unlink(missing_ok=True)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MFGVISION_", "CONTAINER_"))}
    done = subprocess.run(
        cmd,
        cwd=REPO,
        env={**clean, "PATH": f"{bin_dir}:{os.environ['PATH']}", "ENGINE_LOG": str(log), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done, (log.read_text().splitlines() if log.exists() else [])


@pytest.mark.parametrize("platform", PLATFORMS)
def test_the_images_are_tagged_as_the_manifest_names_them(tmp_path: Path, platform: str) -> None:
    done, _ = _run(
        ["tools/images.sh", "tags", platform],
        tmp_path,
        MFGVISION_VERSION="3.1.4rc2",
        CONTAINER_REGISTRY_ADDRESS="Plant1.azurecr.io",
    )
    assert done.returncode == 0, done.stderr
    variables = {
        "CONTAINER_REGISTRY_ADDRESS": "Plant1.azurecr.io",
        "MFGVISION_IMAGE_VERSION": "3.1.4rc2",
    }
    expected = [f"{f} {module_image(REPO / 'modules', f, platform, variables)}" for f in FOLDERS]
    assert done.stdout.splitlines() == expected


def test_dev_images_without_an_engine_says_so_and_builds_nothing(tmp_path: Path) -> None:
    done, calls = _run(["./dev", "images"], tmp_path, ENGINE_UP="0")
    assert done.returncode == 0
    assert "skipped, there is no container engine" in done.stderr
    assert "neither a docker daemon nor podman answers" in done.stderr
    assert not [c for c in calls if not c.startswith("info")]


def test_dev_images_builds_every_module_like_the_pipeline_then_runs_each(tmp_path: Path) -> None:
    done, calls = _run(
        ["./dev", "images", "amd64"], tmp_path, ENGINE_UP="1", MFGVISION_VERSION="1.2.3"
    )
    assert done.returncode == 0, done.stderr
    builds = [c for c in calls if c.startswith("build ")]
    assert len(builds) == len(FOLDERS)
    cis = next(c for c in builds if "modules/CIS/Dockerfile.amd64" in c)
    assert cis == (
        "build --platform linux/amd64 -f modules/CIS/Dockerfile.amd64 "
        "--build-arg MFGVISION_VERSION=1.2.3 -t localhost/mfgvision-cis:1.2.3-amd64 ."
    )
    runs = [c for c in calls if c.startswith("run ")]
    assert len(runs) == 2 * len(FOLDERS)
    assert "run --rm --platform linux/amd64 localhost/mfgvision-cis:1.2.3-amd64 --version" in runs
    smoke = next(c for c in runs if "--entrypoint python localhost/mfgvision-twinconfig" in c)
    assert smoke.endswith("twin-config amd64")
    assert "localhost/mfgvision-cis:1.2.3-amd64" in done.stdout


def test_an_image_that_reports_another_version_fails_the_smoke_check(tmp_path: Path) -> None:
    done, _ = _run(
        ["./dev", "images", "amd64"],
        tmp_path,
        ENGINE_UP="1",
        MFGVISION_VERSION="1.2.3",
        ENGINE_REPORTS="0.0.0",
    )
    assert done.returncode != 0
    assert "says 'mfgvision 0.0.0', not 'mfgvision 1.2.3'" in done.stderr


def test_an_unknown_platform_is_refused(tmp_path: Path) -> None:
    done, _ = _run(["tools/images.sh", "build", "arm32"], tmp_path, MFGVISION_VERSION="1.0.0")
    assert done.returncode == 2 and "unknown platform 'arm32'" in done.stderr

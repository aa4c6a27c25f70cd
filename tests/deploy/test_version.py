"""One source of the version, the git tag: a checkout at a tag, an image built with the tag's version as
MFGVISION_VERSION, and a tree with neither each install the package with the version it reports.

The package is built from copies of the repository's files with pip, as ``pip install -e .`` and the
module images (modules/install-mfgvision.sh) build it, then imported where only the built wheel is on
the path.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mfgvision.deploy.release import ReleaseError, tag_version
from tests.services import unavailable

REPO = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO / "modules" / "install-mfgvision.sh"


def _source(tmp_path: Path) -> Path:
    """What the Dockerfiles copy into /src: no .git."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy2(REPO / "pyproject.toml", src)
    shutil.copy2(REPO / "README.md", src)
    shutil.copytree(
        REPO / "mfgvision", src / "mfgvision", ignore=shutil.ignore_patterns("__pycache__")
    )
    return src


def _build(src: Path, out: Path, env: dict[str, str] | None = None) -> Path:
    """The wheel pip builds from ``src`` (build isolation, as in an image build)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SETUPTOOLS_SCM")}
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=240,
    )
    if done.returncode != 0 and "No matching distribution" in done.stderr:
        unavailable("pip cannot fetch the build backend (setuptools, setuptools-scm)")
    assert done.returncode == 0, done.stderr
    (wheel,) = out.glob("mfgvision-*.whl")
    return wheel


def _reported_version(wheel: Path, tmp_path: Path) -> str:
    """``mfgvision.__version__`` with only ``wheel`` installed (no site-packages, no repo)."""
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    return _version_on_path(target)


def _version_on_path(path: Path) -> str:
    """``mfgvision.__version__`` of the package found in ``path``, and nowhere else."""
    done = subprocess.run(
        [sys.executable, "-S", "-c", "import mfgvision; print(mfgvision.__version__)"],
        env={"PYTHONPATH": str(path), "PATH": os.environ["PATH"]},
        cwd=path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_an_image_build_gets_the_version_of_its_build_argument(tmp_path: Path) -> None:
    # what install-mfgvision.sh exports for MFGVISION_VERSION
    assert (
        'export SETUPTOOLS_SCM_PRETEND_VERSION_FOR_MFGVISION="$MFGVISION_VERSION"'
        in INSTALL_SCRIPT.read_text()
    )
    wheel = _build(
        _source(tmp_path),
        tmp_path / "dist",
        {"SETUPTOOLS_SCM_PRETEND_VERSION_FOR_MFGVISION": "1.4.2rc1"},
    )
    assert wheel.name.startswith("mfgvision-1.4.2rc1-")
    assert _reported_version(wheel, tmp_path) == "1.4.2rc1"


def test_a_checkout_at_a_release_tag_is_that_version_and_later_commits_are_after_it(
    tmp_path: Path,
) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    src = _source(tmp_path)
    git = ["git", "-C", str(src), "-c", "user.name=ci", "-c", "user.email=ci@example.com"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "release"], ["tag", "v2.0.1"]):
        subprocess.run([*git, *args], check=True, capture_output=True, timeout=60)
    tagged = _build(src, tmp_path / "tagged")
    assert _reported_version(tagged, tmp_path / "a") == "2.0.1"

    (src / "README.md").write_text("changed after the release\n")
    subprocess.run([*git, "commit", "-qam", "next"], check=True, capture_output=True, timeout=60)
    later = _reported_version(_build(src, tmp_path / "later"), tmp_path / "b")
    assert re.fullmatch(r"2\.0\.2\.dev1\+g[0-9a-f]+", later), later


def test_a_tree_without_git_or_build_argument_says_0_0_0(tmp_path: Path) -> None:
    wheel = _build(_source(tmp_path), tmp_path / "dist")
    assert _reported_version(wheel, tmp_path) == "0.0.0"


def test_a_source_tree_that_was_never_installed_says_0_0_0(tmp_path: Path) -> None:
    assert _version_on_path(_source(tmp_path)) == "0.0.0"


@pytest.mark.parametrize(
    ("ref", "version"),
    [
        ("v1.2.3", "1.2.3"),
        ("refs/tags/v0.1.0", "0.1.0"),
        ("v1.3.0rc1", "1.3.0rc1"),
        ("refs/tags/v10.20.30b2", "10.20.30b2"),
    ],
)
def test_release_tags_give_their_version(ref: str, version: str) -> None:
    assert tag_version(ref) == version


@pytest.mark.parametrize(
    "ref",
    # not normal PEP 440 (the package would report another spelling), not a tag, or no "v"
    ["v1.2", "1.2.3", "v1.2.3-rc.1", "v1.2.3.post1", "v01.2.3x", "refs/heads/main", "v1.1000.0"],
)
def test_other_refs_are_refused(ref: str) -> None:
    with pytest.raises(ReleaseError):
        tag_version(ref)


def test_every_dockerfile_passes_the_version_build_argument_to_the_installation() -> None:
    for dockerfile in sorted((REPO / "modules").glob("*/Dockerfile.*")):
        text = dockerfile.read_text()
        assert 'ARG MFGVISION_VERSION=""' in text, dockerfile
        assert 'MFGVISION_VERSION="$MFGVISION_VERSION" install-mfgvision.sh' in text, dockerfile

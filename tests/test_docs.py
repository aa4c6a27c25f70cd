"""The docs say what the code does: settings tables, camera file types, modules on a device, and
the skipped-test summary the README promises."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mfgvision import settings
from mfgvision.capture.folder import IMAGE_SUFFIXES

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def tables(markdown: str) -> list[list[list[str]]]:
    """Every table of a Markdown text as rows of stripped cells, header first, rule left out."""
    found: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            cells = [c.strip() for c in _CELL_SPLIT.split(line.strip())[1:-1]]
            if not all(set(c) <= set("-: ") for c in cells):
                current.append(cells)
        elif current:
            found.append(current)
            current = []
    return found


def settings_rows() -> list[tuple[str, str]]:
    """(key, meaning) of every settings table in configuration.md."""
    rows = []
    for table in tables((DOCS / "configuration.md").read_text(encoding="utf-8")):
        header = table[0]
        if header[:1] == ["key"] and "meaning" in header and "default" in header:
            rows += [(row[0], row[header.index("meaning")]) for row in table[1:]]
    return rows


def test_the_table_reader_splits_escaped_pipes_right() -> None:
    text = "| key | type | meaning |\n| --- | --- | --- |\n| `a` | `x` \\| `y` |  |\n"
    assert tables(text) == [[["key", "type", "meaning"], ["`a`", "`x` \\| `y`", ""]]]


def test_every_settings_row_says_what_it_means() -> None:
    rows = settings_rows()
    assert len(rows) > 40
    assert [key for key, meaning in rows if not meaning] == []


@pytest.mark.parametrize(
    "model",
    [
        settings.CisSettings,
        settings.ImageUploadSettings,
        settings.FileCleanupSettings,
        settings.ModelRepoSettings,
        settings.LineBridgeSettings,
        settings.MqttSettings,
        settings.OpcUaServerSettings,
    ],
)
def test_every_setting_has_a_description_for_the_twin_tool(model: type) -> None:
    assert [name for name, field in model.model_fields.items() if not field.description] == []


def test_the_folder_camera_lists_the_file_types_it_reads() -> None:
    text = (DOCS / "cameras.md").read_text(encoding="utf-8")
    row = next(r for t in tables(text) for r in t if r[0] == "`folder`")
    listed = re.search(r"\(`([^`]+)`", row[1])
    assert listed is not None
    assert set(listed.group(1).split()) == set(IMAGE_SUFFIXES)


def test_deploy_lists_every_module_of_the_template_with_its_command() -> None:
    template = json.loads((ROOT / "deployment.template.json").read_text(encoding="utf-8"))
    modules = template["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]
    text = (DOCS / "deploy.md").read_text(encoding="utf-8")
    device = next(t for t in tables(text) if t[0][:2] == ["module", "command"])
    commands = {row[0].strip("`"): row[1].strip("`") for row in device[1:]}
    for name, module in modules.items():
        settings_ = module["settings"]
        cmd = settings_.get("createOptions", {}).get("Cmd", [])
        expected = settings_["image"] if name == "MySQL" else " ".join(["mfgvision", *cmd])
        assert commands.get(name) == expected, name


def test_deploy_builds_every_mfgvision_image_of_the_template() -> None:
    template = (ROOT / "deployment.template.json").read_text(encoding="utf-8")
    images = set(re.findall(r"\$\{MODULES\.(\w+)\}", template))
    loop = re.search(r"for m in ([\w ]+); do", (DOCS / "deploy.md").read_text(encoding="utf-8"))
    assert loop is not None
    assert images <= set(loop.group(1).split())


def test_skipped_tests_say_why_as_the_readme_promises(pytestconfig: pytest.Config) -> None:
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert "names every skipped test and why" in readme
    assert "-rs" in pytestconfig.getini("addopts")

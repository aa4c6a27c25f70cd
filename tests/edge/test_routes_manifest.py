import json
from pathlib import Path

import pytest

from mfgvision.edge.routes import RouteError, parse_route
from mfgvision.manifest import ManifestError, expand, load_manifest, template_variables

REPO = Path(__file__).resolve().parents[2]


def test_route_to_module_input():
    r = parse_route(
        "r",
        'FROM /messages/modules/CIS1/outputs/imageUpload INTO BrokeredEndpoint("/modules/Up/inputs/imageUpload")',
    )
    assert (r.source_module, r.source_output, r.sink_module, r.sink_input) == (
        "CIS1",
        "imageUpload",
        "Up",
        "imageUpload",
    )
    assert r.matches("CIS1", "imageUpload")
    assert not r.matches("CIS1", "inference")
    assert not r.matches("CIS2", "imageUpload")


def test_route_wildcards_and_upstream():
    r = parse_route("r", "FROM /messages/modules/CIS1/outputs/* INTO $upstream")
    assert r.to_upstream and r.matches("CIS1", "anything") and not r.matches("X", "anything")
    assert parse_route("r", "FROM /messages/* INTO $upstream").matches("X", "y")


@pytest.mark.parametrize(
    "text",
    [
        "FROM /messages/modules/A/outputs/o",
        "FROM /foo INTO $upstream",
        "FROM /messages/modules/A/outputs/o INTO BrokeredEndpoint(/modules/B/inputs/i)",
        "FROM /messages/* WHERE a = 1 INTO $upstream",
    ],
)
def test_bad_routes_are_refused(text):
    with pytest.raises(RouteError):
        parse_route("bad", text)


def test_expand_strict_and_module_images():
    assert expand("${A}-${MODULES.CIS}", {"A": "x"}) == "x-mfgvision-cis"
    with pytest.raises(ManifestError, match="UNDEFINED"):
        expand("${UNDEFINED}", {})
    assert expand("${UNDEFINED}", {}, strict=False) == "${UNDEFINED}"


def test_repo_template_loads_and_routes_name_real_modules():
    manifest = load_manifest(REPO / "deployment.template.json", variables={})
    assert {"CIS1", "ImageUpload", "Dashboard", "MySQL"} <= set(manifest.modules)
    for route in manifest.routes:
        assert route.source_module in manifest.modules, route
        if not route.to_upstream:
            assert route.sink_module in manifest.modules, route
    assert manifest.modules["CIS1"].command == ["cis"]
    assert manifest.modules["CIS1"].desired["model_name"]


def test_template_variables_listed():
    text = (REPO / "deployment.template.json").read_text()
    names = template_variables(text)
    assert "MYSQL_PASSWORD" in names and "MODULES.CIS" in names
    json.loads(text)

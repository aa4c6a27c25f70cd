"""The package's import rules, read from its own source: which rooms may import which.

Every import counts, also one inside a function or under ``TYPE_CHECKING``: a late import is still
a dependency, and a circle through one is still a circle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mfgvision"

#: Rooms that know nothing of modules, hubs or tools: frames, models, storage.
FOUNDATION = ("capture", "inference", "store")
#: One room per module's behaviour.
MODULE_ROOMS = (
    "cis",
    "image_upload",
    "file_cleanup",
    "file_transfer",
    "model_repo",
    "line_bridge",
    "dashboard",
    "twin_config",
)
#: What runs modules or replaces a device: above every module room.
TOOLING = ("deploy", "local", "launch", "module_registry", "cli")
#: The floors of docs/architecture.md: a room imports only rooms on its own floor or below.
FLOORS = {
    1: (
        "",
        "runtime",
        "secrets",
        "logs",
        "settings",
        "capture",
        "inference",
        "store",
        "datasets",
        "evaluation",
        "synthetic",
        "geometry",
    ),
    2: ("edge", "manifest"),
    3: (*MODULE_ROOMS, "web", "metrics"),
    4: ("module_registry", "launch", "dataset_export"),
    5: ("deploy", "local"),
    6: ("cli", "__main__"),
}
#: The device runtime: what every module runs on a device.
EDGE_FILES = {
    "__init__",
    "hub",
    "iotedge",
    "inprocess",
    "routes",
    "twins",
    "desired",
    "reported",
    "periodic",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST, modules: set[str]) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name in modules}


def import_graph() -> dict[str, set[str]]:
    """Each module of the package and the package modules it imports (migrations excluded)."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts}
    names = set(files)
    return {
        name: _imports(ast.parse(path.read_text(encoding="utf-8")), names) - {name}
        for name, path in files.items()
    }


def room(module: str) -> str:
    """``mfgvision.cis.writer`` -> ``cis``; ``mfgvision.settings`` -> ``settings``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module ``start`` imports, directly or through others."""
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph[name])
    return seen


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def room_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    rooms: dict[str, set[str]] = {room(m): set() for m in graph}
    for source, targets in graph.items():
        rooms[room(source)].update(room(t) for t in targets if room(t) != room(source))
    return rooms


GRAPH = import_graph()


def _offenders(sources: Iterable[str], forbidden: Iterable[str]) -> list[str]:
    banned = set(forbidden)
    return sorted(
        f"{module} -> {target}"
        for module in GRAPH
        if room(module) in set(sources)
        for target in reachable(GRAPH, module)
        if room(target) in banned
    )


def test_the_rules_see_the_package() -> None:
    rooms = {room(m) for m in GRAPH}
    for name in (*FOUNDATION, *MODULE_ROOMS, *TOOLING, "edge", "settings", "runtime"):
        assert name in rooms, f"room {name} not found: update the rules"
    assert "mfgvision.capture.grabber" in reachable(GRAPH, "mfgvision.cis.service")


def test_no_import_circles_between_modules() -> None:
    assert circles(GRAPH) == []


def test_no_import_circles_between_rooms() -> None:
    assert circles(room_graph(GRAPH)) == []


def test_every_room_imports_only_its_own_floor_or_below() -> None:
    floor_of = {name: floor for floor, names in FLOORS.items() for name in names}
    rooms = room_graph(GRAPH)
    unplaced = sorted(set(rooms) - set(floor_of))
    assert not unplaced, f"give these rooms a floor in FLOORS and docs/architecture.md: {unplaced}"
    upward = sorted(
        f"{source} (floor {floor_of[source]}) -> {target} (floor {floor_of[target]})"
        for source, targets in rooms.items()
        for target in targets
        if floor_of[target] > floor_of[source]
    )
    assert upward == []


def test_nothing_imports_the_command_line() -> None:
    importers = sorted(m for m, targets in GRAPH.items() if "mfgvision.cli" in targets)
    assert importers == ["mfgvision.__main__"]


@pytest.mark.parametrize("foundation", FOUNDATION)
def test_capture_inference_and_store_know_no_hub_module_or_tool(foundation: str) -> None:
    assert _offenders([foundation], ["edge", *MODULE_ROOMS, *TOOLING, "manifest", "web"]) == []


def test_the_device_runtime_knows_no_module_room_and_no_tooling() -> None:
    assert _offenders(["edge"], [*MODULE_ROOMS, *TOOLING, "manifest", "web"]) == []


def test_edge_holds_only_the_device_runtime() -> None:
    files = {p.stem for p in (PACKAGE / "edge").glob("*.py")}
    assert files <= EDGE_FILES, f"not device runtime, move to deploy/: {sorted(files - EDGE_FILES)}"


def test_module_rooms_never_reach_the_tooling() -> None:
    assert _offenders(MODULE_ROOMS, TOOLING) == []


def test_the_rules_catch_a_forbidden_import() -> None:
    source = "from mfgvision.cis.service import CisService\nimport mfgvision.cli\n"
    names = {"mfgvision.cis.service", "mfgvision.cli"}
    assert _imports(ast.parse(source), names) == names
    late = "def f():\n    from mfgvision.cli import main\n"
    assert _imports(ast.parse(late), names) == {"mfgvision.cli"}
    looped = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert circles(looped) == [["a", "b", "c"]]

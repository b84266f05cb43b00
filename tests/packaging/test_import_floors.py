"""The package's imports point down the floors docs/ARCHITECTURE.md lists, and no module of gtacli/ imports
itself back through a chain of others (no cycle), counting every import: top-level, lazy (inside a function)
and type-checking only.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "gtacli"

# docs/ARCHITECTURE.md "Floors": a module may import its own floor's other packages only where this table says
# so (SAME_FLOOR), and any lower floor.
FLOORS: Dict[str, int] = {
    "errors": 0,
    "device": 0,
    "layout": 0,
    "io": 0,
    "progress": 0,
    "body": 1,
    "data": 2,
    "model": 3,
    "render": 4,
    "fit": 4,
    "evaluate": 5,
    "train": 6,
    "demo": 6,
    "export": 6,
    "assets": 6,
    "sample": 7,
    "cli": 8,
    "__main__": 9,
    "__init__": 0,
}
SAME_FLOOR = {
    ("device", "errors"),
    ("layout", "errors"),
    ("io", "errors"),
    ("io", "layout"),
    ("layout", "io"),
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, module: str) -> Set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: Set[str] = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("gtacli"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("gtacli"):
                continue
            found.add(target)
            for alias in node.names:  # `from gtacli.demo import boxes` imports the module gtacli.demo.boxes
                found.add(f"{target}.{alias.name}")
    return found


def _graph() -> Dict[str, Set[str]]:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        graph[name] = {t for t in _imports(path, name) if t in paths and t != name}
    return graph


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_package_has_a_floor():
    missing = sorted({_top(m) for m in _graph()} - set(FLOORS))
    assert not missing, f"add these to FLOORS (and docs/ARCHITECTURE.md): {missing}"


def test_imports_point_down_the_floors():
    upward: List[str] = []
    for module, targets in _graph().items():
        src = _top(module)
        for target in targets:
            dst = _top(target)
            if src == dst or dst == "__init__" or (src, dst) in SAME_FLOOR:
                continue
            if FLOORS[dst] >= FLOORS[src]:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that point up (or sideways) the floors:\n" + "\n".join(sorted(upward))


def test_no_import_cycle():
    graph = _graph()
    # package __init__ modules are imported by their children implicitly; an import of a package counts as an
    # import of its __init__, which is where a cycle through a package would close
    colour: Dict[str, int] = {}
    stack: List[str] = []
    cycles: List[str] = []

    def visit(node: str) -> None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in colour:
                visit(nxt)
        stack.pop()
        colour[node] = 2

    for node in sorted(graph):
        if node not in colour:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from gtacli.fit import losses\n", {"gtacli.fit", "gtacli.fit.losses"}),
        (
            "def f():\n    from gtacli.body.camera import IMG_RES\n",
            {"gtacli.body.camera", "gtacli.body.camera.IMG_RES"},
        ),
    ],
)
def test_the_scanner_sees_lazy_and_submodule_imports(tmp_path, source, expected):
    path = tmp_path / "m.py"
    path.write_text(source)
    assert _imports(path, "gtacli.x.m") == expected

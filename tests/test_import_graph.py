"""Stages depend only downward (issue 19): no module imports from a higher floor.

Parses every module under edgeface/ with `ast` (top-level and function-level imports, so a lazy
import inside a function counts too) and maps each `edgeface.<stage>` to its floor. A module may
import from its own floor or a lower one.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "edgeface"

# Lowest first. Every top-level module or subpackage of edgeface must be listed here.
FLOORS = [
    {"errors", "spec", "utils"},
    {"align"},
    {"runtime", "nets", "losses", "features"},
    {"data"},
    {"teachers", "optimize", "importers"},
    {"convert"},
    {"bench"},
    {"train"},
    {"cli", "demo", "__main__"},
]
FLOOR_OF = {stage: i for i, stages in enumerate(FLOORS) for stage in stages}


def stage_of(module: str) -> str | None:
    """'edgeface.convert.tflite' -> 'convert'; None for the package root or a foreign module."""
    parts = module.split(".")
    if parts[0] != "edgeface" or len(parts) < 2:
        return None
    return parts[1]


def imported_modules(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module name) of every edgeface import anywhere in `tree`."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "edgeface":  # `from edgeface import convert`: the names are the stages
                found += [(node.lineno, f"edgeface.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, target))
    return [(line, name) for line, name in found if name.startswith("edgeface.")]


def upward_edges(source: str, module: str, where: str, is_package: bool = False) -> list[str]:
    """'file:line: stage(floor) -> module (floor)' for every import of a higher floor."""
    own = stage_of(module)
    if own is None:  # the package root only pins environment variables
        return []
    if own not in FLOOR_OF:
        return [f"{where}: stage {own!r} has no floor in tests/test_import_graph.py FLOORS"]
    edges = []
    for line, target in imported_modules(ast.parse(source, where), module, is_package):
        stage = stage_of(target)
        if stage not in FLOOR_OF:
            edges.append(f"{where}:{line}: {target} is in no floor")
        elif FLOOR_OF[stage] > FLOOR_OF[own]:
            edges.append(f"{where}:{line}: {own}({FLOOR_OF[own]}) -> {target} ({FLOOR_OF[stage]})")
    return edges


def package_edges() -> list[str]:
    edges = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent)
        parts = list(rel.with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        edges += upward_edges(path.read_text(encoding="utf-8"), ".".join(parts), str(rel), is_package)
    return edges


def test_stages_depend_only_downward():
    edges = package_edges()
    assert not edges, "upward imports:\n" + "\n".join(edges)


def test_every_stage_has_a_floor():
    stages = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
              if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()}
    assert stages <= set(FLOOR_OF), f"stages with no floor: {sorted(stages - set(FLOOR_OF))}"


def test_checker_detects_an_upward_import():
    source = (
        "import edgeface.utils.io\n"
        "from edgeface.spec import TASKS\n"
        "def f():\n"
        "    from edgeface.train.face import train\n"  # lazy, inside a function
        "    from ..bench import run\n"  # relative
        "    from edgeface import cli\n"
    )
    edges = upward_edges(source, "edgeface.convert.tflite", "edgeface/convert/tflite.py")
    assert edges == [
        "edgeface/convert/tflite.py:4: convert(5) -> edgeface.train.face (7)",
        "edgeface/convert/tflite.py:5: convert(5) -> edgeface.bench (6)",
        "edgeface/convert/tflite.py:6: convert(5) -> edgeface.cli (8)",
    ]


def test_checker_allows_same_and_lower_floors():
    source = "from edgeface.teachers import base\nfrom . import calibration\nimport edgeface.errors\n"
    assert upward_edges(source, "edgeface.optimize.compress", "x.py") == []
    assert upward_edges("from .. import spec\n", "edgeface.data", "x.py", is_package=True) == []

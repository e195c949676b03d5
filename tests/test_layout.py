"""The floors of docs/design.md, enforced: every ``okspose`` import goes to a module on its own floor or
below, and no two modules import each other in a cycle.

The floors are read from docs/design.md's table, so the document and the code cannot drift apart.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "okspose"
DESIGN = ROOT / "docs" / "design.md"


def read_floors(text: str) -> dict[str, int]:
    """``module pattern -> floor`` from the design table's rows ``| N | `pattern` ... |``; a pattern is a
    dotted module name under okspose, or a package ending in ``.*`` for all of its modules."""
    floors = {}
    for floor, cell in re.findall(r"^\|\s*(\d+)\s*\|([^|]*)\|", text, flags=re.M):
        for pattern in re.findall(r"`([\w.*]+)`", cell):
            floors[pattern] = int(floor)
    return floors


def floor_of(module: str, floors: dict[str, int]) -> int:
    """The floor of ``module`` (dotted, without the ``okspose.`` prefix): its own row, else its package's."""
    if module in floors:
        return floors[module]
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        package = ".".join(parts[:i]) + ".*"
        if package in floors:
            return floors[package]
    raise AssertionError(f"okspose.{module} has no floor in docs/design.md")


def module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def okspose_imports(path: Path) -> set[str]:
    """The okspose modules ``path`` imports (at the top or inside functions), without the prefix."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "okspose":
            base = node.module.removeprefix("okspose").lstrip(".")
            for alias in node.names:  # `from okspose.inference import nms` imports a module
                sub = f"{base}.{alias.name}" if base else alias.name
                found.add(sub if _is_module(sub) else base)
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("okspose.") for a in node.names if a.name.startswith("okspose.")}
    return {m for m in found if m}


def _is_module(dotted: str) -> bool:
    base = PACKAGE.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def import_graph(package: Path) -> dict[str, set[str]]:
    """``module -> the okspose modules it imports`` for every module of the package but its root."""
    graph = {module_name(p, package): okspose_imports(p) for p in sorted(package.rglob("*.py"))}
    graph.pop("", None)
    return graph


def upward_imports(graph: dict[str, set[str]], floors: dict[str, int]) -> list[str]:
    return [f"okspose.{m} (floor {floor_of(m, floors)}) imports okspose.{d} (floor {floor_of(d, floors)})"
            for m, deps in graph.items() for d in sorted(deps) if d and floor_of(d, floors) > floor_of(m, floors)]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first = last), or None; depth-first search."""
    state: dict[str, int] = {}  # 1 = on the path, 2 = done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                return path[path.index(d):] + [d]
            if d in graph and d not in state and (cycle := visit(d)):
                return cycle
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (cycle := visit(m)):
            return cycle
    return None


def test_every_module_has_a_floor_and_imports_run_down():
    floors = read_floors(DESIGN.read_text())
    graph = import_graph(PACKAGE)
    assert len(graph) > 40 and len(floors) > 10
    assert upward_imports(graph, floors) == []


def test_no_import_cycle():
    assert find_cycle(import_graph(PACKAGE)) is None


def test_an_upward_import_or_a_cycle_is_caught(tmp_path):
    """The checks fail on a tree with an upward import (data -> inference) and a cycle added."""
    floors = read_floors(DESIGN.read_text())
    graph = import_graph(PACKAGE)
    graph["data.records"] = graph["data.records"] | {"inference.poser"}
    assert upward_imports(graph, floors) == [
        f"okspose.data.records (floor {floors['data.*']}) imports okspose.inference.poser "
        f"(floor {floors['inference.*']})"]
    graph["keypoints"] = graph["keypoints"] | {"config"}  # config imports keypoints: a cycle on one floor
    assert find_cycle(graph) in (["config", "keypoints", "config"], ["keypoints", "config", "keypoints"])


@pytest.mark.parametrize("command", [["--help"], ["test", "--help"], ["eval-results", "--help"], ["train"],
                                     ["predict", "--checkpoint"]])
def test_help_and_argument_errors_import_no_torch(command):
    code = ("import sys\nfrom okspose.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    run = subprocess.run([sys.executable, "-c", code, *command], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("command", ["eval_results", "select_data"])
def test_light_commands_import_neither_torch_nor_torchvision(command):
    code = (f"import sys\nimport okspose.commands.{command}\n"
            "heavy = {'torch', 'torchvision'} & set(sys.modules)\nassert not heavy, sorted(heavy)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr

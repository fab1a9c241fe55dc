"""The package layering: arrows point down, never up and never in a circle.

Every ``import`` in ``src/draftsmith`` (module level or inside a function) is read with
``ast``; a module may import its own package's modules and packages of a lower layer.
``model`` and ``data`` share a layer and must not import each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS = {
    "draftsmith._version": 0,
    "draftsmith.atomic": 0,
    "draftsmith.vocab_mapping": 0,
    "draftsmith.model": 1,
    "draftsmith.data": 1,
    "draftsmith.target": 2,
    "draftsmith.engines": 2,
    "draftsmith.checkpoint": 3,
    "draftsmith.evaluate": 4,
    "draftsmith.inspect": 4,
    "draftsmith.train": 5,
    "draftsmith.regenerate": 6,
    "draftsmith.demo": 6,
    "draftsmith.commands": 7,
    "draftsmith.cli": 8,
    "draftsmith.__main__": 9,
    "draftsmith": 10,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in (SRC / "draftsmith").rglob("*.py")}


def unit(module: str) -> str:
    """The layered unit a module belongs to (its top-level package or module under draftsmith)."""
    parts = module.split(".")
    return ".".join(parts[:2])


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                     for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            raise AssertionError(f"{path}: relative import; draftsmith uses absolute imports")
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name.startswith("draftsmith"):
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def test_every_unit_has_a_layer():
    assert {unit(m) for m in all_modules()} <= set(LAYERS)


def test_imports_point_down():
    upward = []
    for module, targets in graph().items():
        for target in targets:
            a, b = unit(module), unit(target)
            if target == "draftsmith" and module != "draftsmith":
                upward.append(f"{module} -> draftsmith (the package facade)")
            elif a != b and LAYERS[b] >= LAYERS[a]:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that do not point down:\n" + "\n".join(sorted(upward))


def test_no_import_cycles():
    edges = graph()
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if nxt == "draftsmith":
                continue
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])


def test_the_checker_sees_an_upward_arrow(tmp_path):
    """The walker must see imports inside functions, where cycles used to hide."""
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from draftsmith.checkpoint.layout import save_draft\n")
    assert imports_of(source, all_modules()) == {"draftsmith.checkpoint.layout"}

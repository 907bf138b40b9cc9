"""The package's layers, read from its imports (imports inside functions included): each layer imports only
from itself and the layers below it, no two files import each other even indirectly, nothing but a command
imports a command, ``metrics`` never imports torch and ``data``/``models``/``inference``/``evaluation`` never
import Lightning."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "captioning"
# Bottom to top; packages of equal rank do not import each other.
RANK = {"core": 0, "metrics": 1, "data": 2, "models": 3, "inference": 4, "evaluation": 4, "lab": 5, "training": 5,
        "benchmark": 6, "cli": 7}
FORBIDDEN = {  # layer -> top-level modules it must never import
    "metrics": {"torch", "numpy", "pytorch_lightning", "lightning"},
    "data": {"pytorch_lightning", "lightning"},
    "models": {"pytorch_lightning", "lightning"},
    "inference": {"pytorch_lightning", "lightning"},
    "evaluation": {"torch", "pytorch_lightning", "lightning"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> set[str]:
    """Every module ``path`` imports, at any depth of its code: ``captioning`` modules resolved to files (``from
    captioning.x import y`` counts ``captioning.x.y`` when that is a module), others by their top-level name."""
    found: set[str] = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names)
    return found


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "captioning" else None


def graph() -> dict[str, set[str]]:
    known = set(modules())
    return {name: {m for m in imports(path, known) if m in known and m != name}
            for name, path in modules().items()}


def test_every_module_belongs_to_a_layer() -> None:
    loose = [m for m in modules() if m != "captioning" and layer(m) not in RANK]
    assert not loose, f"modules outside the layers {sorted(RANK)}: {loose}"


def test_layers_import_only_downwards() -> None:
    wrong = []
    for name, deps in graph().items():
        here = layer(name)
        for dep in deps:
            there = layer(dep)
            if here is None or there is None or there == here:
                continue
            if RANK[there] >= RANK[here]:
                wrong.append(f"{name} -> {dep}")
    assert not wrong, "upward or sideways imports:\n" + "\n".join(sorted(wrong))


def test_nothing_but_a_command_imports_a_command() -> None:
    wrong = [f"{name} -> {dep}" for name, deps in graph().items() for dep in deps
             if layer(dep) == "cli" and layer(name) != "cli"]
    assert not wrong, wrong


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as a path a -> ... -> a), or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles_between_files() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, " -> ".join(cycle)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_framework_free_layers(package: str) -> None:
    known = set(modules())
    wrong = {name: sorted(m.split(".")[0] for m in imports(path, known) if m.split(".")[0] in FORBIDDEN[package])
             for name, path in modules().items() if layer(name) == package}
    assert not {k: v for k, v in wrong.items() if v}, wrong


def test_the_checks_catch_what_they_are_for() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    tree = "def f():\n    from captioning.cli import fit\n    import torch.nn\n"
    probe = PACKAGE / "metrics" / "_probe.py"
    probe.write_text(tree)
    try:
        found = imports(probe, set(modules()))
    finally:
        probe.unlink()
    assert found == {"captioning.cli.fit", "torch.nn"}  # inside a function, a submodule named by `from`

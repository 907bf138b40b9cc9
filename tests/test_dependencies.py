"""Every third-party module the package imports is a declared runtime dependency (issue: a main job that
crashed after training because ``pycocoevalcap`` was only in the test extra)."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

from conftest import REPO

try:
    import tomllib
except ImportError:  # Python 3.10: tomllib is 3.11+; the test needs a TOML reader only
    import pytest

    tomllib = pytest.importorskip("tomli")


def _guarded(handlers: list[ast.ExceptHandler]) -> bool:
    """Whether a ``try`` statement's handlers name ImportError (or ModuleNotFoundError)."""
    for handler in handlers:
        names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        if any(isinstance(n, ast.Name) and n.id in {"ImportError", "ModuleNotFoundError"} for n in names):
            return True
    return False


def imported_modules(tree: ast.AST) -> dict[str, bool]:
    """Top-level module name -> whether every import of it sits in a ``try`` that catches ImportError;
    imports inside functions count, relative imports are skipped."""
    found: dict[str, bool] = {}

    def visit(node: ast.AST, guarded: bool) -> None:
        if isinstance(node, ast.Try):
            for child in node.body:
                visit(child, guarded or _guarded(node.handlers))
            for child in [*node.handlers, *node.orelse, *node.finalbody]:
                visit(child, guarded)
            return
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            found[top] = found.get(top, True) and guarded
        for child in ast.iter_child_nodes(node):
            visit(child, guarded)

    visit(tree, False)
    return found


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_dependencies() -> set[str]:
    """Normalized distribution names of ``[project].dependencies``."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {_normalize(re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0]) for req in project["dependencies"]}


def unguarded_third_party_imports(package: Path) -> dict[str, list[str]]:
    """Top-level module -> files importing it outside an ImportError guard, for modules not in the standard
    library and not the package itself."""
    out: dict[str, list[str]] = {}
    for path in sorted(package.rglob("*.py")):
        for module, guarded in imported_modules(ast.parse(path.read_text(), str(path))).items():
            if not guarded and module not in sys.stdlib_module_names and module != package.name:
                out.setdefault(module, []).append(str(path.relative_to(package.parent)))
    return out


def test_every_unguarded_import_is_a_declared_runtime_dependency() -> None:
    declared = declared_dependencies()
    distributions = packages_distributions()
    undeclared = {}
    for module, files in unguarded_third_party_imports(REPO / "captioning").items():
        dists = {_normalize(d) for d in distributions.get(module, [])}
        if not dists:
            undeclared[module] = f"no installed distribution provides it (imported by {', '.join(files)})"
        elif not dists & declared:
            undeclared[module] = f"provided by {sorted(dists)}, not in [project].dependencies ({', '.join(files)})"
    assert not undeclared, undeclared


def test_the_walker_sees_function_level_imports_and_guards() -> None:
    tree = ast.parse(
        "import os\n"
        "def f():\n    from pycocoevalcap.bleu import Bleu\n"
        "try:\n    import wandb\nexcept ImportError:\n    wandb = None\n"
        "try:\n    import yaml\nexcept ValueError:\n    pass\n")
    assert imported_modules(tree) == {"os": False, "pycocoevalcap": False, "wandb": True, "yaml": False}
    assert "pycocoevalcap" in unguarded_third_party_imports(REPO / "captioning")  # the METEOR/toolkit adapter

"""Imports run one way: serving → api, models, index, core; api → core and model types."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = {"core", "models", "index", "api", "serving"}
ALLOWED = {
    "core": set(),
    "models": {"core"},
    "index": {"core"},
    "api": {"core", "models", "index"},
    "serving": {"core", "models", "index", "api"},
}
# api may use only the Protocols and plain data types of models/index, not their backends.
API_MAY_IMPORT = (
    "models.llm.base",
    "models.pii.base",
    "models.pii.placeholders",
    "models.pii.places",  # plain matching over spans (no model), like placeholders
    "models.guard_types",
    "index.base",
)


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("package", sorted(OURS))
def test_imports_run_one_way(package: str) -> None:
    violations = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for module in imports_of(path):
            top = module.split(".")[0]
            if top in OURS and top != package and top not in ALLOWED[package]:
                violations.append(f"{path.relative_to(ROOT)} imports {module}")
            if (
                package == "api"
                and top in {"models", "index"}
                and not module.startswith(API_MAY_IMPORT)
            ):
                violations.append(f"{path.relative_to(ROOT)} imports backend {module}")
    assert violations == []

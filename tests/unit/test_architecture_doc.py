"""docs/architecture.md is the map of the tree: what it names exists, and it names every module.

A newcomer finds a request stage's module from the package table; a module added, moved or
renamed without the table following fails here, as does a path the page names that is gone.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
OURS = ("core/", "models/", "index/", "api/", "serving/")
# Packages whose row lists each module (index/ is described in index/README.md; routes,
# security and the portal by area).
LISTED = ("core", "models", "api", "api/chat", "api/stores", "serving", "serving/ops")


def _rows() -> dict[str, str]:
    """Package table rows by each package named in their first cell."""
    rows: dict[str, str] = {}
    section = DOC.split("## Packages and what they may import", 1)[1].split("\n## ", 1)[0]
    for line in section.splitlines():
        cells = line.split("|")
        if len(cells) < 4:
            continue
        for package in re.findall(r"`([a-z_/]+)/`", cells[1]):
            rows[package] = cells[2]
    return rows


def test_every_path_the_page_names_exists() -> None:
    named = {
        path for path in re.findall(r"`([a-z_]+/[a-z_/]*(?:\.py)?)`", DOC) if path.startswith(OURS)
    }
    named |= {
        path for path in re.findall(r"\(([a-z_]+/[a-z_/]+\.py)", DOC) if path.startswith(OURS)
    }
    assert len(named) > 40
    missing = sorted(path for path in named if not (ROOT / path).exists())
    assert missing == []


@pytest.mark.parametrize("package", LISTED)
def test_the_package_table_lists_every_module(package: str) -> None:
    row = _rows()[package]
    folder = ROOT / package
    held = sorted(
        [path.name for path in folder.glob("*.py") if path.name != "__init__.py"]
        + [f"{path.name}/" for path in folder.iterdir() if (path / "__init__.py").is_file()]
    )
    if package == "api":
        # Sub-packages have rows of their own.
        held = [name for name in held if not name.endswith("/")]
    unlisted = [name for name in held if name not in row]
    assert unlisted == [], f"{package}/ holds modules its row does not name"

"""Prompts kept in the repository: ``prompts/<name>/prompt.yaml`` with part files beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from core.prompts.errors import PromptInvalid
from core.prompts.template import PromptTemplate

__all__ = ["MANIFEST", "load_repo_prompt", "repo_prompt_names"]

MANIFEST = "prompt.yaml"


def load_repo_prompt(directory: Path) -> PromptTemplate:
    """Read and validate ``directory/prompt.yaml`` and the part files it names.

    The manifest is ``{"variables": {...}, "parts": {"system": "system.j2", ...}}``; part
    files are read as UTF-8 and must lie in ``directory``.
    """
    manifest = directory / MANIFEST
    try:
        raw: Any = yaml.safe_load(manifest.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PromptInvalid(f"{manifest}: cannot be read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise PromptInvalid(f"{manifest}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise PromptInvalid(f"{manifest}: must be a mapping with 'parts' and 'variables'")
    problems = [
        f"{manifest}: unknown key {key!r} (a prompt has 'parts' and 'variables')"
        for key in raw
        if key not in {"parts", "variables"}
    ]
    files = raw.get("parts")
    if not isinstance(files, dict):
        raise PromptInvalid([*problems, f"{manifest}: 'parts' must map part names to files"])
    parts: dict[str, Any] = {}
    root = directory.resolve()
    for part, filename in files.items():
        if not isinstance(filename, str):
            problems.append(f"{manifest}: part {part!r} must name a file beside prompt.yaml")
            continue
        path = (directory / filename).resolve()
        if not path.is_relative_to(root):
            problems.append(f"{manifest}: part {part!r} file {filename!r} is outside {directory}")
        elif not path.is_file():
            problems.append(f"{manifest}: part {part!r} file {filename!r} does not exist")
        else:
            parts[part] = path.read_text(encoding="utf-8")
    if problems:
        raise PromptInvalid(problems)
    try:
        return PromptTemplate.from_document({"parts": parts, "variables": raw.get("variables")})
    except PromptInvalid as exc:
        raise PromptInvalid([f"{manifest}: {_with_file(p, files)}" for p in exc.problems]) from None


def _with_file(problem: str, files: dict[Any, Any]) -> str:
    # Lines in a problem count within the part's file; say which file that is.
    for part, filename in files.items():
        named = f"part '{part}'"
        if problem.startswith(named):
            return problem.replace(named, f"{named} ({filename})", 1)
    return problem


def repo_prompt_names(prompts_dir: Path) -> list[str]:
    """The prompts kept in ``prompts_dir`` (folders with a ``prompt.yaml``), sorted."""
    return sorted(p.parent.name for p in prompts_dir.glob(f"*/{MANIFEST}"))

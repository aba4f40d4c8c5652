"""Shared pieces of the benchmarks' reports: the machine, the commit, the README, JSON."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "README_END",
    "README_START",
    "git_commit",
    "machine_info",
    "update_readme",
    "write_json",
]

README_START = "<!-- serving-bench:start -->"
README_END = "<!-- serving-bench:end -->"
_README_INTRO = """# Benchmarks

Measurements of the Enclave stack, run with `make bench` or `python -m benchmarks.<name>`.
Absolute times on shared machines vary from run to run: compare the ratios measured within
one run. Raw results (JSON) and plots are in `results/`.

"""


def machine_info() -> dict[str, Any]:
    """CPU model, CPU counts and RAM of this machine."""
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
            break
    return {
        "cpu_model": cpu,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "ram_gib": round(mem_kib / 1024**2, 1),
    }


def git_commit(repo: Path) -> str:
    """The checked-out commit, marked when the working tree has uncommitted changes."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "HEAD") or "unknown"
    return f"{commit} (with uncommitted changes)" if git("status", "--porcelain") else commit


def update_readme(
    path: Path, section: str, markers: tuple[str, str] = (README_START, README_END)
) -> None:
    """Replace the marked section of ``path`` (append it, or create the file, if missing)."""
    text = path.read_text(encoding="utf-8") if path.is_file() else _README_INTRO
    start, end = text.find(markers[0]), text.find(markers[1])
    if start != -1 and end > start:
        text = text[:start] + section + text[end + len(markers[1]) :].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")


def _json_default(value: object) -> object:
    # numpy scalars in vLLM's result dict
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    if isinstance(value, Path):
        return str(value)
    msg = f"not JSON serialisable: {type(value).__name__}"
    raise TypeError(msg)


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    """Write the raw results, pretty-printed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2, sort_keys=True, default=_json_default)
    path.write_text(text + "\n", encoding="utf-8")

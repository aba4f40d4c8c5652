"""Versioned index folders with an atomically swapped ``CURRENT`` pointer.

Layout of one knowledge base's folder::

    CURRENT                    one line: the name of the live version
    v000007-9f2c41d0/          the live version (written once, never changed)
    v000006-5b01aa3e/          older versions, kept for readers that just read CURRENT
    .staging-v000008-.../      a build in progress (or left by a crash; removed on open)

A new version is written completely into a staging folder, flushed to disk, renamed into
place, and only then published by ``os.replace`` of a small pointer file, which is atomic
on POSIX: a reader sees the old version or the new one, never a half-written one.

One writer per folder at a time (the knowledge base holds a lock; several processes
writing one folder need the SQL-backed store that comes later).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

from index.errors import IndexUnavailable

__all__ = ["CURRENT", "VersionedFolder"]

CURRENT = "CURRENT"
_VERSION = re.compile(r"^v(\d{6,})-[0-9a-f]{8}$")
_STAGING = ".staging-"
_log = logging.getLogger("enclave.index")


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            _fsync_path(path)
    _fsync_path(folder)


class VersionedFolder:
    """The versions of one index under ``root`` and the pointer to the live one."""

    def __init__(self, root: Path, *, keep: int = 3) -> None:
        if keep < 1:
            msg = f"keep must be >= 1, got {keep}"
            raise ValueError(msg)
        self.root = root
        self.keep = keep

    def versions(self) -> list[str]:
        """The complete versions on disk, oldest first."""
        if not self.root.is_dir():
            return []
        names = [p.name for p in self.root.iterdir() if p.is_dir() and _VERSION.match(p.name)]
        return sorted(names, key=_sequence)

    def current(self) -> str | None:
        """The live version's name, or None when nothing was published yet."""
        pointer = self.root / CURRENT
        try:
            name = pointer.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        if not _VERSION.match(name) or not (self.root / name).is_dir():
            msg = f"{pointer} names {name!r}, which is not a version folder; re-index."
            raise IndexUnavailable(msg)
        return name

    def path_of(self, version: str) -> Path:
        """The folder of a version."""
        return self.root / version

    def remove_staging(self) -> list[str]:
        """Delete builds a crashed writer left behind; returns their names."""
        if not self.root.is_dir():
            return []
        removed = []
        for path in self.root.iterdir():
            if path.name.startswith(_STAGING) or path.name.startswith(f".{CURRENT}-"):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path.name)
        return removed

    def build_new_version(self, write: Callable[[Path, str], None]) -> str:
        """Write a new version with ``write(folder, name)``, publish it, return its name.

        If ``write`` raises, nothing is published and the staging folder is removed.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        existing = self.versions()
        sequence = _sequence(existing[-1]) + 1 if existing else 1
        name = f"v{sequence:06d}-{secrets.token_hex(4)}"
        staging = self.root / f"{_STAGING}{name}"
        staging.mkdir()
        try:
            write(staging, name)
            _fsync_tree(staging)
            staging.rename(self.root / name)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _fsync_path(self.root)
        self._publish(name)
        self.collect_garbage()
        return name

    def _publish(self, name: str) -> None:
        pointer = self.root / f".{CURRENT}-{name}.tmp"
        with pointer.open("w", encoding="utf-8") as handle:
            handle.write(name + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(pointer, self.root / CURRENT)
        _fsync_path(self.root)

    def collect_garbage(self) -> list[str]:
        """Delete all but the newest ``keep`` versions (never the live one)."""
        live = self.current()
        versions = self.versions()
        doomed = [v for v in versions[: max(0, len(versions) - self.keep)] if v != live]
        for name in doomed:
            shutil.rmtree(self.root / name, ignore_errors=True)
            _log.info("removed old index version %s", name)
        return doomed


def _sequence(name: str) -> int:
    match = _VERSION.match(name)
    return int(match.group(1)) if match else 0

"""CPU seconds spent by a server's process tree, split into the engine and everything else.

The engine of the raw vLLM server is its whole tree. In Enclave the engine is the primary
LLM replica (the Ray actor whose command line names the deployment) and the processes it
spawned (vLLM's engine core); every other process of the stack — the API replica, Serve's
proxy, the guard, PII and retriever replicas, the fallback, Ray's daemons — is the pipeline.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

import psutil

__all__ = ["CpuSnapshot", "cpu_snapshot", "find_processes"]


@dataclass(frozen=True, slots=True)
class CpuSnapshot:
    """CPU seconds (user + system) per process id, and which of them are the engine."""

    seconds: dict[int, float]
    engine: frozenset[int]

    def since(self, before: CpuSnapshot) -> tuple[float, float]:
        """CPU seconds spent since ``before``: (engine, the rest). Processes that started in
        between count from zero; processes that ended in between are not counted."""
        engine = rest = 0.0
        for pid, now in self.seconds.items():
            spent = now - before.seconds.get(pid, 0.0)
            if pid in self.engine:
                engine += spent
            else:
                rest += spent
        return engine, rest


def _tree(root: int) -> list[psutil.Process]:
    try:
        top = psutil.Process(root)
        return [top, *top.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def find_processes(marker: str) -> list[psutil.Process]:
    """Processes whose command line contains ``marker`` (e.g. Ray's session folder)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info.get("cmdline") or ())
        if marker in cmdline:
            found.append(process)
    return found


def cpu_snapshot(
    roots: Iterable[int], engine_markers: tuple[str, ...] = (), *, all_engine: bool = False
) -> CpuSnapshot:
    """CPU seconds of every process under ``roots``; a process whose command line holds one of
    ``engine_markers`` is the engine, with its descendants (``all_engine``: the whole tree)."""
    seconds: dict[int, float] = {}
    engine: set[int] = set()
    for root in roots:
        for process in _tree(root):
            try:
                times = process.cpu_times()
                seconds[process.pid] = times.user + times.system
                cmdline = " ".join(process.cmdline())
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if all_engine or any(marker in cmdline for marker in engine_markers):
                engine.add(process.pid)
                with contextlib.suppress(psutil.NoSuchProcess):
                    engine.update(child.pid for child in process.children(recursive=True))
    return CpuSnapshot(seconds, frozenset(engine))

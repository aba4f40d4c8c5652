"""A real two-node Ray cluster on loopback, started with ``ray start`` as an operator would.

Each node has its own temp dir, fixed ports (picked free) and a custom resource; both use
token authentication with the token in the data dir (``serving.runtime_env``). Processes
are found and stopped by their ids, never by name: other Ray clusters may run on this host.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tests.e2e.conftest import _free_port

RAY = str(Path(sys.executable).with_name("ray"))


@dataclass
class RayNode:
    """One ``ray start`` node: its arguments, temp dir and the processes it started."""

    name: str
    temp_dir: Path
    args: list[str]
    env: dict[str, str]
    # Other processes of this node, by parts that must all be in their command line (the
    # head's Ray client server names only the GCS address, not the temp dir).
    also: list[tuple[str, ...]] = field(default_factory=list)
    pids: set[int] = field(default_factory=set)

    def start(self) -> None:
        """``ray start``; remember every process whose command line names this node's dir."""
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        log = self.temp_dir.parent / f"{self.name}-start.log"
        with log.open("ab") as out:
            result = subprocess.run(
                [RAY, "start", *self.args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=180,
                check=False,
            )
        if result.returncode != 0:
            raise RuntimeError(f"ray start ({self.name}) failed:\n{log.read_text()[-3000:]}")
        self.pids |= {p.pid for p in self.processes()}

    def processes(self) -> list[psutil.Process]:
        """This node's daemons (their command lines name its temp dir) and their children."""
        marker = str(self.temp_dir)
        roots = []
        for process in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                cmdline = " ".join(process.info.get("cmdline") or [])
                if marker in cmdline or any(
                    all(p in cmdline for p in parts) for parts in self.also
                ):
                    roots.append(process)
        found = {p.pid: p for p in roots}
        for root in roots:
            with contextlib.suppress(psutil.Error):
                found.update({c.pid: c for c in root.children(recursive=True)})
        for pid in list(self.pids):
            with contextlib.suppress(psutil.Error):
                found.setdefault(pid, psutil.Process(pid))
        self.pids |= set(found)
        return [p for p in found.values() if _alive(p)]

    def kill(self) -> list[int]:
        """SIGKILL the raylet, its workers (replicas, engines) and the node's other daemons."""
        victims = self.processes()
        for process in victims:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(victims, timeout=10)
        return [p.pid for p in victims]

    def stop(self) -> list[str]:
        """SIGTERM, then SIGKILL what is left; return what survived both (should be nothing)."""
        victims = self.processes()
        for process in victims:
            with contextlib.suppress(psutil.Error):
                process.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(victims, timeout=15)
        for process in alive:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(alive, timeout=10)
        return [f"{p.pid} {' '.join(p.cmdline()[:3])}" for p in self.processes()]


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _node_args(num_cpus: int, resources: dict[str, float], object_store_mb: int) -> list[str]:
    return [
        "--node-ip-address=127.0.0.1",
        f"--num-cpus={num_cpus}",
        f"--resources={json.dumps(resources)}",
        f"--object-store-memory={object_store_mb * 1024 * 1024}",
        f"--node-manager-port={_free_port()}",
        f"--object-manager-port={_free_port()}",
        f"--runtime-env-agent-port={_free_port()}",
        f"--dashboard-agent-grpc-port={_free_port()}",
        f"--dashboard-agent-listen-port={_free_port()}",
        f"--metrics-export-port={_free_port()}",
        "--disable-usage-stats",
    ]


@dataclass
class LocalCluster:
    """A head node (API, guards, retriever, fallback) and a worker node (the primary LLM)."""

    head: RayNode
    worker: RayNode
    gcs_address: str

    @classmethod
    def create(cls, root: Path, env: dict[str, str]) -> LocalCluster:
        """Two nodes described, not started: ``start()`` starts them."""
        gcs_port = _free_port()
        gcs_address = f"127.0.0.1:{gcs_port}"
        head_dir = root / "h"
        head = RayNode(
            "head",
            head_dir,
            [
                "--head",
                f"--port={gcs_port}",
                f"--ray-client-server-port={_free_port()}",
                "--include-dashboard=false",
                f"--temp-dir={head_dir}",
                *_node_args(6, {"enclave_guard": 100}, 300),
            ],
            env,
            also=[("ray.util.client.server", f":{gcs_port} ")],
        )
        worker_dir = root / "w"
        worker = RayNode(
            "worker",
            worker_dir,
            [
                f"--address={gcs_address}",
                f"--temp-dir={worker_dir}",
                *_node_args(2, {"enclave_llm": 1}, 300),
            ],
            env,
        )
        return cls(head, worker, gcs_address)

    def start(self) -> None:
        """Start the head, then the worker."""
        self.head.start()
        self.worker.start()

    def stop(self) -> list[str]:
        """Stop the worker, then the head; what survived (should be nothing)."""
        return self.worker.stop() + self.head.stop()


def node_environment(base: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
    """The environment ``ray start`` runs with: replicas inherit it from their raylet."""
    env = dict(base)
    env.update(extra)
    env.pop("RAY_ADDRESS", None)
    return env


def wait_for(predicate: object, timeout_s: float, what: str, step_s: float = 1.0) -> float:
    """Poll ``predicate()`` until true; the seconds it took, or AssertionError naming ``what``."""
    assert callable(predicate)
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        with contextlib.suppress(Exception):
            if predicate():
                return time.monotonic() - started
        time.sleep(step_s)
    raise AssertionError(f"{what}: not within {timeout_s:g}s")

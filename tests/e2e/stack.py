"""Runs the real embedded stack (`enclave serve`) as a subprocess for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[2]
GUARD_DIR = Path(__file__).resolve().parent / "egress_guard"


@dataclass
class RunningStack:
    """A started stack: its process, base URL and logs."""

    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    guard_log: Path
    start_seconds: float
    data_dir: Path
    admin_key: str = ""
    ray_metrics_port: int = 0
    traces: Any = None  # the OTLP receiver's store, when the stack exports traces

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def log_text(self) -> str:
        """The console of `enclave serve` (stdout and stderr)."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def replica_logs_text(self) -> str:
        """What Ray and the replicas wrote to their log files (off the console unless
        ``--verbose``): Serve's logs and each worker's output."""
        logs = self.data_dir / "ray" / "session_latest" / "logs"
        return "\n".join(
            path.read_text(encoding="utf-8", errors="replace")
            for path in sorted(logs.rglob("*"))
            if path.is_file() and path.suffix in {".log", ".out", ".err"}
        )

    def violations(self) -> list[str]:
        if not self.guard_log.exists():
            return []
        return [line for line in self.guard_log.read_text().splitlines() if line.strip()]


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_stack(
    workdir: Path,
    port: int,
    *,
    timeout_s: float = 420.0,
    extra_env: dict[str, str] | None = None,
) -> RunningStack:
    """Start `enclave serve` under the egress guard and wait until /readyz says ready."""
    log_path = workdir / "stack.log"
    guard_log = workdir / "egress-violations.jsonl"
    # Each stack its own port for Ray's metrics (the e2e and chaos stacks run in one session).
    ray_metrics_port = _unused_port()
    env = dict(os.environ)
    env.update(
        {
            "ENCLAVE_PROFILE": "test",
            "ENCLAVE_RAY__METRICS_EXPORT_PORT": str(ray_metrics_port),
            "ENCLAVE_CONFIG_DIR": str(ROOT),
            "ENCLAVE_API__PORT": str(port),
            # The launcher gives up (exit 1, the reason on its console) when this test would.
            "ENCLAVE_RAY__STARTUP_TIMEOUT_S": str(timeout_s),
            "ENCLAVE_PATHS__DATA_DIR": str(workdir / "data"),
            "ENCLAVE_EGRESS_GUARD_LOG": str(guard_log),
            "PYTHONPATH": os.pathsep.join(
                [str(GUARD_DIR), str(ROOT), env.get("PYTHONPATH", "")]
            ).rstrip(os.pathsep),
        }
    )
    env.update(extra_env or {})
    started = time.perf_counter()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "serving.ops.cli", "serve"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stack = RunningStack(
        process, f"http://127.0.0.1:{port}", log_path, guard_log, 0.0, workdir / "data"
    )
    stack.ray_metrics_port = ray_metrics_port
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"the stack exited with {process.returncode}:\n{stack.log_text()[-4000:]}"
            )
        try:
            if httpx.get(f"{stack.base_url}/readyz", timeout=2).status_code == 200:
                stack.start_seconds = time.perf_counter() - started
                stack.admin_key = _bootstrap_key(stack, deadline)
                return stack
        except httpx.HTTPError:
            pass
        time.sleep(1)
    stop_stack(stack)
    raise TimeoutError(f"the stack was not ready in {timeout_s}s:\n{stack.log_text()[-4000:]}")


_KEY = re.compile(r"enc_[0-9a-f]{16}\.[A-Za-z0-9_-]{43}")


def _bootstrap_key(stack: RunningStack, deadline: float) -> str:
    """The platform-admin key `enclave serve` prints once on its first start."""
    while time.monotonic() < deadline:
        found = _KEY.findall(stack.log_text())
        if found:
            return str(found[0])
        time.sleep(0.5)
    raise TimeoutError(f"no bootstrap API key printed:\n{stack.log_text()[-2000:]}")


def stop_stack(stack: RunningStack, *, timeout_s: float = 90.0) -> tuple[int | None, list[str]]:
    """Ctrl-C the stack; return its exit code and any process of it still alive afterwards."""
    tracked = [stack.process, *stack.descendants()]
    pids = {p.pid for p in tracked}
    if stack.process.poll() is None:
        stack.process.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            stack.process.wait(timeout=timeout_s)
    # Ray's daemons re-parent away from the launcher; look for anything that was ours.
    time.sleep(2)
    survivors = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE:
                survivors.append(f"{pid} {' '.join(proc.cmdline()[:3])}")
        except psutil.NoSuchProcess:
            continue
    code = stack.process.poll()
    if survivors or code is None:
        os.killpg(stack.process.pid, signal.SIGKILL)  # never leave a stack behind a failed test
        for pid in pids:
            try:
                psutil.Process(pid).kill()
            except psutil.NoSuchProcess:
                continue
    return code, survivors


def replica_processes(stack: RunningStack, deployment: str) -> list[psutil.Process]:
    """The worker processes of one Serve deployment's replicas (Ray sets their titles)."""
    marker = f"ServeReplica:enclave:{deployment}"
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info.get("cmdline") or [])
        if marker in cmdline and "ray::" in cmdline:
            found.append(process)
    return found


def issue_key(base_url: str, admin_key: str, tenant: str, role: str) -> str:
    """A new API key (a new user) with one role in ``tenant``, issued by the platform admin."""
    response = httpx.post(
        f"{base_url}/v1/admin/api-keys",
        json={"name": f"e2e {role}", "tenant": tenant, "roles": [role]},
        headers={"Authorization": f"Bearer {admin_key}"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["api_key"])

"""Start a server as a child process, wait until it answers, and stop it with its children.

Each server runs in its own session (process group), so that stopping it also reaches the
engine processes it spawned. Its stdout and stderr go to a log file, whose tail is quoted
when the server dies or never becomes ready.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ServerError",
    "ServerSpec",
    "Started",
    "ensure_port_free",
    "free_port",
    "running",
]

_POLL_S = 1.0
_PROBE_TIMEOUT_S = 5.0
_LOG_TAIL_LINES = 30


class ServerError(RuntimeError):
    """A benchmarked server could not be started, did not become ready, or died."""


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """How to start one server and how to tell that it is ready."""

    name: str
    host: str
    port: int
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    ready_url: str
    ready_timeout_s: float
    stop_timeout_s: float
    log_path: Path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def ensure_port_free(host: str, port: int) -> None:
    """Raise if something already accepts connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        if sock.connect_ex((host, port)) == 0:
            msg = f"Something already listens on {host}:{port}; stop it before benchmarking."
            raise ServerError(msg)


def _log_tail(path: Path) -> str:
    if not path.is_file():
        return "(no log)"
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(lines[-_LOG_TAIL_LINES:])


def _answers_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=_PROBE_TIMEOUT_S) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def _wait_ready(spec: ServerSpec, process: subprocess.Popen[bytes]) -> float:
    """Poll ``spec.ready_url`` until it answers 200; return the seconds it took."""
    started = time.monotonic()
    deadline = started + spec.ready_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            msg = (
                f"{spec.name} exited with code {process.returncode} before it was ready. "
                f"Last lines of {spec.log_path}:\n{_log_tail(spec.log_path)}"
            )
            raise ServerError(msg)
        if _answers_ok(spec.ready_url):
            return time.monotonic() - started
        time.sleep(_POLL_S)
    msg = (
        f"{spec.name} was not ready at {spec.ready_url} within {spec.ready_timeout_s:.0f} s. "
        f"Last lines of {spec.log_path}:\n{_log_tail(spec.log_path)}"
    )
    raise ServerError(msg)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop(spec: ServerSpec, process: subprocess.Popen[bytes]) -> None:
    """SIGINT the server, wait, then SIGKILL whatever is left of its process group."""
    pgid = process.pid  # start_new_session=True: the server leads its own group
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=spec.stop_timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            process.wait()
    # Engine processes may outlive their parent for a moment; none may outlive the benchmark.
    deadline = time.monotonic() + 10.0
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.5)
    if _group_alive(pgid):
        os.killpg(pgid, signal.SIGKILL)


@dataclass(frozen=True, slots=True)
class Started:
    """A server that answers: the seconds it took to be ready, and its process id."""

    ready_s: float
    pid: int


@contextmanager
def running(spec: ServerSpec) -> Iterator[Started]:
    """Run the server for the duration of the block; yields how long it took and its pid."""
    # Another server on the port would answer the readiness probe and be measured instead.
    ensure_port_free(spec.host, spec.port)
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)
    with spec.log_path.open("wb") as log:
        process = subprocess.Popen(
            spec.argv,
            cwd=spec.cwd,
            env=spec.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield Started(_wait_ready(spec, process), process.pid)
            if process.poll() is not None:
                msg = f"{spec.name} exited during the benchmark (code {process.returncode})."
                raise ServerError(msg)
        finally:
            _stop(spec, process)

"""The first five minutes: what `enclave serve` shows, and what `enclave status` tells.

The session's stack (tests/e2e/conftest.py) is started exactly as `make run` starts it, its
console captured in ``stack.log``: these tests read that console, run the commands its
greeting offers, and ask `enclave status` about it. One more start, with a replica that
cannot start, checks that the error reaches the console with the logs' folder.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from core.settings import Settings
from tests.e2e.stack import GUARD_DIR, ROOT, RunningStack

RULE = "-" * 72
# How Ray prefixes a replica's or Serve actor's line copied to the driver's console.
REPLICA_LINE = re.compile(r"\((ServeReplica|ServeController|ProxyActor|EngineCore|VllmWorker)\b")
DEPLOYMENTS = {"api", "llm_primary", "llm_fallback", "pii", "guard", "retriever"}


def _greeting(console: str) -> str:
    start = console.rfind(f"{RULE}\nEnclave is ready")
    assert start >= 0, console[-3000:]
    return console[start:]


def _row(greeting: str, label: str) -> str:
    (line,) = [line for line in greeting.splitlines() if line.strip().startswith(label)]
    return line.strip()[len(label) :].strip()


def _stack_env(stack: RunningStack) -> dict[str, str]:
    """The environment the stack was started with, as its operator's shell would have it."""
    return {
        **os.environ,
        "ENCLAVE_PROFILE": "test",
        "ENCLAVE_CONFIG_DIR": str(ROOT),
        "ENCLAVE_PATHS__DATA_DIR": str(stack.data_dir),
        "ENCLAVE_API__PORT": stack.base_url.rsplit(":", 1)[1],
        "PYTHONPATH": str(ROOT),
    }


def test_the_console_ends_with_the_greeting_and_holds_no_replica_logs(
    stack: RunningStack,
) -> None:
    console = stack.log_text()
    greeting = _greeting(console)
    print(greeting)  # shown with -rP: what a newcomer sees
    assert console.rstrip().endswith(greeting.rstrip()), console[-3000:]
    assert greeting.rstrip().endswith(RULE)
    assert _row(greeting, "API").startswith(f"{stack.base_url}/v1 ")
    assert _row(greeting, "Portal") == f"{stack.base_url}/"
    assert _row(greeting, "Admin key") == stack.admin_key  # the first start's key
    assert len(greeting.splitlines()) <= 12
    # The replicas' logs (Serve, vLLM, the models' libraries) are in files, not here.
    copied = [line for line in console.splitlines() if REPLICA_LINE.search(line)]
    assert copied == []
    assert "Loading weights" not in console
    assert "Started a local Ray instance" not in console  # Ray's INFO lines too
    assert "RAY_AUTH_MODE=disabled" not in console  # nor Ray's advice to turn auth off
    # ... under the data directory, at the path the start line and the greeting print.
    logs = Path(_row(greeting, "Logs"))
    assert f"Logs of Ray, Serve and the model replicas: {logs}" in console
    assert logs.is_relative_to(stack.data_dir)
    assert list((logs / "serve").glob("replica_enclave_llm_primary_*.log"))
    engine_output = [
        path
        for path in logs.glob("worker-*.*")
        if "Initializing a V1 LLM engine" in path.read_text(errors="replace")
    ]
    assert engine_output, "vLLM's start-up lines are in no worker log"
    # The launcher's own structured lines stay on the console, JSON as configured.
    started = [line for line in console.splitlines() if '"msg": "stack ready"' in line]
    assert len(started) == 1
    assert json.loads(started[0])["config_version"].startswith("cfg_")


def test_the_greetings_staff_key_command_issues_a_key_that_chats(
    stack: RunningStack, model_name: str
) -> None:
    command = _row(_greeting(stack.log_text()), "Staff key")
    assert command.endswith("--profile test keys create --role staff --name me")
    argv = shlex.split(command)  # pasted as it is
    done = subprocess.run(
        argv,
        check=False,
        cwd=ROOT,
        env=_stack_env(stack),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip().splitlines()[-1]
    response = httpx.post(
        f"{stack.base_url}/v1/chat/completions",
        json={
            "model": model_name,
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 4,
        },
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
    )
    assert response.status_code == 200, response.text


def _status(
    stack: RunningStack, *extra: str, key: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = _stack_env(stack)
    env.pop("ENCLAVE_API_KEY", None)
    if key is not None:
        env["ENCLAVE_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "serving.ops.cli", "status", *extra],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_enclave_status_reports_the_running_stack(
    stack: RunningStack, test_settings: Settings
) -> None:
    done = _status(stack, "--json", key=stack.admin_key)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["running"] is True
    assert report["ready"] is True
    info = httpx.get(
        f"{stack.base_url}/v1/info", headers={"Authorization": f"Bearer {stack.admin_key}"}
    ).json()
    assert report["config_version"] == info["config_version"]
    assert report["profile"] == "test"
    deployments = {d["name"]: d for d in report["deployments"]}
    assert set(deployments) == DEPLOYMENTS
    for name, deployment in deployments.items():
        assert deployment["application"] == test_settings.ray.app_name
        assert deployment["status"] == "HEALTHY", (name, deployment)
        assert deployment["replicas"].get("RUNNING", 0) >= 1, (name, deployment)
    models = {m["name"]: m for m in report["models"]}
    primary = models[test_settings.llm.primary.store_name]
    assert primary["serves"] == ["primary", "fallback"]
    assert primary["version"]
    assert {m["kind"] for m in models.values()} >= {"llm", "embedding"}
    assert report["engines"]["primary"]["engine"] == "vllm"
    assert report["stores"]["database"]["backend"] == "sqlite"
    assert str(stack.data_dir) in report["stores"]["database"]["url"]
    assert "last_run" in report["canary"]
    # The same, for people: one row per deployment.
    table = _status(stack, key=stack.admin_key)
    assert table.returncode == 0, table.stderr
    rows = {line.split()[0] for line in table.stdout.splitlines() if line.strip()}
    assert rows >= DEPLOYMENTS
    # And without a key it still says whether the stack answers, and how to get the rest.
    bare = _status(stack)
    assert bare.returncode == 2
    assert f"Enclave answers at {stack.base_url}: ready" in bare.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.usefixtures("stack")  # beside the session's stack, as an operator's second one
def test_a_replica_that_cannot_start_is_reported_on_the_console() -> None:
    """An encoder the retriever cannot find: the console names the deployment, its error and
    the logs' folder, and `enclave serve` exits 1 without waiting for the rest."""
    workdir = Path(tempfile.mkdtemp(prefix="enclave-fail-"))
    env = {
        **os.environ,
        "ENCLAVE_PROFILE": "test",
        "ENCLAVE_CONFIG_DIR": str(ROOT),
        "ENCLAVE_PATHS__DATA_DIR": str(workdir / "data"),
        "ENCLAVE_API__PORT": str(_free_port()),
        "ENCLAVE_RAY__METRICS_EXPORT_PORT": str(_free_port()),
        # The retriever checks its encoder first thing: the cheapest replica to fail.
        "ENCLAVE_RETRIEVAL__ENCODER_STORE_NAME": "no-such-model",
        "ENCLAVE_CANARY__ENABLED": "false",
        "ENCLAVE_EGRESS_GUARD_LOG": str(workdir / "egress.jsonl"),
        "PYTHONPATH": os.pathsep.join([str(GUARD_DIR), str(ROOT)]),
    }
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "serving.ops.cli", "serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        console, _ = process.communicate(timeout=400)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        console, _ = process.communicate()
        pytest.fail(f"`enclave serve` did not stop on a failed deployment:\n{console[-3000:]}")
    seconds = time.monotonic() - started
    print(f"failed start reported after {seconds:.0f} s:\n{console}")
    assert process.returncode == 1, console[-3000:]
    failure = console[console.index("Enclave did not start.") :]
    assert "Deployment retriever failed (DEPLOY_FAILED):" in failure
    assert "no-such-model" in failure
    logs = workdir / "data" / "ray" / "session_latest" / "logs"
    assert f"Full logs: {logs}" in failure
    assert "Enclave is ready" not in console
    assert not REPLICA_LINE.search(console)
    guard_log = workdir / "egress.jsonl"
    assert not guard_log.exists() or not guard_log.read_text().strip()
    shutil.rmtree(workdir, ignore_errors=True)

"""The multi-node stack: a real two-node Ray cluster on loopback (``ray start``), the real
Enclave application deployed on it by ``enclave serve`` joining that cluster, PostgreSQL and
Redis as the shared stores. Started once for tests/multinode; torn down to the last process."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from core.settings import Settings
from serving.runtime_env import ensure_ray_auth_token, offline_environment, prepare_home
from tests.chaos.conftest import PG_URL, pg_admin
from tests.e2e.conftest import _free_port
from tests.e2e.stack import GUARD_DIR, ROOT, RunningStack, issue_key, start_stack, stop_stack
from tests.multinode.cluster import LocalCluster, node_environment

REDIS_URL = os.environ.get("ENCLAVE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
GUARD_NODE = json.dumps({"custom_resources": {"enclave_guard": 1}})
LLM_NODE = json.dumps({"custom_resources": {"enclave_llm": 1}})


@dataclass
class MultiNode:
    """The cluster, the stack deployed on it, and a staff and an auditor key."""

    cluster: LocalCluster
    stack: RunningStack
    keys: dict[str, str]


def host_addresses() -> str:
    """This host's own interface addresses: a Ray node joining a cluster registers with one
    (Ray swaps 127.0.0.1 for it in cluster mode), and traffic to them stays on the host."""
    found = {
        a.address.split("%", 1)[0]
        for addrs in psutil.net_if_addrs().values()
        for a in addrs
        if a.family.name in {"AF_INET", "AF_INET6"}
    }
    return ",".join(sorted(found))


@pytest.fixture(scope="module")
def multinode() -> Iterator[MultiNode]:
    database = f"enclave_mn_{secrets.token_hex(4)}"
    asyncio.run(pg_admin(f'CREATE DATABASE "{database}"'))
    # Short: Ray's unix sockets live under the temp dirs (a path limit of 107 bytes).
    workdir = Path(tempfile.mkdtemp(prefix="enc-mn-", dir="/tmp"))
    data_dir = workdir / "data"
    guard_log = workdir / "egress-violations.jsonl"
    token = ensure_ray_auth_token(data_dir)
    base = Settings(paths={"data_dir": data_dir})
    env = node_environment(
        dict(os.environ),
        {
            **offline_environment(base),
            "HOME": str(prepare_home(data_dir)),
            # Token authentication on every node and the driver, one token in the data dir.
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(token),
            "ENCLAVE_EGRESS_GUARD_LOG": str(guard_log),
            "ENCLAVE_EGRESS_GUARD_HOST_ADDRESSES": host_addresses(),
            "PYTHONPATH": os.pathsep.join([str(GUARD_DIR), str(ROOT)]),
        },
    )
    cluster = LocalCluster.create(workdir / "ray", env)
    stack: RunningStack | None = None
    problems: list[str] = []
    try:
        cluster.start()
        stack = start_stack(
            workdir,
            _free_port(),
            timeout_s=900,
            extra_env={
                "RAY_AUTH_MODE": "token",
                "ENCLAVE_EGRESS_GUARD_HOST_ADDRESSES": host_addresses(),
                "ENCLAVE_RAY__ADDRESS": cluster.gcs_address,
                "ENCLAVE_RAY__PROXY_LOCATION": "HeadOnly",
                "ENCLAVE_DATABASE__URL": PG_URL.rsplit("/", 1)[0] + f"/{database}",
                "ENCLAVE_LIMITS__STORE": "redis",
                "ENCLAVE_LIMITS__REDIS_URL": REDIS_URL,
                "ENCLAVE_LIMITS__KEY_PREFIX": f"mn-{secrets.token_hex(4)}",
                "ENCLAVE_LIMITS__USER_REQUESTS_PER_MINUTE": "100000",
                "ENCLAVE_LIMITS__TENANT_REQUESTS_PER_MINUTE": "100000",
                "ENCLAVE_CANARY__ENABLED": "false",
                "ENCLAVE_LLM__STALL_TIMEOUT_S": "5",
                "ENCLAVE_LLM__CIRCUIT_OPEN_S": "5",
                # The placement the chart's values use: the primary where enclave_llm is.
                "ENCLAVE_LLM__PRIMARY__RESOURCES__PLACEMENT": LLM_NODE,
                "ENCLAVE_LLM__FALLBACK__RESOURCES__PLACEMENT": GUARD_NODE,
                "ENCLAVE_PII__RESOURCES__PLACEMENT": GUARD_NODE,
                "ENCLAVE_GUARD__RESOURCES__PLACEMENT": GUARD_NODE,
                "ENCLAVE_RETRIEVAL__RESOURCES__PLACEMENT": GUARD_NODE,
                "ENCLAVE_API__PLACEMENT": GUARD_NODE,
            },
        )
        keys = {
            role: issue_key(stack.base_url, stack.admin_key, "default", role)
            for role in ("staff", "auditor")
        }
        yield MultiNode(cluster, stack, keys)
        if stack.violations():
            problems.append(f"egress attempts: {stack.violations()}")
    finally:
        if stack is not None:
            code, _ = stop_stack(stack)
            if code != 0:
                problems.append(f"`enclave serve` exited with {code} after Ctrl-C")
        survivors = cluster.stop()
        if survivors:
            problems.append(f"processes left after teardown: {survivors}")
        asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        if not problems:
            shutil.rmtree(workdir, ignore_errors=True)
    if problems:
        pytest.fail("; ".join(problems) + f" (logs in {workdir})")

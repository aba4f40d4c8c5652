"""The chaos stack: the real stack on PostgreSQL with small queues, started once for the
whole tests/chaos package (its modules share it, in file order), under the same egress
guard as the e2e suite."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import _free_port
from tests.e2e.stack import RunningStack, start_stack, stop_stack

PG_URL = os.environ.get(
    "ENCLAVE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
ADMIN_URL = PG_URL.replace("postgresql+asyncpg", "postgresql")


async def pg_admin(statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(ADMIN_URL)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="package")
def chaos_database() -> Iterator[str]:
    name = f"enclave_chaos_{secrets.token_hex(4)}"
    asyncio.run(pg_admin(f'CREATE DATABASE "{name}"'))
    yield name
    asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="package")
def chaos_stack(chaos_database: str, request: pytest.FixtureRequest) -> Iterator[RunningStack]:
    failed_before = request.session.testsfailed
    workdir = Path(tempfile.mkdtemp(prefix="enclave-chaos-"))
    guard_log = workdir / "egress-violations.jsonl"
    os.environ["ENCLAVE_EGRESS_GUARD_LOG"] = str(guard_log)
    env = {
        "ENCLAVE_DATABASE__URL": PG_URL.rsplit("/", 1)[0] + f"/{chaos_database}",
        "ENCLAVE_LIMITS__USER_REQUESTS_PER_MINUTE": "100000",
        "ENCLAVE_LIMITS__TENANT_REQUESTS_PER_MINUTE": "100000",
        "ENCLAVE_LLM__PRIMARY__RESOURCES__MAX_ONGOING_REQUESTS": "8",
        "ENCLAVE_LLM__PRIMARY__RESOURCES__MAX_QUEUED_REQUESTS": "8",
        "ENCLAVE_LLM__FALLBACK__RESOURCES__MAX_ONGOING_REQUESTS": "4",
        "ENCLAVE_LLM__FALLBACK__RESOURCES__MAX_QUEUED_REQUESTS": "4",
        "ENCLAVE_LLM__STALL_TIMEOUT_S": "5",
        "ENCLAVE_RETRIEVAL__TIMEOUT_S": "1.0",
        "ENCLAVE_CANARY__ENABLED": "false",
    }
    running = start_stack(workdir, _free_port(), extra_env=env)
    yield running
    code, survivors = stop_stack(running)
    problems = []
    if code != 0:
        problems.append(f"`enclave serve` exited with {code} after Ctrl-C")
    if running.violations():
        problems.append(f"egress attempts: {running.violations()}")
    if problems:
        pytest.fail("; ".join(problems) + "\n" + running.log_text()[-3000:])
    del survivors  # a killed replica's engine may outlive it; stop_stack killed it
    if request.session.testsfailed > failed_before:
        # The stack's log says what the failed test's clients could not see.
        print(f"chaos stack log kept for the failed test(s): {running.log_path}")
        return
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="package")
def chaos_keys(chaos_stack: RunningStack) -> dict[str, str]:
    keys = {}
    for role in ("staff", "auditor"):
        response = httpx.post(
            f"{chaos_stack.base_url}/v1/admin/api-keys",
            json={"name": f"chaos {role}", "tenant": "default", "roles": [role]},
            headers={"Authorization": f"Bearer {chaos_stack.admin_key}"},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        keys[role] = response.json()["api_key"]
    return keys

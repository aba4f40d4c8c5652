"""End-to-end fixtures: the real stack, started once per session, under the egress guard."""

from __future__ import annotations

import importlib.util
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from core.settings import Settings
from tests.e2e.oidc_provider import OIDCProvider, start_provider
from tests.e2e.otlp_receiver import start_receiver
from tests.e2e.stack import GUARD_DIR, RunningStack, start_stack, stop_stack


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def oidc_provider() -> Iterator[OIDCProvider]:
    """A local OIDC provider (code + PKCE) the stack trusts; started before the stack."""
    workdir = Path(tempfile.mkdtemp(prefix="enclave-oidc-"))
    provider = start_provider(workdir)
    yield provider
    provider.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def stack(
    test_settings: Settings,
    monkeypatch_session: pytest.MonkeyPatch,
    oidc_provider: OIDCProvider,
) -> Iterator[RunningStack]:
    """The embedded stack as `make run` starts it (test profile, own data dir and port)."""
    # Short on purpose: Ray puts AF_UNIX sockets under the data dir, and their paths must stay
    # under 108 bytes (pytest's numbered temp folders grow past that).
    workdir = Path(tempfile.mkdtemp(prefix="enclave-e2e-"))
    guard_log = workdir / "egress-violations.jsonl"
    # The test process (the openai client) runs under the same guard as the stack.
    monkeypatch_session.setenv("ENCLAVE_EGRESS_GUARD_LOG", str(guard_log))
    spec = importlib.util.spec_from_file_location(
        "enclave_egress_guard", GUARD_DIR / "sitecustomize.py"
    )
    assert spec is not None
    assert spec.loader is not None
    if "enclave_egress_guard" not in sys.modules:
        module = importlib.util.module_from_spec(spec)
        sys.modules["enclave_egress_guard"] = module
        spec.loader.exec_module(module)
    receiver, traces = start_receiver()
    running = start_stack(
        workdir,
        _free_port(),
        extra_env={
            "ENCLAVE_TELEMETRY__OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.server_port}",
            # The portal offers OIDC sign-in; API keys keep working for every other test.
            **oidc_provider.stack_env(),
        },
    )
    running.traces = traces
    yield running
    code, survivors = stop_stack(running)
    problems = []
    if code != 0:
        problems.append(f"`enclave serve` exited with {code} after Ctrl-C")
    if survivors:
        problems.append(f"processes left behind after Ctrl-C: {survivors}")
    if running.violations():
        problems.append(f"egress attempts: {running.violations()}")
    if problems:
        pytest.fail("; ".join(problems) + "\n" + running.log_text()[-3000:])
    receiver.shutdown()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def monkeypatch_session() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(autouse=True)
def _no_egress(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test during which any process of the stack tried to leave the host."""
    if "stack" not in request.fixturenames:
        yield
        return
    running: RunningStack = request.getfixturevalue("stack")
    before = len(running.violations())
    yield
    after = running.violations()
    assert after[before:] == [], f"egress attempted: {after[before:]}"


@pytest.fixture(scope="session")
def api_keys(stack: RunningStack) -> dict[str, str]:
    """Keys for each role in tenant `default`, issued with the bootstrap platform-admin key."""
    keys = {"platform_admin": stack.admin_key}
    for role in ("staff", "tenant_admin", "auditor"):
        response = httpx.post(
            f"{stack.base_url}/v1/admin/api-keys",
            json={"name": f"e2e {role}", "tenant": "default", "roles": [role]},
            headers={"Authorization": f"Bearer {stack.admin_key}"},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        keys[role] = response.json()["api_key"]
    return keys


@pytest.fixture(scope="session")
def auth(api_keys: dict[str, str]) -> Callable[[str], dict[str, str]]:
    """Authorization headers of a role: ``auth("staff")``."""
    return lambda role: {"Authorization": f"Bearer {api_keys[role]}"}


@pytest.fixture(scope="session")
def client(stack: RunningStack, api_keys: dict[str, str]) -> OpenAI:
    """The real `openai` client pointed at the stack, signed in with a staff key."""
    return OpenAI(base_url=f"{stack.base_url}/v1", api_key=api_keys["staff"], max_retries=0)


@pytest.fixture(scope="session")
def model_name(test_settings: Settings) -> str:
    return test_settings.llm.primary.served_name

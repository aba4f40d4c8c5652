"""Schemathesis against the served OpenAPI document: bounded generated requests to every
operation, signed in with a key that holds every role; no 5xx, and every documented response
matches its schema. Every operation that takes JSON also gets bodies nested thousands deep
and JSON under another media type: a 4xx problem each, never a 500. (The models are fakes
here; the e2e suite runs the real ones.)"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from api.app import create_app
from api.security import issue_api_key
from core.db import Database
from core.settings import Settings
from tests.fakes import TestKeys, build_services


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory, migrated_db: Path) -> object:
    tuned = Settings(
        paths={"data_dir": tmp_path_factory.mktemp("fuzz")},
        llm={"primary": {"served_name": "test-model"}, "fallback": None},
        limits={"user_requests_per_minute": None, "tenant_requests_per_minute": None},
    )
    keys = asyncio.run(TestKeys.issue())
    everything = issue_api_key(
        tenant="default",
        roles=["staff", "tenant_admin", "auditor", "platform_admin"],
        name="fuzz",
    )
    asyncio.run(keys.store.add(everything.record))
    database_path = tmp_path_factory.mktemp("fuzz-db") / "enclave.db"
    shutil.copyfile(migrated_db, database_path)
    services = build_services(
        tuned,
        keys,
        Database.from_url(f"sqlite+aiosqlite:///{database_path}"),
        security=keys.security(tuned),
    )
    headers = {"Authorization": f"Bearer {everything.plaintext}"}
    schema = schemathesis.openapi.from_asgi(
        "/schema/openapi.json", create_app(services), headers=headers
    )
    schema.config.headers = headers
    return schema


def test_no_server_errors_and_responses_match_the_schema(api_schema: Any) -> None:
    # The operations are driven from here (not schemathesis' pytest plugin, which does not
    # run on this pytest): each gets a bounded number of generated requests.
    checks = [not_a_server_error, response_schema_conformance, content_type_conformance]
    failures: dict[str, str] = {}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 19

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=12,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            case.validate_response(case.call(), checks=checks)

        try:
            run()
        except Exception as exc:  # reported per operation below
            failures[operation.label] = f"{type(exc).__name__}: {str(exc)[:600]}"
    assert failures == {}


def _json_operations(api_schema: Any) -> list[Any]:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    return [
        operation
        for operation in operations
        if "application/json" in api_schema.get_request_payload_content_types(operation)
    ]


def _path_filled(operation: Any) -> dict[str, str]:
    # Any value will do: the body is refused before a path value is looked up.
    return {parameter.name: "1" for parameter in operation.path_parameters}


@pytest.mark.parametrize("depth", [1_000, 2_000, 50_000])
def test_every_json_body_nested_deeply_is_a_client_error(api_schema: Any, depth: int) -> None:
    operations = _json_operations(api_schema)
    assert len(operations) >= 10
    raw = "[" * depth + "]" * depth
    answers: dict[str, int] = {}
    for operation in operations:
        case = operation.Case(
            body=raw, media_type="text/plain", path_parameters=_path_filled(operation)
        )
        response = case.call(
            headers={**api_schema.config.headers, "Content-Type": "application/json"}
        )
        answers[operation.label] = response.status_code
        assert response.headers["content-type"][0].startswith("application/problem+json")
    assert {label: code for label, code in answers.items() if not 400 <= code < 500} == {}


def test_every_json_body_under_another_media_type_is_415(api_schema: Any) -> None:
    answers: dict[str, int] = {}
    for operation in _json_operations(api_schema):
        case = operation.Case(
            body="{}", media_type="text/plain", path_parameters=_path_filled(operation)
        )
        answers[operation.label] = case.call(headers=api_schema.config.headers).status_code
    assert {label: code for label, code in answers.items() if code != 415} == {}

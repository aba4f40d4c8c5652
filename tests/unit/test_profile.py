"""``/v1/me/profile``: defaults until saved, validation that says what to fix, one profile
per user and tenant, and the display name kept out of the audit log."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import text

from api.app import create_app
from api.stores.profiles import SUPPORTED_LANGUAGES, checked_profile
from core.db import Database
from core.errors import InvalidRequest
from core.settings import Settings
from tests.fakes import TestKeys, build_services

PATH = "/v1/me/profile"
NAME = "Ana Silva-Nordström"


@pytest.fixture
def client(settings: Settings, keys: TestKeys, database: Database) -> Iterator[TestClient[Any]]:
    services = build_services(settings, keys, database)
    with TestClient(app=create_app(services)) as test_client:
        yield test_client


def put(client: TestClient[Any], keys: TestKeys, who: str = "staff", **body: Any) -> Any:
    return client.put(PATH, json=body, headers=keys.header(who))


def test_a_new_user_gets_the_defaults(client: TestClient[Any], keys: TestKeys) -> None:
    response = client.get(PATH, headers=keys.header("staff"))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "display_name": "",
        "language": "en",
        "default_knowledge_base": None,
        "updated_at": None,
    }


def test_a_saved_profile_is_read_back_and_replaced(client: TestClient[Any], keys: TestKeys) -> None:
    saved = put(
        client,
        keys,
        display_name=f"  {NAME} ",
        language="de-ch",
        default_knowledge_base="handbook",
    )
    assert saved.status_code == 200, saved.text
    body = client.get(PATH, headers=keys.header("staff")).json()
    assert body["display_name"] == NAME  # stripped
    assert body["language"] == "de-CH"  # canonical case
    assert body["default_knowledge_base"] == "handbook"
    assert body["updated_at"].endswith("Z")

    again = put(client, keys, display_name="Ana", language="fr", default_knowledge_base=None)
    assert again.status_code == 200, again.text
    body = client.get(PATH, headers=keys.header("staff")).json()
    assert (body["display_name"], body["language"], body["default_knowledge_base"]) == (
        "Ana",
        "fr",
        None,
    )


def test_each_user_sees_only_their_own_profile(client: TestClient[Any], keys: TestKeys) -> None:
    assert put(client, keys, display_name=NAME, language="it").status_code == 200
    for other in ("tenant_admin", "foreign_staff", "auditor"):
        body = client.get(PATH, headers=keys.header(other)).json()
        assert body["display_name"] == "", other
        assert body["language"] == "en", other


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"display_name": "x" * 101}, "at most 100"),
        ({"display_name": "two\nlines"}, "control characters"),
        ({"language": "klingon"}, "de, fr"),
        ({"language": "de-Latn-CH"}, "not supported"),
        ({"default_knowledge_base": "payroll"}, "existing: handbook"),
    ],
)
def test_an_invalid_profile_is_refused_saying_what_to_fix(
    client: TestClient[Any], keys: TestKeys, body: dict[str, Any], says: str
) -> None:
    response = put(client, keys, **body)
    assert response.status_code == 400, response.text
    assert says in response.json()["detail"]
    assert client.get(PATH, headers=keys.header("staff")).json()["updated_at"] is None


def test_a_knowledge_base_of_another_tenant_is_refused(
    client: TestClient[Any], keys: TestKeys
) -> None:
    # "handbook" exists in tenant default only: globex has none.
    response = put(client, keys, who="foreign_staff", default_knowledge_base="handbook")
    assert response.status_code == 400
    assert "existing: none" in response.json()["detail"]


def test_unknown_fields_and_anonymous_callers_are_refused(
    client: TestClient[Any], keys: TestKeys
) -> None:
    assert put(client, keys, colour="blue").status_code == 400
    assert client.get(PATH).status_code == 401
    assert client.put(PATH, json={"display_name": "x"}).status_code == 401


async def test_the_display_name_stays_in_the_profile_table(
    client: TestClient[Any], keys: TestKeys, database: Database
) -> None:
    assert put(client, keys, display_name=NAME).status_code == 200
    async with database.reading() as connection:
        audit = [str(tuple(r)) for r in await connection.execute(text("SELECT * FROM audit_log"))]
        stored = (await connection.execute(text("SELECT display_name FROM user_profiles"))).all()
    assert [row[0] for row in stored] == [NAME]
    assert not any(NAME in row for row in audit)


def test_languages_accept_regions_and_refuse_the_rest() -> None:
    def language_of(tag: str) -> str:
        return checked_profile(
            display_name="", language=tag, default_knowledge_base=None, knowledge_bases=()
        ).language

    assert [language_of(t) for t in SUPPORTED_LANGUAGES] == list(SUPPORTED_LANGUAGES)
    assert language_of("pt_br") == "pt-BR"
    assert language_of("es-419") == "es-419"
    for bad in ("", "en-", "en-GBR", "zh", "de-CH-x"):
        with pytest.raises(InvalidRequest):
            language_of(bad)


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(InvalidRequest) as raised:
        checked_profile(
            display_name="y" * 200,
            language="xx",
            default_knowledge_base="nope",
            knowledge_bases=["handbook", "hr"],
        )
    assert len(raised.value.extra["problems"]) == 3
    assert "existing: handbook, hr" in raised.value.detail

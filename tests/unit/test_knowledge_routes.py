"""The knowledge-base admin routes: request parsing and error mapping (the service is faked
here; tests/integration/test_knowledge_service.py and the e2e suite run the real one)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from litestar.testing import TestClient

from api.app import create_app
from core.db import Database
from core.errors import InvalidRequest
from core.settings import Settings
from index.base import IngestOutcome, UploadedFile
from tests.fakes import FakeKnowledge, TestKeys, build_services

URL = "/v1/knowledge-bases/handbook/documents"


class RecordingKnowledge(FakeKnowledge):
    def __init__(self) -> None:
        super().__init__()
        self.uploads: list[list[UploadedFile]] = []

    async def upload(
        self, tenant: str, name: str, files: list[UploadedFile], *, actor: str = "system"
    ) -> IngestOutcome:
        if not files:
            raise InvalidRequest("The upload holds no files; send at least one document.")
        self.uploads.append(files)
        return IngestOutcome("v000002-00000000", (), 3, 3, 0, 0.1)


@pytest.fixture
def admin(
    settings: Settings, keys: TestKeys, database: Database
) -> Iterator[tuple[TestClient, RecordingKnowledge]]:
    knowledge = RecordingKnowledge()
    services = build_services(settings, keys, database, knowledge=knowledge)
    with TestClient(app=create_app(services)) as client:
        client.headers.update(keys.header("tenant_admin"))
        yield client, knowledge


def test_every_file_part_is_uploaded(admin: tuple[TestClient, RecordingKnowledge]) -> None:
    client, knowledge = admin
    files = [("files", ("a.md", b"# A")), ("other", ("b.html", b"<h1>B</h1>"))]
    response = client.post(URL, files=files)
    assert response.status_code == 201
    assert response.json()["version"] == "v000002-00000000"
    assert sorted((f.filename, f.data) for f in knowledge.uploads[0]) == [
        ("a.md", b"# A"),
        ("b.html", b"<h1>B</h1>"),
    ]


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({}, 415),
        ({"json": {"files": ["a.md"]}}, 415),
        ({"data": {"name": "a.md"}}, 415),
    ],
)
def test_a_body_that_is_not_a_multipart_upload_is_refused(
    admin: tuple[TestClient, RecordingKnowledge], kwargs: dict[str, object], status: int
) -> None:
    client, knowledge = admin
    response = client.post(URL, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == status
    assert "multipart/form-data" in response.json()["detail"]
    assert response.json()["request_id"]
    assert knowledge.uploads == []


def test_a_multipart_body_without_files_says_so(
    admin: tuple[TestClient, RecordingKnowledge],
) -> None:
    client, _ = admin
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nx\r\n'
        f"--{boundary}--\r\n"
    )
    response = client.post(
        URL,
        content=body.encode(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 400
    assert "no files" in response.json()["detail"]


def test_create_validates_its_body(admin: tuple[TestClient, RecordingKnowledge]) -> None:
    client, _ = admin
    response = client.post("/v1/knowledge-bases", json={"name": "x", "pii_policy": "shred"})
    assert response.status_code == 400
    assert "pii_policy" in response.json()["detail"]
    unknown = client.post("/v1/knowledge-bases", json={"name": "x", "colour": "red"})
    assert unknown.status_code == 400

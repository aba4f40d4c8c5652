"""Knowledge bases end to end in-process: real SQLite and PostgreSQL, MiniLM, FAISS, Presidio.

Each test gets a fresh database (a new PostgreSQL database per test for the PostgreSQL
variant) and its own index folder; the encoder and the PII scanner load once.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.db import Database, kb_chunks, kb_documents, upgrade
from core.errors import Conflict, InvalidRequest
from core.settings import RetrievalSettings, SeedKnowledgeBase, Settings
from index.base import UploadedFile
from index.errors import CorruptDocument, UnknownKnowledgeBase, UnsupportedDocument
from index.knowledge_base import KnowledgeBase
from index.parsing import read_document
from index.service import KnowledgeBaseService
from models.encoder import SentenceEncoder
from models.pii.presidio_scanner import PresidioScanner
from models.store import ModelStore
from serving.clients import LocalSpanFinder
from tests.integration.databases import create_postgres_database, drop_postgres_database

pytestmark = pytest.mark.integration

HANDBOOK = Path(__file__).resolve().parents[2] / "index" / "samples" / "handbook"
ENCODER = "all-minilm-l6-v2"
PG_URL = os.environ.get(
    "ENCLAVE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
PII_DOC = (
    "# Escalations\n\nFor payroll questions write to Maria Fernandes at "
    "maria.fernandes@northwind.example or call +1 415 555 0132. The payroll team sits "
    "in the Lisbon office and answers within two working days.\n"
)


def handbook_file(name: str) -> UploadedFile:
    path = HANDBOOK / name
    return UploadedFile(path.name, path.read_bytes())


@pytest.fixture(scope="module")
def encoder(test_settings: Settings, offline_env: dict[str, str]) -> SentenceEncoder:
    store = ModelStore(test_settings.paths.model_store)
    folder = store.verify([ENCODER])[ENCODER].folder(store.root)
    model = SentenceEncoder(folder)
    model.load()
    return model


@pytest.fixture(scope="module")
def finder(test_settings: Settings, offline_env: dict[str, str]) -> LocalSpanFinder:
    store = ModelStore(test_settings.paths.model_store)
    name = test_settings.pii.spacy_store_name
    scanner = PresidioScanner(store.verify([name])[name].folder(store.root), test_settings.pii)
    scanner.load()
    return LocalSpanFinder(scanner, test_settings.retrieval.ignore_pii_types)


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    pg_name = None
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'enclave.db'}"
    else:
        pg_name, url = await create_postgres_database()
    await asyncio.to_thread(upgrade, url)
    db = Database.from_url(url)
    yield db
    await db.dispose()
    if pg_name is not None:
        await drop_postgres_database(pg_name)


def make_service(
    database: Database,
    encoder: SentenceEncoder,
    root: Path,
    finder: LocalSpanFinder | None = None,
    **settings: object,
) -> KnowledgeBaseService:
    return KnowledgeBaseService(
        database,
        encoder,
        encoder_id=ENCODER,
        root=root,
        settings=RetrievalSettings(**settings),  # type: ignore[arg-type]
        finder=finder,
    )


async def count(database: Database, table: object) -> int:
    async with database.reading() as connection:
        return int((await connection.execute(select(func.count()).select_from(table))).scalar_one())  # type: ignore[arg-type]


async def test_ingest_query_and_catalogue(
    database: Database, encoder: SentenceEncoder, finder: LocalSpanFinder, tmp_path: Path
) -> None:
    service = make_service(database, encoder, tmp_path / "kb", finder)
    await service.create_base("default", "handbook", pii_policy="keep", actor="test")
    files = [
        handbook_file(name)
        for name in ("it-vpn.md", "it-guest-wifi.html", "facilities-parking.txt", "hr-benefits.md")
    ]
    outcome = await service.upload("default", "handbook", files, actor="test")
    assert {d.doc_id for d in outcome.documents} == {
        "it-vpn",
        "it-guest-wifi",
        "facilities-parking",
        "hr-benefits",
    }
    assert all(d.status == "indexed" and d.chunks > 0 for d in outcome.documents)
    assert outcome.embedded == outcome.chunks > 0
    info = await service.get_base("default", "handbook")
    assert (info.documents, info.version) == (4, outcome.version)
    # The SQL catalogue holds one row per chunk of the live version.
    assert info.chunks == outcome.chunks == await count(database, kb_chunks)
    result = await service.retrieve(
        "default", "handbook", "Which VPN profile should I use on hotel wifi?", k=3, min_score=0.2
    )
    assert result.sources[0].doc_id == "it-vpn"
    assert result.version == outcome.version
    wifi = await service.retrieve(
        "default", "handbook", "what is the guest wifi password", k=3, min_score=0.2
    )
    assert wifi.sources[0].doc_id == "it-guest-wifi"
    # The guard's embedding of a question serves the search (one encoder pass per question):
    # given the Wi-Fi question's embedding with the VPN question's text, the search follows
    # the embedding. One made by another encoder is ignored and the text encoded again.
    question = "Which VPN profile should I use on hotel wifi?"
    wifi_vector = encoder.encode(["what is the guest wifi password"])[0].astype("float32")
    for model, expected in ((ENCODER, "it-guest-wifi"), ("another-encoder@9", "it-vpn")):
        found = await service.retrieve(
            "default", "handbook", question, k=3, min_score=0.2,
            embedding=wifi_vector.tobytes(), embedding_model=model,
        )  # fmt: skip
        assert found.sources[0].doc_id == expected
    passage = await service.passage("default", "handbook", result.sources[0].chunk_id)
    assert passage.text == result.sources[0].text


async def test_tenants_never_see_each_other(
    database: Database, encoder: SentenceEncoder, tmp_path: Path
) -> None:
    service = make_service(database, encoder, tmp_path / "kb")
    await service.create_base("acme", "policies")
    await service.upload("acme", "policies", [handbook_file("it-vpn.md")])
    with pytest.raises(UnknownKnowledgeBase):
        await service.get_base("globex", "policies")
    with pytest.raises(UnknownKnowledgeBase):
        await service.retrieve("globex", "policies", "vpn", k=3, min_score=0.0)
    with pytest.raises(UnknownKnowledgeBase):
        await service.upload("globex", "policies", [handbook_file("it-printing.txt")])
    assert await service.list_bases("globex") == []
    # The same name in another tenant is another knowledge base.
    await service.create_base("globex", "policies")
    assert (await service.get_base("globex", "policies")).documents == 0
    with pytest.raises(Conflict):
        await service.create_base("acme", "policies")
    with pytest.raises(InvalidRequest):
        await service.create_base("acme", "Bad Name!")


async def test_a_bad_file_fails_the_upload_and_leaves_nothing(
    database: Database, encoder: SentenceEncoder, tmp_path: Path
) -> None:
    service = make_service(database, encoder, tmp_path / "kb")
    await service.create_base("default", "kb")
    first = await service.upload("default", "kb", [handbook_file("it-vpn.md")])
    good = handbook_file("it-printing.txt")
    bad_uploads = [
        (UploadedFile("broken.pdf", b"%PDF-1.7\n this is not really a pdf"), CorruptDocument),
        (UploadedFile("report.docx", b"PK\x03\x04 zip bytes"), UnsupportedDocument),
        (UploadedFile("latin1.txt", "caf\xe9 menu".encode("latin-1")), CorruptDocument),
        (UploadedFile("empty.md", b""), InvalidRequest),
    ]
    for bad, error in bad_uploads:
        with pytest.raises(error) as caught:
            await service.upload("default", "kb", [good, bad])
        assert bad.filename in caught.value.detail
    info = await service.get_base("default", "kb")
    assert (info.documents, info.version) == (1, first.version)
    assert [d.doc_id for d in await service.list_documents("default", "kb")] == ["it-vpn"]


async def test_pii_policies(
    database: Database, encoder: SentenceEncoder, finder: LocalSpanFinder, tmp_path: Path
) -> None:
    service = make_service(database, encoder, tmp_path / "kb", finder)
    document = UploadedFile("payroll-contacts.md", PII_DOC.encode())
    question = "who do I contact about payroll questions?"
    for policy in ("keep", "redact", "reject"):
        await service.create_base("default", policy, pii_policy=policy)  # type: ignore[arg-type]
        outcome = await service.upload("default", policy, [document])
        (info,) = outcome.documents
        assert info.pii_found.get("EMAIL_ADDRESS") == 1
        assert info.pii_found.get("PERSON") == 1
        assert "LOCATION" not in info.pii_found  # office cities are not personal data
        assert info.pii_action == policy
        hits = (await service.retrieve("default", policy, question, k=3, min_score=0.0)).sources
        text = " ".join(h.text for h in hits)
        if policy == "keep":
            assert info.status == "indexed"
            assert "maria.fernandes@northwind.example" in text
        elif policy == "redact":
            assert info.status == "indexed"
            assert "[EMAIL_ADDRESS]" in text
            assert "[PERSON]" in text
            assert "Maria" not in text
            assert "Lisbon" in text
        else:
            assert info.status == "rejected"
            assert info.chunks == 0
            assert hits == ()
            assert info.status_reason is not None
            assert "1 EMAIL_ADDRESS" in info.status_reason
            assert "maria" not in info.status_reason.lower()
    # Nothing on disk for the redacting and rejecting bases holds the values.
    for name in ("redact", "reject"):
        record = await service._catalogue.get_base("default", name)
        folder = tmp_path / "kb" / record.kb_id
        for path in folder.rglob("*"):
            if path.is_file():
                content = path.read_bytes()
                assert b"maria.fernandes" not in content
                assert b"555 0132" not in content
    listed = await service.list_documents("default", "reject")
    assert [(d.doc_id, d.status) for d in listed] == [("payroll-contacts", "rejected")]


async def test_delete_reupload_and_identical_content(
    database: Database, encoder: SentenceEncoder, tmp_path: Path
) -> None:
    service = make_service(database, encoder, tmp_path / "kb")
    await service.create_base("default", "kb")
    files = [handbook_file("it-vpn.md"), handbook_file("it-printing.txt")]
    await service.upload("default", "kb", files)
    removed = await service.delete_document("default", "kb", "it-vpn")
    assert removed.embedded == 0  # the other document's vectors are read back, not re-embedded
    hits = await service.retrieve("default", "kb", "VPN profile on hotel wifi", k=5, min_score=0)
    assert all(h.doc_id != "it-vpn" for h in hits.sources)
    async with database.reading() as connection:
        docs = (
            await connection.execute(select(func.count()).where(kb_chunks.c.doc_id == "it-vpn"))
        ).scalar_one()
    assert docs == 0
    assert [d.doc_id for d in await service.list_documents("default", "kb")] == ["it-printing"]
    again = await service.upload("default", "kb", [handbook_file("it-vpn.md")])
    assert again.embedded == 0  # identical content: the vectors come from the cache
    copy = UploadedFile("vpn-copy.md", (HANDBOOK / "it-vpn.md").read_bytes())
    assert (await service.upload("default", "kb", [copy])).embedded == 0
    assert await count(database, kb_documents) == 3


async def test_reindex_under_concurrent_queries(
    database: Database, encoder: SentenceEncoder, tmp_path: Path
) -> None:
    service = make_service(database, encoder, tmp_path / "kb")
    await service.create_base("default", "kb")
    names = ["it-vpn.md", "it-printing.txt", "security-phishing.md", "hr-offboarding.txt"]
    await service.upload("default", "kb", [handbook_file(n) for n in names])
    questions = [
        "how do I report a phishing email",
        "which printer queue for colour",
        "VPN on hotel wifi",
        "return my laptop when I leave",
    ]
    seen: list[tuple[str | None, tuple[str, ...]]] = []
    stop = asyncio.Event()

    async def ask(offset: int) -> None:
        n = offset
        while not stop.is_set():
            result = await service.retrieve(
                "default", "kb", questions[n % len(questions)], k=4, min_score=0.0
            )
            seen.append((result.version, tuple(s.chunk_id for s in result.sources)))
            n += 1

    askers = [asyncio.create_task(ask(i)) for i in range(3)]
    versions = set()
    for _ in range(3):
        versions.add((await service.reindex("default", "kb")).version)
        await asyncio.sleep(1.1)  # past the refresh interval
    stop.set()
    await asyncio.gather(*askers)
    assert len(versions) == 3
    assert len(seen) > 10
    assert all(len(chunks) == 4 for _, chunks in seen)
    assert (await service.get_base("default", "kb")).version in versions


async def test_a_second_replica_sees_new_versions_and_repairs_the_catalogue(
    database: Database, encoder: SentenceEncoder, tmp_path: Path
) -> None:
    root = tmp_path / "kb"
    writer = make_service(database, encoder, root)
    reader = make_service(database, encoder, root)
    await writer.create_base("default", "kb")
    await writer.upload("default", "kb", [handbook_file("it-vpn.md")])
    first = await reader.retrieve("default", "kb", "printer queue", k=5, min_score=0.0)
    assert {s.doc_id for s in first.sources} == {"it-vpn"}
    await writer.upload("default", "kb", [handbook_file("it-printing.txt")])
    await asyncio.sleep(1.1)
    later = await reader.retrieve("default", "kb", "printer queue", k=5, min_score=0.0)
    assert later.sources[0].doc_id == "it-printing"
    # A crash between publishing a version and recording it: the next opener repairs it.
    record = await writer._catalogue.get_base("default", "kb")
    kb = KnowledgeBase(root / record.kb_id, encoder, encoder_id=ENCODER)
    kb.add_documents([read_document(HANDBOOK / "security-phishing.md")])
    fresh = make_service(database, encoder, root)
    await fresh.retrieve("default", "kb", "phishing", k=1, min_score=0.0)
    documents = {d.doc_id: d for d in await fresh.list_documents("default", "kb")}
    assert set(documents) == {"it-vpn", "it-printing", "security-phishing"}
    assert (await fresh.get_base("default", "kb")).version == kb.version


async def test_seed_ingests_once(
    database: Database, encoder: SentenceEncoder, finder: LocalSpanFinder, tmp_path: Path
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name in ("it-vpn.md", "company-faq.html", "notes.docx"):
        source = HANDBOOK / name if (HANDBOOK / name).exists() else None
        (folder / name).write_bytes(source.read_bytes() if source else b"ignored")
    service = make_service(
        database,
        encoder,
        tmp_path / "kb",
        finder,
        knowledge_bases={"seeded": {"pii_policy": "keep"}},
    )
    seed = SeedKnowledgeBase(name="seeded", path=folder)
    assert await service.seed([seed]) == ["seeded"]
    assert await service.seed([seed]) == []
    info = await service.get_base("default", "seeded")
    assert (info.documents, info.pii_policy) == (2, "keep")


async def test_a_broken_newer_version_does_not_take_search_down(
    database: Database, encoder: SentenceEncoder, tmp_path: Path
) -> None:
    service = make_service(database, encoder, tmp_path / "kb")
    await service.create_base("default", "kb")
    await service.upload("default", "kb", [handbook_file("it-vpn.md")])
    first = await service.retrieve("default", "kb", "vpn on hotel wifi", k=2, min_score=0.0)
    record = await service._catalogue.get_base("default", "kb")
    (tmp_path / "kb" / record.kb_id / "CURRENT").write_text("v999999-deadbeef\n")
    await asyncio.sleep(1.1)  # past the reload interval
    again = await service.retrieve("default", "kb", "vpn on hotel wifi", k=2, min_score=0.0)
    assert again.version == first.version
    assert [s.chunk_id for s in again.sources] == [s.chunk_id for s in first.sources]

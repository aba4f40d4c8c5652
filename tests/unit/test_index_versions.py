"""Versioned index folders and the knowledge base's swap logic, with a fake vector encoder.

The fake encoder hashes words into a small vector (a bag of words), so searches behave
sensibly and every call is counted; FAISS is real, no model is loaded.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from index.base import Document, Retriever
from index.chunking import ChunkingOptions
from index.errors import IndexUnavailable, InvalidQuery, UnknownDocument
from index.knowledge_base import KnowledgeBase
from index.parsing import MARKDOWN
from index.snapshot import CHUNKS_FILE, INDEX_FILE
from index.store import CURRENT, VersionedFolder

DIM = 64


class HashingEncoder:
    """Bag-of-words vectors from hashed lower-case words; counts the texts it encodes."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        with self._lock:
            self.texts.extend(texts)
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                out[row, hashlib.md5(word.encode()).digest()[0] % DIM] += 1.0
        out += 1e-3
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out


def doc(doc_id: str, topic: str, extra: str = "") -> Document:
    text = (
        f"# {topic.title()} Policy\n\nEverything about {topic} lives here. {extra}\n\n"
        f"## Requests\n\nAsk the {topic} desk through Helm for any {topic} request.\n\n"
        f"## Contacts\n\nWrite to the {topic} mailbox.\n"
    )
    return Document(doc_id, "", f"{doc_id}.md", MARKDOWN, text)


DOCS = [doc("it-vpn", "vpn"), doc("hr-leave", "leave"), doc("it-printing", "printer")]


def open_kb(root: Path, encoder: HashingEncoder, **kwargs: Any) -> KnowledgeBase:
    return KnowledgeBase(root, encoder, encoder_id="hashing-v1", **kwargs)


# VersionedFolder --------------------------------------------------------------------------
def write_payload(payload: str) -> Callable[[Path, str], None]:
    def write(folder: Path, name: str) -> None:
        (folder / "data.txt").write_text(f"{name}:{payload}", encoding="utf-8")

    return write


def test_new_version_is_published_by_the_pointer(tmp_path: Path) -> None:
    folder = VersionedFolder(tmp_path / "kb")
    assert folder.current() is None
    first = folder.build_new_version(write_payload("a"))
    assert folder.current() == first
    assert (tmp_path / "kb" / CURRENT).read_text().strip() == first
    second = folder.build_new_version(write_payload("b"))
    assert folder.current() == second
    assert folder.versions() == [first, second]
    assert (folder.path_of(second) / "data.txt").read_text() == f"{second}:b"


def test_a_failed_build_publishes_nothing_and_leaves_no_staging(tmp_path: Path) -> None:
    folder = VersionedFolder(tmp_path)
    good = folder.build_new_version(write_payload("ok"))

    def explode(path: Path, name: str) -> None:
        (path / "half.bin").write_bytes(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        folder.build_new_version(explode)
    assert folder.current() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CURRENT, good])


def test_old_versions_are_collected_but_never_the_live_one(tmp_path: Path) -> None:
    folder = VersionedFolder(tmp_path, keep=2)
    names = [folder.build_new_version(write_payload(str(i))) for i in range(5)]
    assert folder.versions() == names[-2:]
    assert folder.current() == names[-1]


def test_a_pointer_to_nowhere_is_reported(tmp_path: Path) -> None:
    (tmp_path / CURRENT).write_text("v000009-deadbeef\n")
    with pytest.raises(IndexUnavailable, match="v000009-deadbeef"):
        VersionedFolder(tmp_path).current()


def test_readers_only_ever_see_complete_versions(tmp_path: Path) -> None:
    # keep is large: this checks the swap; collection of old folders is tested above.
    folder = VersionedFolder(tmp_path, keep=100)
    payload = "x" * 200_000
    folder.build_new_version(write_payload(payload))
    stop = threading.Event()
    seen: list[str] = []
    problems: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                name = folder.current()
                assert name is not None
                content = (folder.path_of(name) / "data.txt").read_text()
            except (OSError, AssertionError, IndexUnavailable) as exc:
                problems.append(repr(exc))
                return
            if content != f"{name}:{payload}":
                problems.append(f"{name}: {len(content)} chars")
            seen.append(name)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    for _ in range(15):
        folder.build_new_version(write_payload(payload))
    stop.set()
    for thread in threads:
        thread.join()
    assert problems == []
    assert len(set(seen)) > 1


# KnowledgeBase ----------------------------------------------------------------------------
def test_a_knowledge_base_is_a_retriever_and_finds_the_right_document(tmp_path: Path) -> None:
    kb = open_kb(tmp_path, HashingEncoder())
    assert isinstance(kb, Retriever)
    assert kb.search("vpn") == []  # nothing indexed yet
    report = kb.add_documents(DOCS)
    assert (report.documents, report.chunks) == (3, 9)
    hits = kb.search("printer desk request", k=3)
    assert hits[0].chunk.doc_id == "it-printing"
    assert hits[0].chunk.heading_path == ("Printer Policy", "Requests")
    assert all(a.score >= b.score for a, b in itertools.pairwise(hits))
    assert kb.search("printer desk request", k=3, min_score=0.99) == []


def test_the_index_survives_a_restart(tmp_path: Path) -> None:
    kb = open_kb(tmp_path, HashingEncoder())
    kb.add_documents(DOCS)
    before = kb.search("leave mailbox", k=4)
    encoder = HashingEncoder()
    reopened = open_kb(tmp_path, encoder)
    assert reopened.version == kb.version
    assert [d.doc_id for d in reopened.documents()] == ["hr-leave", "it-printing", "it-vpn"]
    assert reopened.search("leave mailbox", k=4) == before
    assert len(encoder.texts) == 1  # just the query: nothing was re-embedded


def test_delete_removes_the_document_and_its_vectors(tmp_path: Path) -> None:
    encoder = HashingEncoder()
    kb = open_kb(tmp_path, encoder)
    kb.add_documents(DOCS)
    old = kb.snapshot
    embedded = len(encoder.texts)
    report = kb.delete_document("it-vpn")
    assert report.encoded == 0  # the rest was read back from the index, not re-embedded
    assert len(encoder.texts) == embedded
    assert all(c.doc_id != "it-vpn" for c in kb.snapshot.chunks)
    assert all(h.chunk.doc_id != "it-vpn" for h in kb.search("vpn desk request", k=10))
    assert old.vectors is not None
    assert len(old.vectors) == 9
    assert open_kb(tmp_path, encoder).search("vpn", k=10) == kb.search("vpn", k=10)
    with pytest.raises(UnknownDocument, match="it-vpn"):
        kb.delete_document("it-vpn")


def test_identical_content_is_embedded_once(tmp_path: Path) -> None:
    encoder = HashingEncoder()
    kb = open_kb(tmp_path, encoder)
    first = kb.add_documents([DOCS[0]])
    assert first.encoded == 3
    copy = Document("it-vpn-copy", "", "copy.md", MARKDOWN, DOCS[0].text)
    second = kb.add_documents([copy])
    assert second.encoded == 0
    assert len(encoder.texts) == 3
    edited = doc("it-vpn", "vpn", extra="Now with a new sentence.")
    third = kb.add_documents([edited])
    assert third.encoded == 1  # only the changed intro
    assert kb.reindex().encoded == 0


def test_reindex_with_new_chunking_publishes_a_new_version(tmp_path: Path) -> None:
    encoder = HashingEncoder()
    long_doc = Document(
        "long", "", "long.md", MARKDOWN, "# Long\n\n" + " ".join(f"w{i}." for i in range(400))
    )
    kb = open_kb(tmp_path, encoder)
    kb.add_documents([*DOCS, long_doc])
    before = {c.chunk_id for c in kb.snapshot.chunks}
    version = kb.version
    kb.reindex(ChunkingOptions(target_words=80, max_words=100, overlap_words=10))
    assert kb.version != version
    assert {c.chunk_id for c in kb.snapshot.chunks} != before
    # Reopening with other options re-chunks; with none, keeps what is stored.
    assert open_kb(tmp_path, encoder).snapshot.chunking.max_words == 100


def test_another_encoder_triggers_a_full_reembedding(tmp_path: Path) -> None:
    open_kb(tmp_path, HashingEncoder()).add_documents(DOCS)
    encoder = HashingEncoder()
    kb = KnowledgeBase(tmp_path, encoder, encoder_id="hashing-v2")
    assert len(encoder.texts) == 9
    assert kb.snapshot.encoder_id == "hashing-v2"


def test_an_unfinished_build_is_removed_on_open(tmp_path: Path) -> None:
    kb = open_kb(tmp_path, HashingEncoder())
    kb.add_documents(DOCS)
    (tmp_path / f".staging-v000099-{'0' * 8}").mkdir()
    (tmp_path / f".staging-v000099-{'0' * 8}" / INDEX_FILE).write_bytes(b"junk")
    reopened = open_kb(tmp_path, HashingEncoder())
    assert reopened.version == kb.version
    assert not any(p.name.startswith(".staging-") for p in tmp_path.iterdir())


def test_a_damaged_version_is_reported_not_half_read(tmp_path: Path) -> None:
    kb = open_kb(tmp_path, HashingEncoder())
    kb.add_documents(DOCS)
    (tmp_path / kb.version / CHUNKS_FILE).write_text("{not json")
    with pytest.raises(IndexUnavailable, match="re-index"):
        open_kb(tmp_path, HashingEncoder())


def test_batched_queries_match_single_ones(tmp_path: Path) -> None:
    encoder = HashingEncoder()
    kb = open_kb(tmp_path, encoder)
    kb.add_documents(DOCS)
    queries = ["vpn desk", "leave mailbox", "printer request"]
    calls = len(encoder.texts)
    batch = kb.query_batch(queries, k=4)
    assert len(encoder.texts) == calls + 3
    assert batch == [kb.query(q, k=4) for q in queries]
    assert kb.query_batch([], k=4) == []
    with pytest.raises(InvalidQuery):
        kb.query_batch(["vpn", " "])


@pytest.mark.parametrize(("query", "k"), [("   ", 5), ("vpn", 0), ("vpn", 101)])
def test_bad_queries_are_refused(tmp_path: Path, query: str, k: int) -> None:
    kb = open_kb(tmp_path, HashingEncoder())
    with pytest.raises(InvalidQuery):
        kb.search(query, k=k)


def test_searches_during_reindexing_each_see_one_version(tmp_path: Path) -> None:
    kb = open_kb(tmp_path, HashingEncoder())
    kb.add_documents([doc(f"doc-{i}", topic) for i, topic in enumerate(["vpn", "leave", "desk"])])
    options = [
        ChunkingOptions(),
        ChunkingOptions(target_words=8, max_words=10, overlap_words=2),
    ]
    chunk_ids = {kb.version: {c.chunk_id for c in kb.snapshot.chunks}}
    stop = threading.Event()
    results: list[tuple[str, frozenset[str]]] = []
    errors: list[BaseException] = []

    def searcher() -> None:
        try:
            while not stop.is_set():
                result = kb.query("desk request mailbox", k=6)
                results.append((result.version, frozenset(h.chunk.chunk_id for h in result.hits)))
        except BaseException as exc:  # reported below, with the thread's own traceback
            errors.append(exc)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for thread in threads:
        thread.start()
    for round_ in range(12):
        kb.reindex(options[round_ % 2])
        chunk_ids[kb.version] = {c.chunk_id for c in kb.snapshot.chunks}
    stop.set()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len({version for version, _ in results}) > 1
    for version, ids in results:
        assert ids <= chunk_ids[version]

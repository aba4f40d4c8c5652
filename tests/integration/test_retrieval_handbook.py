"""Retrieval over the sample handbook with the real MiniLM encoder and real FAISS.

The encoder loads once for the module; each test builds the knowledge base it needs in its
own folder. Run with ``-s`` to see the evaluation numbers.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from core.settings import Settings
from index.base import Document
from index.chunking import ChunkingOptions
from index.knowledge_base import KnowledgeBase
from index.parsing import read_document
from models.encoder import SentenceEncoder
from models.store import ModelStore

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "index" / "samples"
ENCODER_NAME = "all-minilm-l6-v2"


@dataclass(frozen=True)
class Question:
    qid: str
    question: str
    relevant: frozenset[str]
    answer_hint: str


class CountingEncoder:
    """The real encoder, counting the texts it is asked to embed."""

    def __init__(self, inner: SentenceEncoder) -> None:
        self.inner = inner
        self.texts = 0
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        with self._lock:
            self.texts += len(texts)
        return self.inner.encode(texts)


@pytest.fixture(scope="module")
def encoder(test_settings: Settings, offline_env: dict[str, str]) -> CountingEncoder:
    store = ModelStore(test_settings.paths.model_store)
    folder = store.verify([ENCODER_NAME])[ENCODER_NAME].folder(store.root)
    inner = SentenceEncoder(folder)
    inner.load()
    return CountingEncoder(inner)


@pytest.fixture(scope="module")
def documents() -> list[Document]:
    return [read_document(path) for path in sorted((SAMPLES / "handbook").iterdir())]


@pytest.fixture(scope="module")
def questions() -> list[Question]:
    lines = (SAMPLES / "handbook_eval.jsonl").read_text(encoding="utf-8").splitlines()
    return [
        Question(item["id"], item["question"], frozenset(item["relevant"]), item["answer_hint"])
        for item in map(json.loads, filter(None, lines))
    ]


@pytest.fixture(scope="module")
def handbook(
    tmp_path_factory: pytest.TempPathFactory, encoder: CountingEncoder, documents: list[Document]
) -> KnowledgeBase:
    kb = KnowledgeBase(tmp_path_factory.mktemp("handbook"), encoder, encoder_id=ENCODER_NAME)
    report = kb.add_documents(documents)
    print(
        f"\ningested {report.documents} documents: {report.chunks} chunks, "
        f"{report.encoded} embedded, in {report.seconds:.1f} s"
    )
    return kb


def new_kb(root: Path, encoder: CountingEncoder, documents: list[Document]) -> KnowledgeBase:
    kb = KnowledgeBase(root, encoder, encoder_id=ENCODER_NAME)
    kb.add_documents(documents)
    return kb


def test_the_whole_handbook_is_ingested(handbook: KnowledgeBase) -> None:
    snapshot = handbook.snapshot
    assert len(snapshot.documents) == 32
    assert {c.doc_id for c in snapshot.chunks} == set(snapshot.documents)
    assert len(snapshot.chunks) >= 32 * 4
    assert snapshot.vectors is not None
    assert len(snapshot.vectors) == len(snapshot.chunks)


def test_recall_at_5_and_mrr_over_the_evaluation_questions(
    handbook: KnowledgeBase, questions: list[Question]
) -> None:
    assert len(questions) == 135
    found_at_5 = 0
    hint_in_context = 0
    reciprocal_ranks: list[float] = []
    misses: list[str] = []
    # One batched encoder call for all questions; spot-check that it matches single searches.
    results = handbook.query_batch([q.question for q in questions], k=10)
    assert len({result.version for result in results}) == 1
    for question, result in list(zip(questions, results, strict=True))[::20]:
        single = handbook.search(question.question, k=10)
        assert single[0].chunk == result.hits[0].chunk
        assert [h.score for h in single] == pytest.approx([h.score for h in result.hits], abs=1e-3)
    for question, result in zip(questions, results, strict=True):
        hits = result.hits
        doc_ids = [hit.chunk.doc_id for hit in hits]
        rank = next((i + 1 for i, d in enumerate(doc_ids) if d in question.relevant), None)
        reciprocal_ranks.append(1.0 / rank if rank else 0.0)
        if rank is not None and rank <= 5:
            found_at_5 += 1
        else:
            misses.append(f"{question.qid} {question.question!r} -> {doc_ids[:5]}")
        context = " ".join(hit.chunk.text for hit in hits[:5]).lower()
        hint_in_context += question.answer_hint.lower() in context
    recall = found_at_5 / len(questions)
    mrr = sum(reciprocal_ranks) / len(questions)
    print(
        f"\nretrieval over {len(questions)} questions: recall@5={recall:.3f} MRR@10={mrr:.3f} "
        f"answer hint in top-5 context={hint_in_context / len(questions):.3f}"
    )
    print("misses:\n  " + "\n  ".join(misses))
    assert recall >= 0.90, misses
    assert mrr >= 0.75


def test_reindexing_under_concurrent_queries(
    tmp_path: Path, encoder: CountingEncoder, documents: list[Document], questions: list[Question]
) -> None:
    chosen = {"it-vpn", "it-printing", "it-guest-wifi", "security-phishing", "hr-offboarding"}
    kb = new_kb(tmp_path, encoder, [d for d in documents if d.doc_id in chosen])
    asked = [q.question for q in questions if q.relevant & chosen]
    small = ChunkingOptions(target_words=40, max_words=50, overlap_words=10)
    chunk_ids = {kb.version: frozenset(c.chunk_id for c in kb.snapshot.chunks)}
    seen: dict[tuple[str, str], set[tuple[str, ...]]] = {}
    errors: list[BaseException] = []
    stop = threading.Event()
    lock = threading.Lock()

    def ask(offset: int) -> None:
        try:
            n = offset
            while not stop.is_set():
                question = asked[n % len(asked)]
                n += 1
                result = kb.query(question, k=5)
                with lock:
                    seen.setdefault((result.version, question), set()).add(
                        tuple(h.chunk.chunk_id for h in result.hits)
                    )
        except BaseException as exc:  # collected and asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(i * 7,)) for i in range(3)]
    for thread in threads:
        thread.start()
    try:
        # Only the first switch embeds anything: later ones find every vector in the cache.
        for options in (small, ChunkingOptions(), small, ChunkingOptions(), small):
            kb.reindex(options)
            chunk_ids[kb.version] = frozenset(c.chunk_id for c in kb.snapshot.chunks)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == []
    assert len({version for version, _ in seen}) >= 2
    for (version, question), answers in seen.items():
        # One version, one answer: the same question on the same snapshot never mixes versions.
        assert len(answers) == 1, (version, question, answers)
        assert set(next(iter(answers))) <= chunk_ids[version]


def test_a_deleted_document_no_longer_comes_back(
    tmp_path: Path, encoder: CountingEncoder, documents: list[Document], questions: list[Question]
) -> None:
    target = "it-vpn"
    kept = {"security-travel-devices", "it-laptop-setup", "hr-remote-work"}
    kb = new_kb(tmp_path, encoder, [d for d in documents if d.doc_id in kept | {target}])
    about_target = [q.question for q in questions if target in q.relevant]
    assert len(about_target) >= 3
    assert all(target in {h.chunk.doc_id for h in kb.search(q, k=5)} for q in about_target)
    calls = encoder.texts
    report = kb.delete_document(target)
    assert report.encoded == 0
    assert encoder.texts == calls  # the others' vectors were read back, not re-embedded
    assert all(c.doc_id != target for c in kb.snapshot.chunks)
    assert all(h.chunk.doc_id != target for q in about_target for h in kb.search(q, k=10))
    reopened = KnowledgeBase(tmp_path, encoder, encoder_id=ENCODER_NAME)
    assert target not in reopened.snapshot.documents
    assert all(h.chunk.doc_id != target for q in about_target for h in reopened.search(q, k=10))


def test_identical_content_is_embedded_once(
    tmp_path: Path, encoder: CountingEncoder, documents: list[Document]
) -> None:
    original = next(d for d in documents if d.doc_id == "hr-remote-work")
    kb = new_kb(tmp_path, encoder, [original])
    chunks = len(kb.snapshot.chunks)
    calls = encoder.texts
    copy = Document("hr-remote-work-copy", "", "copy.md", original.media_type, original.text)
    report = kb.add_documents([copy])
    assert report.chunks == 2 * chunks
    assert report.encoded == 0
    assert encoder.texts == calls
    assert kb.reindex().encoded == 0
    assert encoder.texts == calls

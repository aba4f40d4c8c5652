"""Grounded answers and knowledge-base administration through the running stack."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from tests.e2e.stack import RunningStack, replica_processes

Auth = Callable[[str], dict[str, str]]

pytestmark = pytest.mark.e2e

HANDBOOK = Path(__file__).resolve().parents[2] / "index" / "samples" / "handbook"


def lineage_of(completion: object) -> dict:  # type: ignore[type-arg]
    return (getattr(completion, "model_extra", None) or {})["enclave"]


def test_the_sample_handbook_was_ingested_at_start(stack: RunningStack, auth: Auth) -> None:
    response = httpx.get(
        f"{stack.base_url}/v1/knowledge-bases/handbook", headers=auth("staff"), timeout=10
    )
    assert response.status_code == 200, response.text
    info = response.json()
    assert info["documents"] == len(list(HANDBOOK.iterdir()))
    assert info["chunks"] > info["documents"]
    assert info["pii_policy"] == "keep"


def test_a_handbook_question_cites_the_right_document(client: OpenAI, model_name: str) -> None:
    completion = client.chat.completions.create(
        model=model_name,
        messages=[{"role": "user", "content": "Which VPN profile should I use on hotel wifi?"}],
        max_tokens=48,
        temperature=0,
    )
    assert completion.choices[0].message.content
    lineage = lineage_of(completion)
    assert lineage["retrieval"] == "ok"
    sources = lineage["sources"]
    assert sources, lineage
    assert sources[0]["document_id"] == "it-vpn"
    assert {"document_id", "title", "chunk_id", "score", "number"} <= set(sources[0])
    assert lineage["retrieval_detail"]["chunk_ids"] == [s["chunk_id"] for s in sources]


def test_streamed_answer_ends_with_its_sources(client: OpenAI, model_name: str) -> None:
    stream = client.chat.completions.create(
        model=model_name,
        messages=[{"role": "user", "content": "How many days of parental leave do I get?"}],
        max_tokens=32,
        temperature=0,
        stream=True,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    last = lineage_of(chunks[-1])
    assert last["retrieval"] == "ok"
    assert "hr-parental-leave" in [s["document_id"] for s in last["sources"]]


def test_small_talk_is_answered_without_documents(client: OpenAI, model_name: str) -> None:
    completion = client.chat.completions.create(
        model=model_name,
        messages=[{"role": "user", "content": "Hi there, how are you today?"}],
        max_tokens=16,
    )
    lineage = lineage_of(completion)
    assert lineage["retrieval"] == "skipped"
    assert lineage["sources"] == []


def test_a_failing_retriever_degrades_the_answer_not_the_chat(
    client: OpenAI, model_name: str, stack: RunningStack
) -> None:
    # The retriever replica stops answering (frozen, as a hung process would be): past
    # retrieval.timeout_s the answer goes on without documents and says so.
    (replica,) = replica_processes(stack, "retriever")
    replica.send_signal(signal.SIGSTOP)
    try:
        completion = client.chat.completions.create(
            model=model_name,
            messages=[{"role": "user", "content": "How do I connect to the VPN?"}],
            max_tokens=24,
        )
        assert completion.choices[0].message.content
        lineage = lineage_of(completion)
        assert lineage["retrieval"] == "degraded"
        assert "no answer within" in lineage["retrieval_detail"]["reason"]
        assert lineage["sources"] == []
        assert lineage["engine"] == "vllm"
    finally:
        replica.send_signal(signal.SIGCONT)
    healed = client.chat.completions.create(
        model=model_name,
        messages=[{"role": "user", "content": "How do I connect to the VPN?"}],
        max_tokens=8,
    )
    assert lineage_of(healed)["retrieval"] == "ok"


def test_knowledge_base_admin_api(
    client: OpenAI, model_name: str, stack: RunningStack, auth: Auth
) -> None:
    api = f"{stack.base_url}/v1/knowledge-bases"
    admin = httpx.Client(headers=auth("tenant_admin"), timeout=120)
    created = admin.post(api, json={"name": "onboarding", "pii_policy": "redact"}, timeout=10)
    assert created.status_code == 201, created.text
    assert admin.post(api, json={"name": "onboarding"}, timeout=10).status_code == 409
    files = [
        ("files", ("hr-onboarding.md", (HANDBOOK / "hr-onboarding.md").read_bytes())),
        ("files", ("it-guest-wifi.html", (HANDBOOK / "it-guest-wifi.html").read_bytes())),
    ]
    uploaded = admin.post(f"{api}/onboarding/documents", files=files, timeout=120)
    assert uploaded.status_code == 201, uploaded.text
    statuses = {d["doc_id"]: d for d in uploaded.json()["documents"]}
    assert statuses["hr-onboarding"]["status"] == "indexed"
    assert statuses["it-guest-wifi"]["pii_action"] == "redact"
    # A knowledge base that rejects personal data reports the document and why.
    assert admin.post(api, json={"name": "strict", "pii_policy": "reject"}).status_code == 201
    contacts = b"# Contacts\n\nAsk Joanna Kowalski at joanna.kowalski@northwind.example.\n"
    strict = admin.post(
        f"{api}/strict/documents", files=[("files", ("contacts.md", contacts))], timeout=60
    )
    assert strict.status_code == 201, strict.text
    (rejected,) = strict.json()["documents"]
    assert rejected["status"] == "rejected"
    assert "EMAIL_ADDRESS" in rejected["status_reason"]
    assert "joanna" not in json.dumps(strict.json()).lower()
    assert admin.delete(f"{api}/strict", timeout=30).status_code == 204
    # A corrupt file fails the whole upload with a problem naming it; nothing is added.
    bad = [
        ("files", ("it-printing.txt", (HANDBOOK / "it-printing.txt").read_bytes())),
        ("files", ("scan.pdf", b"%PDF-1.4 garbage")),
    ]
    refused = admin.post(f"{api}/onboarding/documents", files=bad, timeout=60)
    assert refused.status_code == 400, refused.text
    problem = refused.json()
    assert "scan.pdf" in problem["detail"]
    assert problem["request_id"]
    assert refused.headers["content-type"].startswith("application/problem+json")
    unsupported = admin.post(
        f"{api}/onboarding/documents", files=[("files", ("a.docx", b"PK"))], timeout=60
    )
    assert unsupported.status_code == 415
    listed = admin.get(f"{api}/onboarding/documents", timeout=10).json()["data"]
    assert sorted(d["doc_id"] for d in listed) == ["hr-onboarding", "it-guest-wifi"]
    # The new knowledge base answers a chat that names it.
    completion = client.chat.completions.create(
        model=model_name,
        messages=[{"role": "user", "content": "What is the guest wifi network called?"}],
        max_tokens=24,
        extra_body={"knowledge_base": "onboarding"},
    )
    sources = lineage_of(completion)["sources"]
    assert sources[0]["document_id"] == "it-guest-wifi"
    chunk_id = sources[0]["chunk_id"].replace("#", "%23")
    passage = admin.get(f"{api}/onboarding/passages/{chunk_id}", timeout=10)
    assert passage.status_code == 200, passage.text
    assert passage.json()["doc_id"] == "it-guest-wifi"
    # Delete a document, re-index, delete the knowledge base.
    deleted = admin.delete(f"{api}/onboarding/documents/it-guest-wifi", timeout=60)
    assert deleted.status_code == 200, deleted.text
    assert admin.post(f"{api}/onboarding/reindex", timeout=60).status_code == 200
    assert admin.delete(f"{api}/onboarding", timeout=30).status_code == 204
    gone = admin.post(
        f"{stack.base_url}/v1/chat/completions",
        json={
            "model": model_name,
            "messages": [{"role": "user", "content": "guest wifi?"}],
            "knowledge_base": "onboarding",
        },
        timeout=30,
    )
    assert gone.status_code == 404
    assert "onboarding" in gone.json()["detail"]

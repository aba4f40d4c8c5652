"""Equal work for the raw engine: the prompt Enclave's engine received, rebuilt per question.

Enclave puts its system prompt and the documents it retrieved for a question into one system
message. A first pass through Enclave (one token per question) reads which passages each
question retrieved (``enclave.sources``) and how many prompt tokens the engine got; the raw
server then receives, per question, the same system message rendered by the same code
(``core.prompts.system_message``) with the same passages. The benchmark checks the result:
both sides' ``usage.prompt_tokens`` must agree per question.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from core.prompts import EffectivePrompt, system_message

__all__ = ["Grounded", "probe_questions", "raw_messages"]


@dataclass(frozen=True, slots=True)
class Grounded:
    """What Enclave did with one question: its decision, passages and prompt tokens."""

    question: str
    decision: str
    engine: str | None
    prompt_tokens: int
    prompt_version: str
    documents: tuple[dict[str, Any], ...] = field(default=())

    @property
    def generated(self) -> bool:
        """Whether an engine answered (a refused or blocked question has a canned reply)."""
        return self.engine is not None


def probe_questions(
    base_url: str, api_key: str, model: str, questions: Sequence[str]
) -> dict[str, Grounded]:
    """Ask each question once (one output token) and fetch the passages it retrieved."""
    headers = {"Authorization": f"Bearer {api_key}"}
    found: dict[str, Grounded] = {}
    with httpx.Client(base_url=base_url, headers=headers, timeout=120.0) as client:
        for question in dict.fromkeys(questions):
            response = client.post(
                "/v1/chat/completions",
                json={
                    "model": model,
                    "messages": [{"role": "user", "content": question}],
                    "max_tokens": 1,
                    "temperature": 0,
                },
            )
            response.raise_for_status()
            body = response.json()
            lineage = body["enclave"]
            documents = []
            for source in lineage.get("sources") or ():
                kb, chunk = (quote(source[k], safe="") for k in ("knowledge_base", "chunk_id"))
                passage = client.get(f"/v1/knowledge-bases/{kb}/passages/{chunk}")
                passage.raise_for_status()
                text = passage.json()
                documents.append(
                    {
                        "number": source["number"],
                        "title": text["title"],
                        "heading_path": list(text["heading_path"]),
                        "text": text["text"],
                        "doc_id": text["doc_id"],
                    }
                )
            found[question] = Grounded(
                question=question,
                decision=lineage["decision"],
                engine=lineage.get("engine"),
                prompt_tokens=int(body["usage"]["prompt_tokens"]),
                prompt_version=lineage.get("prompt_version", ""),
                documents=tuple(documents),
            )
    return found


def raw_messages(
    prompt: EffectivePrompt, grounded: Grounded, *, canary: str, tenant: str = "default"
) -> tuple[dict[str, str], ...]:
    """The chat the raw server gets for a question: Enclave's system message, then the
    question."""
    values = {
        "documents": list(grounded.documents),
        "today": datetime.now(UTC).date().isoformat(),
        "tenant": tenant,
        "language": "en",
        "canary": canary,
    }
    return (
        {"role": "system", "content": system_message(prompt, values)},
        {"role": "user", "content": grounded.question},
    )

"""How often the quote of the best source states the handbook answer, per slice.

The retriever quotes the sentences closest to the question of its best source
(``index.quotes``: among the ``retrieval.top_k`` passages, the one whose closest sentence,
blended with its retrieval score, answers best). This asks every handbook question of a
knowledge base built from the sample handbook with the real MiniLM encoder (no language
model, no stack) and judges each quote with the eval's hint rule
(``serving.ops.eval_scoring.states_hint``), on the tuning and the held-back slice apart; also
how often the hint is anywhere in the quoted passage, and in the retriever's first passage.

    python -m benchmarks.quote_bench                      # builds a knowledge base (minutes)
    python -m benchmarks.quote_bench --kb-dir DIR         # reuse one built before into DIR

The questions are asked as written; the stack asks with the PII-scrubbed question, which for
these questions is mostly the same text.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENCODER = "all-minilm-l6-v2"


def main(argv: list[str] | None = None) -> int:
    """Print the quote figures per slice as a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb-dir", type=Path, help="knowledge base folder to build or reuse")
    args = parser.parse_args(argv)

    from core.settings import load_settings
    from serving.runtime_env import offline_environment

    settings = load_settings(config_dir=ROOT, profile=os.environ.get("ENCLAVE_PROFILE", "test"))
    os.environ.update(offline_environment(settings))
    import tempfile

    from index.knowledge_base import KnowledgeBase
    from index.parsing import read_document
    from index.quotes import QuoteFinder
    from models.encoder import SentenceEncoder
    from models.store import ModelStore
    from serving.ops.eval_scoring import held_back, states_hint

    store = ModelStore(settings.paths.model_store)
    encoder = SentenceEncoder(store.verify([ENCODER])[ENCODER].folder(store.root))
    encoder.load()
    folder = args.kb_dir or Path(tempfile.mkdtemp(prefix="quote-bench-"))
    kb = KnowledgeBase(folder, encoder, encoder_id=ENCODER)
    if kb.snapshot.vectors is None:
        samples = ROOT / "index" / "samples"
        kb.add_documents([read_document(p) for p in sorted((samples / "handbook").iterdir())])
    lines = (ROOT / "index" / "samples" / "handbook_eval.jsonl").read_text().splitlines()
    cases = [json.loads(line) for line in lines if line.strip()]
    top_k = settings.retrieval.top_k
    results = kb.query_batch([c["question"] for c in cases], k=top_k)
    finder = QuoteFinder(encoder)
    rows: dict[str, list[tuple[bool, bool, bool]]] = {"tuning": [], "held-back": []}
    for case, result in zip(cases, results, strict=True):
        hint = case["answer_hint"]
        passages = [(hit.chunk.text, hit.score) for hit in result.hits]
        best, quote = finder.best_source(case["question"], passages)
        quoted = passages[best][0] if passages else ""
        first = passages[0][0] if passages else ""
        slice_ = "held-back" if held_back(case["id"]) else "tuning"
        rows[slice_].append(
            (states_hint(quote.text, hint), states_hint(quoted, hint), states_hint(first, hint))
        )
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(f"top_k: {top_k}")
    print(
        "| slice | cases | quote states the hint | quoted passage states it "
        "| first passage states it |"
    )
    print("|---|---:|---:|---:|---:|")
    for slice_, flags in rows.items():
        share = [sum(f[i] for f in flags) / len(flags) for i in range(3)]
        print(f"| {slice_} | {len(flags)} | {share[0]:.3f} | {share[1]:.3f} | {share[2]:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

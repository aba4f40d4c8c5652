"""How often the quote of the best source states the handbook answer, per slice.

The retriever quotes the sentences of its best source closest to the question
(``index.quotes``). This asks every handbook question of a knowledge base built from the
sample handbook with the real MiniLM encoder (no language model, no stack) and judges each
quote with the eval's hint rule (``serving.ops.eval_scoring.states_hint``), on the tuning and
the held-back slice apart; also how often the hint is anywhere in the best passage (what a
quote of that passage can reach at most).

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
    from index.quotes import best_quote
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
    results = kb.query_batch([c["question"] for c in cases], k=1)
    rows: dict[str, list[tuple[bool, bool]]] = {"tuning": [], "held-back": []}
    for case, result in zip(cases, results, strict=True):
        passage = result.hits[0].chunk.text if result.hits else ""
        quote = best_quote(encoder, case["question"], passage) if passage else ""
        slice_ = "held-back" if held_back(case["id"]) else "tuning"
        hint = case["answer_hint"]
        rows[slice_].append((states_hint(quote, hint), states_hint(passage, hint)))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print("| slice | cases | quote states the hint | best passage states the hint |")
    print("|---|---:|---:|---:|")
    for slice_, flags in rows.items():
        quoted = sum(q for q, _ in flags) / len(flags)
        passage_share = sum(p for _, p in flags) / len(flags)
        print(f"| {slice_} | {len(flags)} | {quoted:.3f} | {passage_share:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""PII scanner quality: false positives on questions without personal data, recall on the
labelled corpus — without and with the tenant's places (derived from its documents).

    python -m benchmarks.pii_quality [--json]

* False positives: the handbook eval questions (``index/samples/handbook_eval.jsonl``) hold
  no personal data; a question counts when the scanner found anything in it.
* Recall/precision per entity type on ``models/pii/data/pii_corpus.jsonl`` (a gold span is
  found when a found span of the same type overlaps it).
* "with places": the places the handbook documents name (``index.places``) are the
  tenant's allow-list, applied as the guard stage applies it (``models.pii.places``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.report import git_commit, machine_info
from core.settings import load_settings
from index.parsing import document_from_bytes, media_type_of
from index.places import places_named
from models.pii.base import PIISpan, ScanResult
from models.pii.places import PlaceAllowList
from models.pii.presidio_scanner import PresidioScanner
from models.store import ModelStore
from serving.runtime_env import offline_environment

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ROOT / "index" / "samples" / "handbook_eval.jsonl"
HANDBOOK = ROOT / "index" / "samples" / "handbook"
CORPUS = ROOT / "models" / "pii" / "data" / "pii_corpus.jsonl"

Spans = list[tuple[PIISpan, ...]]


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def handbook_places(scanner: PresidioScanner) -> list[str]:
    """The places the sample handbook's documents name, as ``enclave kb places`` finds them."""
    texts = [
        document_from_bytes(
            path.read_bytes(), doc_id=path.stem, media_type=media_type_of(path), source=path.name
        ).text
        for path in sorted(HANDBOOK.iterdir())
    ]
    results = scanner.scan(texts)
    spans = [[(s.start, s.end, s.entity_type) for s in r.pii] for r in results]
    return [place.name for place in places_named(texts, spans)]


def _allowed(texts: Sequence[str], results: Sequence[ScanResult], places: PlaceAllowList) -> Spans:
    return [places.keep_protected(t, r.pii) for t, r in zip(texts, results, strict=True)]


def false_positives(texts: Sequence[str], spans: Spans) -> dict[str, Any]:
    """Questions with any finding, and what was found (type and text: none of it is PII)."""
    flagged = [
        {"question": t, "found": [[t[s.start : s.end], s.entity_type] for s in found]}
        for t, found in zip(texts, spans, strict=True)
        if found
    ]
    return {
        "questions": len(texts),
        "flagged": len(flagged),
        "rate": len(flagged) / len(texts),
        "examples": flagged,
    }


def corpus_scores(rows: Sequence[dict[str, Any]], spans: Spans) -> dict[str, dict[str, float]]:
    """Recall and precision per gold entity type."""
    tp, fn, fp = Counter[str](), Counter[str](), Counter[str]()
    for row, found in zip(rows, spans, strict=True):
        gold = {(s["start"], s["end"], s["label"]) for s in row["spans"]}
        seen = {(s.start, s.end, s.entity_type) for s in found}
        for g in gold:
            hit = any(f[2] == g[2] and g[0] < f[1] and f[0] < g[1] for f in seen)
            (tp if hit else fn)[g[2]] += 1
        for f in seen:
            if not any(g[2] == f[2] and g[0] < f[1] and f[0] < g[1] for g in gold):
                fp[f[2]] += 1
    return {
        label: {
            "recall": round(tp[label] / (tp[label] + fn[label]), 3),
            "precision": round(tp[label] / max(1, tp[label] + fp[label]), 3),
        }
        for label in sorted(set(tp) | set(fn))
    }


def measure() -> dict[str, Any]:
    """Every figure of this benchmark, in one document."""
    settings = load_settings(config_dir=ROOT, profile="test")
    os.environ.update(offline_environment(settings))
    store = ModelStore(settings.paths.model_store)
    name = settings.pii.spacy_store_name
    scanner = PresidioScanner(store.verify([name])[name].folder(store.root), settings.pii)
    started = time.perf_counter()
    places = handbook_places(scanner)
    allow = PlaceAllowList(places)
    questions = [row["question"] for row in _rows(QUESTIONS)]
    question_scans = scanner.scan(questions)
    corpus = _rows(CORPUS)
    corpus_texts = [row["text"] for row in corpus]
    corpus_scans = scanner.scan(corpus_texts)
    none = PlaceAllowList()
    return {
        "commit": git_commit(ROOT),
        "machine": machine_info(),
        "seconds": round(time.perf_counter() - started, 1),
        "places": places,
        "handbook_questions": {
            "without_places": false_positives(questions, _allowed(questions, question_scans, none)),
            "with_places": false_positives(questions, _allowed(questions, question_scans, allow)),
        },
        "corpus": {
            "without_places": corpus_scores(corpus, _allowed(corpus_texts, corpus_scans, none)),
            "with_places": corpus_scores(corpus, _allowed(corpus_texts, corpus_scans, allow)),
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Print the figures (a table, or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the whole document")
    args = parser.parse_args(argv)
    result = measure()
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    machine = result["machine"]
    print(
        f"commit {result['commit']}, {machine.get('cpu_model', '?')}, "
        f"{machine.get('usable_cpus', '?')} cores, {result['seconds']} s"
    )
    print(f"places derived from the handbook: {len(result['places'])}")
    for key, figures in result["handbook_questions"].items():
        print(
            f"handbook questions {key}: {figures['flagged']}/{figures['questions']} flagged "
            f"({figures['rate']:.1%})"
        )
        for example in figures["examples"]:
            print(f"    {example['question']!r}: {example['found']}")
    for key, table in result["corpus"].items():
        print(f"corpus {key}:")
        for label, scores in table.items():
            print(
                f"    {label:<14} recall {scores['recall']:.3f}  "
                f"precision {scores['precision']:.3f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

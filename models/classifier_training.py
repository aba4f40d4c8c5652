"""Training and evaluating the encoder + linear-head classifiers (intent, injection).

Reproducible: the same dataset file and seed give the same head; the artifact's version is
the dataset's hash plus the recipe, so ``enclave models train`` retrains only on change.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.encoder import SentenceEncoder
from models.examples import Example, load_examples
from models.guard import TextGuard
from models.injection import INJECTION_DATASET, INJECTION_MODEL_NAME, evaluate_injection
from models.intent import INTENT_DATASET, INTENT_MODEL_NAME, evaluate_intents
from models.linear_head import TextHead, train_head
from models.store import ModelEntry, ModelStore

__all__ = [
    "ENCODER_MODEL_NAME",
    "TrainingResult",
    "train_classifier",
    "train_guard_classifiers",
]

_log = logging.getLogger("enclave.models.training")


@dataclass(frozen=True)
class TrainingResult:
    """The registered artifact and its held-out scores."""

    entry: ModelEntry
    metrics: dict[str, Any]
    retrained: bool


def train_classifier(
    *,
    name: str,
    dataset: Path,
    recipe: str,
    store: ModelStore,
    encoder: SentenceEncoder,
    evaluate: Callable[[Sequence[str], Sequence[str], Sequence[Example]], dict[str, Any]],
    predict: Callable[[TextHead, Sequence[str]], list[str]] | None = None,
    seed: int = 13,
    force: bool = False,
) -> TrainingResult:
    """Train on the train split, score the test split, register head.json + metrics.json.

    ``predict`` scores the test split with the whole classifier (e.g. head plus rules);
    by default the head alone.
    """
    digest = hashlib.sha256(dataset.read_bytes()).hexdigest()[:16]
    version = f"{digest}+{recipe}-seed{seed}"
    current = store.entries().get(name)
    if not force and current is not None and current.version == version:
        folder = current.folder(store.root)
        metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        store.verify([name])
        return TrainingResult(current, metrics, retrained=False)
    started = time.perf_counter()
    examples = load_examples(dataset)
    train = [e for e in examples if e.split == "train"]
    test = [e for e in examples if e.split == "test"]
    train_texts = [e.text for e in train]
    head, cv_scores = train_head(
        train_texts, encoder.encode(train_texts), [e.label for e in train], seed=seed
    )
    texts = [e.text for e in test]
    if predict is None:
        predicted = [label for label, _ in head.predict(texts, encoder.encode(texts))]
    else:
        predicted = predict(head, texts)
    metrics = evaluate([e.label for e in test], predicted, test)
    metrics["cv_macro_f1_by_embedding_weight"] = cv_scores
    metrics["embedding_weight"] = head.embedding_weight
    metrics.update(
        {
            "train_examples": len(train),
            "test_examples": len(test),
            "dataset_sha256_16": digest,
            "seed": seed,
        }
    )
    folder = store.root / "classifier" / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    head.save(folder / "head.json", {"recipe": recipe, "dataset": dataset.name, "seed": seed})
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    entry = store.register(
        name=name,
        kind="classifier",
        version=version,
        source=f"dataset:{dataset.name}",
        folder=folder,
    )
    _log.info("trained %s in %.1fs", name, time.perf_counter() - started)
    return TrainingResult(entry, metrics, retrained=True)


ENCODER_MODEL_NAME = "all-minilm-l6-v2"


def train_guard_classifiers(
    store: ModelStore, *, injection_threshold: float, force: bool = False
) -> list[TrainingResult]:
    """Train (or confirm up to date) the intent classifier and the injection detector.

    The detector is scored as deployed: head at ``injection_threshold``, plus the rules.
    """
    encoder_dir = store.verify([ENCODER_MODEL_NAME])[ENCODER_MODEL_NAME].folder(store.root)
    encoder = SentenceEncoder(encoder_dir)
    intent = train_classifier(
        name=INTENT_MODEL_NAME,
        dataset=INTENT_DATASET,
        recipe="minilm-logreg-v1",
        store=store,
        encoder=encoder,
        evaluate=evaluate_intents,
        force=force,
    )

    def guard_predict(head: TextHead, texts: Sequence[str]) -> list[str]:
        # The detector as deployed: the trained head plus the rules.
        intent_head = TextHead.load(intent.entry.folder(store.root) / "head.json")
        guard = TextGuard(encoder, intent_head, head, injection_threshold=injection_threshold)
        return guard.injection_labels(texts)

    injection = train_classifier(
        name=INJECTION_MODEL_NAME,
        dataset=INJECTION_DATASET,
        recipe=f"minilm-logreg-rules-v1-t{injection_threshold:g}",
        store=store,
        encoder=encoder,
        evaluate=evaluate_injection,
        predict=guard_predict,
        force=force,
    )
    return [intent, injection]

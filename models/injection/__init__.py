"""Prompt-injection detection: the shared encoder with a trained head, plus rules."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models.examples import Example
from models.injection.rules import decoded_payloads, rule_hits

__all__ = [
    "INJECTION_DATASET",
    "INJECTION_MODEL_NAME",
    "decoded_payloads",
    "evaluate_injection",
    "rule_hits",
]

INJECTION_DATASET = Path(__file__).resolve().parent / "data" / "injection.jsonl"
INJECTION_MODEL_NAME = "injection-detector"


def evaluate_injection(
    gold: Sequence[str], predicted: Sequence[str], examples: Sequence[Example]
) -> dict[str, Any]:
    """Held-out precision and recall of 'injection', overall and recall per category."""
    from sklearn.metrics import precision_score, recall_score

    by_category: dict[str, list[bool]] = {}
    for example, guess in zip(examples, predicted, strict=True):
        by_category.setdefault(example.category or example.label, []).append(guess == example.label)
    return {
        "precision": round(float(precision_score(gold, predicted, pos_label="injection")), 4),
        "recall": round(float(recall_score(gold, predicted, pos_label="injection")), 4),
        "accuracy_per_category": {
            category: round(sum(hits) / len(hits), 4)
            for category, hits in sorted(by_category.items())
        },
    }

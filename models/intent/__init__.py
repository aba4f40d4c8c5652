"""Intent classification for the staff portal: MiniLM embeddings + a trained linear head."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models.examples import Example

__all__ = ["INTENTS", "INTENT_DATASET", "INTENT_MODEL_NAME", "evaluate_intents"]

INTENT_DATASET = Path(__file__).resolve().parent / "data" / "intents.jsonl"
INTENT_MODEL_NAME = "intent-classifier"
INTENTS = (
    "it_support",
    "hr_policy",
    "document_question",
    "code_help",
    "writing_help",
    "small_talk",
    "out_of_scope",
    "escalate_to_human",
)


def evaluate_intents(
    gold: Sequence[str], predicted: Sequence[str], examples: Sequence[Example]
) -> dict[str, Any]:
    """Held-out macro-F1, accuracy and F1 per intent."""
    from sklearn.metrics import accuracy_score, f1_score

    labels = sorted(set(gold))
    per_label = f1_score(gold, predicted, labels=labels, average=None, zero_division=0)
    return {
        "macro_f1": round(float(f1_score(gold, predicted, labels=labels, average="macro")), 4),
        "accuracy": round(float(accuracy_score(gold, predicted)), 4),
        "f1_per_intent": {
            label: round(float(f), 4) for label, f in zip(labels, per_label, strict=True)
        },
    }

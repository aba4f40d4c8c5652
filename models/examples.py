"""Labelled examples: the datasets the guard classifiers (intent, injection) learn from.

Below both the training recipe (``models.classifier_training``) and the classifiers' own
evaluation (``models.intent``, ``models.injection``), so that neither imports the other to
share the type.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Example", "load_examples"]


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled text."""

    text: str
    label: str
    split: str
    category: str = ""


def load_examples(path: Path) -> list[Example]:
    """Read a JSONL dataset of {text, label, split[, category]}."""
    examples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("split") not in {"train", "test"}:
            msg = f"{path}:{number}: split must be train or test"
            raise ValueError(msg)
        examples.append(Example(row["text"], row["label"], row["split"], row.get("category", "")))
    return examples

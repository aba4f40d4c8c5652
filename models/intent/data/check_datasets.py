"""Validate the hand-written intent and prompt-injection datasets (standard library only).

Run from the repository root:

    .venv/bin/python models/intent/data/check_datasets.py

Checks the JSON schema of every line, the allowed labels, categories and splits, the minimum
counts per label/category, the held-out share, the 3-60 word length range, and that no text
appears twice (case-insensitive, Unicode- and whitespace-normalised, zero-width characters
removed) within a file, across its splits, or across the two files. Pairs of texts whose word
sets overlap almost entirely are reported as near-duplicates. Exits 1 on any error.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
import unicodedata
from collections import Counter
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
INTENT_FILE = DATA_DIR / "intents.jsonl"
INJECTION_FILE = DATA_DIR.parent.parent / "injection" / "data" / "injection.jsonl"

SPLITS = ("train", "test")
MIN_WORDS, MAX_WORDS = 3, 60
NEAR_DUPLICATE_JACCARD = 0.7

INTENT_LABELS = (
    "it_support",
    "hr_policy",
    "document_question",
    "code_help",
    "writing_help",
    "small_talk",
    "out_of_scope",
    "escalate_to_human",
)
INTENT_MIN_PER_LABEL = 55
INTENT_TEST_PER_LABEL = 15

INJECTION_CATEGORIES = (
    "direct_override",
    "system_prompt_extraction",
    "roleplay_jailbreak",
    "delimiter_injection",
    "encoded_payload",
    "indirect_via_document",
)
BENIGN_CATEGORIES = ("benign", "benign_hard")
CATEGORY_LABEL = dict.fromkeys(INJECTION_CATEGORIES, "injection") | dict.fromkeys(
    BENIGN_CATEGORIES, "benign"
)
MIN_INJECTION, MIN_PER_INJECTION_CATEGORY = 180, 20
MIN_BENIGN, MIN_BENIGN_HARD = 200, 90
TEST_SHARE_RANGE = (0.20, 0.30)

Row = dict[str, str]


def normalise(text: str) -> str:
    """Casefolded, NFKC, zero-width characters dropped, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    return " ".join(text.casefold().split())


def word_set(text: str) -> frozenset[str]:
    return frozenset(re.findall(r"\w+", normalise(text)))


def load(path: Path, keys: tuple[str, ...], errors: list[str]) -> list[Row]:
    rows: list[Row] = []
    if not path.is_file():
        errors.append(f"{path}: missing")
        return rows
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        where = f"{path.name}:{lineno}"
        if not line.strip():
            errors.append(f"{where}: empty line")
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"{where}: invalid JSON ({exc})")
            continue
        if not isinstance(obj, dict) or set(obj) != set(keys):
            errors.append(f"{where}: expected exactly the keys {sorted(keys)}")
            continue
        if not all(isinstance(obj[k], str) for k in keys):
            errors.append(f"{where}: every value must be a string")
            continue
        row: Row = {k: obj[k] for k in keys}
        n_words = len(row["text"].split())
        if row["text"] != row["text"].strip() or not MIN_WORDS <= n_words <= MAX_WORDS:
            errors.append(f"{where}: text must be trimmed and {MIN_WORDS}-{MAX_WORDS} words")
        if row["split"] not in SPLITS:
            errors.append(f"{where}: split {row['split']!r} not in {SPLITS}")
        row["where"] = where
        rows.append(row)
    return rows


def check_intents(rows: list[Row], errors: list[str]) -> None:
    for row in rows:
        if row["label"] not in INTENT_LABELS:
            errors.append(f"{row['where']}: unknown intent label {row['label']!r}")
    counts = Counter((r["label"], r["split"]) for r in rows)
    for label in INTENT_LABELS:
        total = counts[label, "train"] + counts[label, "test"]
        if total < INTENT_MIN_PER_LABEL:
            errors.append(f"intents: {label} has {total} examples (< {INTENT_MIN_PER_LABEL})")
        if counts[label, "test"] != INTENT_TEST_PER_LABEL:
            errors.append(
                f"intents: {label} has {counts[label, 'test']} test examples"
                f" (expected {INTENT_TEST_PER_LABEL})"
            )


def check_injection(rows: list[Row], errors: list[str]) -> None:
    for row in rows:
        expected = CATEGORY_LABEL.get(row["category"])
        if expected is None:
            errors.append(f"{row['where']}: unknown category {row['category']!r}")
        elif row["label"] != expected:
            errors.append(f"{row['where']}: category {row['category']} needs label {expected}")
    by_label = Counter(r["label"] for r in rows)
    by_cat = Counter(r["category"] for r in rows)
    test_by_cat = Counter(r["category"] for r in rows if r["split"] == "test")
    if by_label["injection"] < MIN_INJECTION:
        errors.append(f"injection: {by_label['injection']} injections (< {MIN_INJECTION})")
    if by_label["benign"] < MIN_BENIGN:
        errors.append(f"injection: {by_label['benign']} benign (< {MIN_BENIGN})")
    if by_cat["benign_hard"] < MIN_BENIGN_HARD:
        errors.append(f"injection: {by_cat['benign_hard']} benign_hard (< {MIN_BENIGN_HARD})")
    for cat in INJECTION_CATEGORIES:
        if by_cat[cat] < MIN_PER_INJECTION_CATEGORY:
            errors.append(f"injection: {cat} has {by_cat[cat]} (< {MIN_PER_INJECTION_CATEGORY})")
    low, high = TEST_SHARE_RANGE
    for cat in CATEGORY_LABEL:
        share = test_by_cat[cat] / by_cat[cat] if by_cat[cat] else 0.0
        if not low <= share <= high:
            errors.append(f"injection: {cat} test share {share:.2f} outside [{low}, {high}]")


def check_duplicates(rows: list[Row], errors: list[str]) -> int:
    """Exact (normalised) duplicates anywhere, and near-duplicates by word-set Jaccard."""
    seen: dict[str, str] = {}
    for row in rows:
        key = normalise(row["text"])
        if key in seen:
            errors.append(f"{row['where']}: duplicate of {seen[key]}")
        else:
            seen[key] = row["where"]
    sets = [(row["where"], word_set(row["text"])) for row in rows]
    pairs = 0
    for (w1, s1), (w2, s2) in itertools.combinations(sets, 2):
        pairs += 1
        if s1 and s2 and len(s1 & s2) / len(s1 | s2) >= NEAR_DUPLICATE_JACCARD:
            errors.append(
                f"{w1} and {w2}: near-duplicates (word Jaccard >= {NEAR_DUPLICATE_JACCARD})"
            )
    return pairs


def table(rows: list[Row], key: str, order: tuple[str, ...]) -> list[str]:
    counts = Counter((r[key], r["split"]) for r in rows)
    out = [f"  {key:<26} {'train':>6} {'test':>6} {'total':>6}"]
    for name in order:
        train, test = counts[name, "train"], counts[name, "test"]
        out.append(f"  {name:<26} {train:>6} {test:>6} {train + test:>6}")
    train = sum(1 for r in rows if r["split"] == "train")
    out.append(f"  {'TOTAL':<26} {train:>6} {len(rows) - train:>6} {len(rows):>6}")
    return out


def main() -> int:
    errors: list[str] = []
    intents = load(INTENT_FILE, ("text", "label", "split"), errors)
    injection = load(INJECTION_FILE, ("text", "label", "category", "split"), errors)
    check_intents(intents, errors)
    check_injection(injection, errors)
    pairs = check_duplicates(intents + injection, errors)

    print(f"{INTENT_FILE.relative_to(DATA_DIR.parents[2])}: {len(intents)} rows")
    print("\n".join(table(intents, "label", INTENT_LABELS)))
    print(f"{INJECTION_FILE.relative_to(DATA_DIR.parents[2])}: {len(injection)} rows")
    print("\n".join(table(injection, "label", ("injection", "benign"))))
    print("\n".join(table(injection, "category", tuple(CATEGORY_LABEL))))
    print(f"duplicate check: {len(intents) + len(injection)} texts, {pairs} pairs compared")
    if errors:
        print(f"FAILED with {len(errors)} error(s):")
        for err in errors:
            print(f"  - {err}")
        return 1
    print("OK: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Presidio on the real spaCy model against the labelled corpus: the quality bar of issue 3."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from core.settings import Settings
from models.pii.presidio_scanner import PresidioScanner
from models.store import ModelStore

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).resolve().parents[2] / "models" / "pii" / "data" / "pii_corpus.jsonl"
RECALL_FLOORS = {
    "EMAIL_ADDRESS": 0.95,
    "PHONE_NUMBER": 0.95,
    "CREDIT_CARD": 0.95,
    "US_SSN": 0.95,
    "IP_ADDRESS": 0.95,
    "PERSON": 0.85,
}


@pytest.fixture(scope="module")
def scanner(test_settings: Settings, offline_env: dict[str, str]) -> PresidioScanner:
    store = ModelStore(test_settings.paths.model_store)
    name = test_settings.pii.spacy_store_name
    presidio = PresidioScanner(store.verify([name])[name].folder(store.root), test_settings.pii)
    presidio.load()
    return presidio


def _overlaps(a: tuple[int, int, str], pool: set[tuple[int, int, str]]) -> bool:
    return any(b[2] == a[2] and a[0] < b[1] and b[0] < a[1] for b in pool)


def test_corpus_precision_and_recall(scanner: PresidioScanner) -> None:
    rows = [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]
    assert len(rows) >= 150
    results = scanner.scan([r["text"] for r in rows])
    tp, fn, fp = Counter[str](), Counter[str](), Counter[str]()
    for row, result in zip(rows, results, strict=True):
        gold = {(s["start"], s["end"], s["label"]) for s in row["spans"]}
        found = {(p.start, p.end, p.entity_type) for p in result.pii}
        for span in gold:
            (tp if _overlaps(span, found) else fn)[span[2]] += 1
        for span in found:
            if not _overlaps(span, gold):
                fp[span[2]] += 1
    table = []
    for label in sorted(set(tp) | set(fn)):
        recall = tp[label] / (tp[label] + fn[label])
        precision = tp[label] / max(1, tp[label] + fp[label])
        table.append(f"{label:14} precision {precision:.3f} recall {recall:.3f}")
    print("\n" + "\n".join(table))
    for label, floor in RECALL_FLOORS.items():
        recall = tp[label] / (tp[label] + fn[label])
        assert recall >= floor, f"{label} recall {recall:.3f} < {floor}"
    precision = sum(tp.values()) / (sum(tp.values()) + sum(fp.values()))
    assert precision >= 0.85, f"overall precision {precision:.3f} < 0.85"


def test_known_noise_is_gone(scanner: PresidioScanner) -> None:
    us_phone, ssn_word = scanner.scan(
        ["Call me on (415) 555-0137 tomorrow.", "Where do I update my SSN in Workday?"]
    )
    assert [s.entity_type for s in us_phone.pii] == ["PHONE_NUMBER"]  # no UK_NHS
    assert ssn_word.pii == ()  # no ORGANIZATION for "SSN"


def test_organisation_pattern_from_settings(scanner: PresidioScanner) -> None:
    (result,) = scanner.scan(["My badge says EMP-204817, please fix it."])
    assert [(s.entity_type, s.start, s.end) for s in result.pii] == [("EMPLOYEE_ID", 14, 24)]


def test_named_entities_come_with_offsets_only(scanner: PresidioScanner) -> None:
    (result,) = scanner.scan(["Maria Lopez from Acme Corp flies to Nairobi on Monday."])
    labels = {e.label for e in result.entities}
    assert {"PERSON", "GPE"} <= labels or {"PERSON", "LOC"} <= labels
    assert "ORG" in labels
    assert "DATE" in labels


def test_reply_scanner_masks_names_and_holds_a_trailing_first_name(
    test_settings: Settings, offline_env: dict[str, str]
) -> None:
    from models.pii.pattern_scanner import PatternScanner

    replies = PatternScanner(test_settings.pii)
    found = replies.find("You could ask Maria Lopez or call 212-555-0100.")
    assert {(s.entity_type, s.start, s.end) for s in found} >= {("PERSON", 14, 25)}
    assert replies.hold_from("You could ask Maria ") == len("You could ask ")
    assert replies.hold_from("You could ask the desk ") == len("You could ask the desk ")

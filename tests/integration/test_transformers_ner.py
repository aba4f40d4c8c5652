"""Presidio's transformers NLP engine behind the PII scanner, on a tiny BERT built here."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import PIISettings, Settings
from models.pii.presidio_scanner import PresidioScanner
from models.store import ModelStore

pytestmark = pytest.mark.integration

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def build_tiny_ner(folder: Path) -> Path:
    """A 1-layer BERT token classifier whose head says "person" for every token.

    Its weights carry no knowledge; the bias makes its output known in advance, so the test
    can tell the transformers model (not spaCy) produced the entities.
    """
    import torch
    from transformers import BertConfig, BertForTokenClassification, BertTokenizerFast

    words = ["maria", "went", "home", "and", "called", "at", "the", "office", "email", "me"]
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *words,
        *"abcdefghijklmnopqrstuvwxyz",
        *(f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"),
        ".",
        ",",
        "@",
        "-",
    ]
    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    torch.manual_seed(0)
    model = BertForTokenClassification(config)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 10.0, 0.0, 0.0, 0.0]))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_transformers_engine_finds_entities_from_the_local_model(
    test_settings: Settings, offline_env: dict[str, str], tmp_path: Path
) -> None:
    model_dir = build_tiny_ner(tmp_path / "tiny-ner")
    settings = PIISettings(ner_engine="transformers", transformers_ner_dir=model_dir)
    store = ModelStore(test_settings.paths.model_store)
    scanner = PresidioScanner(store.path_of(test_settings.pii.spacy_store_name), settings)
    scanner.load()
    assert scanner._analyzer.nlp_engine.engine_name == "transformers"
    (result,) = scanner.scan(["Maria went home and called ops@northwind.example"])
    types = {span.entity_type for span in result.pii}
    assert "EMAIL_ADDRESS" in types  # the pattern recognizers still run
    person = [s for s in result.pii if s.entity_type == "PERSON"]
    assert person, result.pii  # every token is a person to this model; spaCy-sm disagrees
    assert person[0].start == 0


def test_transformers_engine_requires_a_model_folder() -> None:
    with pytest.raises(ValueError, match="transformers_ner_dir"):
        PIISettings(ner_engine="transformers")

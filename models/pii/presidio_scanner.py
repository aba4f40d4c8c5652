"""Presidio analyzer on a local spaCy pipeline, with recognizers and thresholds chosen here.

Defaults are noisy (a US phone also tagged UK_NHS, "SSN" tagged as an organisation), so the
registry holds only the recognizers Enclave wants, each entity has its own threshold, and
the organisation's identifiers come from settings. ``tldextract`` (used by the e-mail
recognizer) must be offline: the launcher sets ``TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS=""``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.settings import PIISettings
from models.pii.base import Entity, PIISpan, ScanResult
from models.pii.names import NameLexicon, name_lexicon

__all__ = ["PATTERN_ENTITIES", "PresidioScanner", "build_pattern_recognizers"]

# spaCy labels that become Presidio entities; everything else (ORG, DATE, …) is NER only.
_SPACY_TO_PRESIDIO = {"PERSON": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION", "FAC": "LOCATION"}
_MIN_PHONE_DIGITS = 7
# Entities found by patterns and checksums alone: cheap enough for streamed output scans.
PATTERN_ENTITIES = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "US_SSN",
    "IBAN_CODE",
    "IP_ADDRESS",
)


def build_pattern_recognizers(settings: PIISettings) -> list[Any]:
    """The recognizers that need no NLP model: built-in checksummed patterns + settings'."""
    from presidio_analyzer import Pattern, PatternRecognizer
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        UsSsnRecognizer,
    )

    class GatedPhoneRecognizer(PhoneRecognizer):
        """libphonenumber's matcher costs ~10 ms per text and region set; a text with fewer
        than 7 digits cannot hold a phone number, so it is not asked."""

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> Any:
            if sum(ch.isdigit() for ch in text) < _MIN_PHONE_DIGITS:
                return []
            return super().analyze(text, entities, nlp_artifacts)

    class InternalEmailRecognizer(EmailRecognizer):
        """E-mail addresses on any domain: on-prem mail uses internal TLDs (.corp, .example)
        that Presidio's public-suffix check would reject."""

        def validate_result(self, pattern_text: str) -> bool:
            return "@" in pattern_text and "." in pattern_text.rsplit("@", 1)[-1]

    wanted = set(settings.entities)
    # Presidio's card pattern predates Mastercard's 2221-2720 range; add it (Luhn-checked
    # like every other card number).
    mastercard_2_series = Pattern(
        "Mastercard 2-series (weak)",
        r"\b(2(?:2[2-9]\d|[3-6]\d{2}|7[01]\d|720))[- ]?(\d{4})[- ]?(\d{4})[- ]?(\d{4})\b",
        0.3,
    )
    candidates: list[Any] = [
        InternalEmailRecognizer(),
        GatedPhoneRecognizer(supported_regions=tuple(settings.phone_regions)),
        CreditCardRecognizer(patterns=[*CreditCardRecognizer.PATTERNS, mastercard_2_series]),
        UsSsnRecognizer(),
        IbanRecognizer(),
        IpRecognizer(),
    ]
    recognizers = [r for r in candidates if set(r.supported_entities) & wanted]
    for custom in settings.patterns:
        recognizers.append(
            PatternRecognizer(
                supported_entity=custom.entity,
                name=f"{custom.entity.lower()}_recognizer",
                patterns=[
                    Pattern(name=custom.entity.lower(), regex=custom.regex, score=custom.score)
                ],
                context=list(custom.context),
            )
        )
    return recognizers


class PresidioScanner:
    """PII and named entities from one spaCy pass per text."""

    def __init__(self, spacy_dir: Path, settings: PIISettings) -> None:
        self._spacy_dir = spacy_dir
        self._settings = settings
        self._entities = [*settings.entities, *(p.entity for p in settings.patterns)]
        self._analyzer: Any = None

    def load(self) -> None:
        """Load the NLP engine and build the analyzer (about a second with spaCy)."""
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry

        registry = RecognizerRegistry(supported_languages=["en"])
        spacy_entities: list[str] = [
            e for e in ("PERSON", "LOCATION") if e in self._settings.entities
        ]
        nlp_engine, ner_recognizer = self._nlp_engine(spacy_entities)
        if spacy_entities:
            registry.add_recognizer(ner_recognizer)
        for recognizer in build_pattern_recognizers(self._settings):
            registry.add_recognizer(recognizer)
        self._analyzer = AnalyzerEngine(
            registry=registry, nlp_engine=nlp_engine, supported_languages=["en"]
        )

    def _nlp_engine(self, ner_entities: list[str]) -> tuple[Any, Any]:
        from presidio_analyzer.nlp_engine import (
            NerModelConfiguration,
            SpacyNlpEngine,
            TransformersNlpEngine,
        )
        from presidio_analyzer.predefined_recognizers import (
            SpacyRecognizer,
            TransformersRecognizer,
        )

        ignored = [
            "ORG",
            "NORP",
            "CARDINAL",
            "ORDINAL",
            "QUANTITY",
            "MONEY",
            "PERCENT",
            "TIME",
            "DATE",
            "PRODUCT",
            "EVENT",
            "WORK_OF_ART",
            "LAW",
            "LANGUAGE",
            "MISC",
            "O",
        ]
        mapping = dict(_SPACY_TO_PRESIDIO) | {"PER": "PERSON"}
        if self._settings.ner_engine == "transformers":
            config = NerModelConfiguration(
                model_to_presidio_entity_mapping=mapping,
                low_score_entity_names=[],
                labels_to_ignore=ignored,
                aggregation_strategy="simple",
                alignment_mode="expand",
            )
            transformers_engine = TransformersNlpEngine(
                models=[
                    {
                        "lang_code": "en",
                        "model_name": {
                            "spacy": str(self._spacy_dir),
                            "transformers": str(self._settings.transformers_ner_dir),
                        },
                    }
                ],
                ner_model_configuration=config,
            )
            return transformers_engine, TransformersRecognizer(supported_entities=ner_entities)
        config = NerModelConfiguration(
            model_to_presidio_entity_mapping=mapping,
            low_score_entity_names=[],
            labels_to_ignore=ignored,
        )
        engine = SpacyNlpEngine(
            models=[{"lang_code": "en", "model_name": str(self._spacy_dir)}],
            ner_model_configuration=config,
        )
        return engine, SpacyRecognizer(supported_entities=ner_entities)

    def scan(self, texts: Sequence[str]) -> list[ScanResult]:
        """PII spans above their thresholds, overlaps resolved, plus spaCy's entities."""
        if self._analyzer is None:
            self.load()
        analyzer = self._analyzer
        results = []
        docs = analyzer.nlp_engine.process_batch(list(texts), language="en")
        for text, artifacts in docs:
            found = analyzer.analyze(
                text=text,
                language="en",
                entities=self._entities,
                nlp_artifacts=artifacts,
                allow_list=list(self._settings.allow_list) or None,
            )
            spans = [
                PIISpan(r.start, r.end, r.entity_type, round(float(r.score), 3))
                for r in found
                if r.score
                >= self._settings.thresholds.get(r.entity_type, self._settings.default_threshold)
            ]
            if "PERSON" in self._entities:
                spans = refine_names(text, spans)
            # NER for routing and lineage: every spaCy entity (ORG, DATE, …), not only the
            # ones Presidio maps to PII; ``tokens`` is the spaCy Doc.
            doc_entities = getattr(artifacts.tokens, "ents", ()) or artifacts.entities
            entities = tuple(
                Entity(label=e.label_, start=e.start_char, end=e.end_char) for e in doc_entities
            )
            results.append(ScanResult(pii=resolve_overlaps(spans), entities=entities))
        return results


_WORD = re.compile(r"[A-Za-zÀ-ÖØ-öø-ÿ'’\-]+")
_GAZETTEER_SCORE = 0.8
_SAINT = re.compile(r"(?:Saint|St\.?)\s+[A-Z]")
_AFTER_SAINT = re.compile(r"\b(?:Saint|St\.?)\s+$")


def refine_names(text: str, spans: Sequence[PIISpan]) -> list[PIISpan]:
    """Use the name lexicon: drop "people" with no known name in them, re-label people the
    small spaCy model tagged as places, and add "First Last" names it missed."""
    lexicon = name_lexicon()
    found = lexicon_names(text, lexicon) + _cued_names(text, lexicon)
    refined: list[PIISpan] = [f for f in found if not _saint(text, f.start)]
    for span in spans:
        words = [_strip_possessive(w) for w in _WORD.findall(text[span.start : span.end])]
        inside_name = any(f.start <= span.start and span.end <= f.end for f in found)
        if span.entity_type == "PERSON" and not any(lexicon.is_name(w) for w in words):
            continue  # "Reset my Okta", "Format", "Traveller": capitalised, not a name
        if span.entity_type == "PERSON" and _saint(text, span.start):
            continue  # "Saint Anthony's day", "St. John's": a saint, a feast or a place
        if span.entity_type == "LOCATION":
            if any(ch.isdigit() for ch in text[span.start : span.end]):
                continue  # "Sev2", "P1", "S3": work words the small model reads as places
            if inside_name:
                continue  # "Nadia" of "Nadia Benali"
            if _looks_like_person(words, lexicon):
                refined.append(PIISpan(span.start, span.end, "PERSON", span.score))
                continue
        refined.append(span)
    return refined


def _saint(text: str, start: int) -> bool:
    """Whether the name at ``start`` is a saint's ("Saint Anthony's day", "St. John's")."""
    return bool(_SAINT.match(text, start) or _AFTER_SAINT.search(text, 0, start))


def _strip_possessive(word: str) -> str:
    return re.sub(r"['’]s$", "", word)


def _looks_like_person(words: Sequence[str], lexicon: NameLexicon) -> bool:
    # Single words stay places: Faker's lists hold given names such as Madrid or Kenya.
    return len(words) >= 2 and lexicon.is_first(words[0]) and lexicon.is_name(words[-1])


_CUE_BEFORE = re.compile(
    r"\b(hi|hello|hey|dear|ask|asked|call|ping|email|cc|thanks|thank you|meet|contact|"
    r"colleague|manager|applicant|guest|customer|client|who is|name is|named|by|with)"
    r"\s*[:,]?\s+$",
    re.IGNORECASE,
)
_CUE_AFTER = re.compile(
    r"^(?:['’]s\b|\s+(?:asked|said|says|wrote|writes|called|emailed|mentioned|reported|"
    r"replied|is (?:handling|on|out|away|leaving|joining)|will|has|was))",
    re.IGNORECASE,
)


def _known(word: str, lexicon: NameLexicon) -> bool:
    parts = word.split("-")
    return lexicon.is_name(word) or (len(parts) > 1 and lexicon.is_first(parts[0]))


def _cued_names(text: str, lexicon: NameLexicon) -> list[PIISpan]:
    """Single known names that the words around them mark as people ("ask Tanaka")."""
    names = []
    for token in _WORD.finditer(text):
        word = token.group()
        if len(word) < 3 or not word[:1].isupper() or word.isupper() or not _known(word, lexicon):
            continue
        before = text[max(0, token.start() - 20) : token.start()]
        after = text[token.end() : token.end() + 20]
        if _CUE_BEFORE.search(before) or _CUE_AFTER.match(after):
            names.append(PIISpan(token.start(), token.end(), "PERSON", _GAZETTEER_SCORE))
    return names


def lexicon_names(text: str, lexicon: NameLexicon) -> list[PIISpan]:
    """ "First Last" sequences: a known first name followed by capitalised words."""
    names = []
    tokens = list(_WORD.finditer(text))
    for index, token in enumerate(tokens):
        if not lexicon.is_first(token.group()):
            continue
        end, taken = token.end(), 0
        for follower in tokens[index + 1 : index + 4]:
            gap = text[end : follower.start()]
            word = follower.group()
            if gap.strip():
                break
            if lexicon.is_particle(word):
                continue
            if not word[:1].isupper() or len(word) < 2 or word.isupper():
                break
            end, taken = follower.end(), taken + 1
        if taken:
            names.append(PIISpan(token.start(), end, "PERSON", _GAZETTEER_SCORE))
    return names


def resolve_overlaps(spans: Sequence[PIISpan]) -> tuple[PIISpan, ...]:
    """Keep the best of overlapping spans (higher score, then longer), sorted by start."""
    ranked = sorted(spans, key=lambda s: (-s.score, -(s.end - s.start), s.start))
    kept: list[PIISpan] = []
    for span in ranked:
        if all(span.end <= k.start or span.start >= k.end for k in kept):
            kept.append(span)
    return tuple(sorted(kept, key=lambda s: s.start))

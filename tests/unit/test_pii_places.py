"""A tenant's places: derived from its documents, kept readable in questions about the
organisation, still protected where they are a person's (home town, address, birthplace)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from api.chat.guarding import GuardStage
from core.settings import GuardSettings
from index.places import NamedPlace, places_named
from models.guard_types import GuardVerdict
from models.llm.base import ChatMessage
from models.pii.base import PIISpan, ScanResult
from models.pii.places import PlaceAllowList

_CITIES = re.compile(r"\b(?:Toronto|Lisbon|Kelowna)\b")


@dataclass
class CityGuard:
    """Tags the three cities above as LOCATION, as the NER model does; no other verdict."""

    async def scan(self, texts: list[str]) -> list[ScanResult]:
        return [
            ScanResult(
                pii=tuple(
                    PIISpan(m.start(), m.end(), "LOCATION", 0.85) for m in _CITIES.finditer(t)
                ),
                entities=(),
            )
            for t in texts
        ]

    async def check(self, text: str) -> GuardVerdict:
        return GuardVerdict("hr_policy", 0.9, False, 0.01, ())


async def _to_model(text: str, places: tuple[str, ...]) -> str:
    stage = GuardStage(CityGuard(), GuardSettings())  # type: ignore[arg-type]
    outcome = await stage.run([ChatMessage("user", text)], places)
    return outcome.messages[-1].content


@pytest.mark.parametrize(
    ("question", "to_model"),
    [
        (
            "What does the Toronto office do on Fridays?",
            "What does the Toronto office do on Fridays?",
        ),
        (
            "Am I allowed to fly business class from Toronto to Lisbon?",
            "Am I allowed to fly business class from Toronto to Lisbon?",
        ),
        (
            "I live in Toronto; can I park at the office?",
            "I live in <LOCATION_1>; can I park at the office?",
        ),
        ("My home town is Lisbon.", "My home town is <LOCATION_1>."),
        ("She was born in Toronto.", "She was born in <LOCATION_1>."),
        # Not one of the organisation's places: protected wherever it appears.
        ("Is there a Kelowna office?", "Is there a <LOCATION_1> office?"),
    ],
)
async def test_the_organisations_places_reach_the_model_a_persons_do_not(
    question: str, to_model: str
) -> None:
    assert await _to_model(question, ("Toronto", "lisbon")) == to_model


async def test_without_allowed_places_every_place_is_scrubbed_as_before() -> None:
    sent = await _to_model("What does the Toronto office do on Fridays?", ())
    assert sent == "What does the <LOCATION_1> office do on Fridays?"


def test_matching_ignores_case_spacing_and_possessives() -> None:
    places = PlaceAllowList(["Toronto", " New  York "])
    assert "toronto" in places
    assert "Toronto's" in places
    assert "New York" in places
    assert "Torontoo" not in places
    assert not PlaceAllowList()


def test_places_named_counts_documents_and_drops_what_is_no_place() -> None:
    texts = [
        "The Toronto office opens at 8. Toronto staff park in P2.",
        "Lisbon and Toronto's teams share a rota. Escalate a Sev2 to the Lead.",
        "Mondego is a meeting room.",
    ]

    def spans(text: str, *words: str) -> list[tuple[int, int, str]]:
        return [(text.index(w), text.index(w) + len(w), "LOCATION") for w in words]

    found = [
        spans(texts[0], "Toronto", "P2"),
        [*spans(texts[1], "Lisbon", "Toronto's", "Sev2"), (0, 6, "PERSON")],
        spans(texts[2], "Mondego"),
    ]
    assert places_named(texts, found) == [
        NamedPlace("Toronto", 2),
        NamedPlace("Lisbon", 1),
        NamedPlace("Mondego", 1),
    ]
    assert places_named(texts, found, min_documents=2) == [NamedPlace("Toronto", 2)]


def test_a_place_beside_a_named_person_stays_protected() -> None:
    places = PlaceAllowList(["Lisbon", "Toronto"])
    text = "Desk phone for Ines Carvalho in Lisbon should be fixed. The Toronto office is fine."
    person = PIISpan(15, 28, "PERSON", 0.8)
    lisbon = PIISpan(32, 38, "LOCATION", 0.85)
    toronto = PIISpan(text.index("Toronto"), text.index("Toronto") + 7, "LOCATION", 0.85)
    assert places.keep_protected(text, [person, lisbon, toronto]) == (person, lisbon)
    moving = "Employee 7 is transferring from Dublin to Toronto on 1 July."
    span = PIISpan(moving.index("Toronto"), moving.index("Toronto") + 7, "LOCATION", 0.85)
    assert places.keep_protected(moving, [span]) == (span,)

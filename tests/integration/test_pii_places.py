"""The organisation's places, end to end on real parts: a knowledge base is ingested with the
CLI, ``enclave kb places --apply`` stores the places it names in the tenant's runtime
configuration, and the guard stage (real Presidio + spaCy, real guard classifier) lets
"What does the Toronto office do on Fridays?" reach the model with "Toronto" — while a
person's home town is still scrubbed, and ordinary work words ("Sev2") are not PII.
The false-positive rate on the handbook questions, with the handbook's places, is ≤ 2 %."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from api.chat.guarding import GuardStage
from api.stores.runtime_config import RuntimeConfigStore
from core.db import Database
from core.runtime_overrides import EffectiveRuntime
from core.settings import Settings, load_settings
from models.classifier_training import ENCODER_MODEL_NAME
from models.guard import TextGuard
from models.guard_types import GuardVerdict
from models.injection import INJECTION_MODEL_NAME
from models.intent import INTENT_MODEL_NAME
from models.llm.base import ChatMessage
from models.pii.base import ScanResult
from models.pii.places import PlaceAllowList
from models.pii.presidio_scanner import PresidioScanner
from models.store import ModelStore
from serving.ops.cli import main

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HANDBOOK = ROOT / "index" / "samples" / "handbook"
QUESTIONS = ROOT / "index" / "samples" / "handbook_eval.jsonl"
# Documents that name the three offices (and Kenya, Portugal, Canada).
DOCUMENTS = ("facilities-office-access.md", "facilities-parking.txt", "hr-leave-holidays.html")


class LocalGuard:
    """``api.services.GuardClient`` over the real models, in this process."""

    def __init__(self, scanner: PresidioScanner, guard: TextGuard) -> None:
        self._scanner = scanner
        self._guard = guard

    async def scan(self, texts: list[str]) -> list[ScanResult]:
        return self._scanner.scan(texts)

    async def check(self, text: str) -> GuardVerdict:
        return self._guard.check([text])[0]

    async def check_health(self) -> None:
        return None


@pytest.fixture(scope="module")
def local_guard(test_settings: Settings, offline_env: dict[str, str]) -> LocalGuard:
    store = ModelStore(test_settings.paths.model_store)
    spacy = test_settings.pii.spacy_store_name
    names = [spacy, ENCODER_MODEL_NAME, INTENT_MODEL_NAME, INJECTION_MODEL_NAME]
    entries = store.verify(names)
    scanner = PresidioScanner(entries[spacy].folder(store.root), test_settings.pii)
    scanner.load()
    guard = TextGuard.from_folders(
        entries[ENCODER_MODEL_NAME].folder(store.root),
        entries[INTENT_MODEL_NAME].folder(store.root),
        entries[INJECTION_MODEL_NAME].folder(store.root),
        injection_threshold=test_settings.guard.injection_threshold,
    )
    return LocalGuard(scanner, guard)


@pytest.fixture(scope="module")
def acme_runtime(
    tmp_path_factory: pytest.TempPathFactory, offline_env: dict[str, str]
) -> EffectiveRuntime:
    """Tenant ``acme``'s runtime after ingesting three handbook documents and applying the
    places they name, all through the ``enclave`` command on a fresh data dir."""
    base = tmp_path_factory.mktemp("places")
    docs = base / "docs"
    docs.mkdir()
    for name in DOCUMENTS:
        shutil.copy(HANDBOOK / name, docs / name)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ENCLAVE_PATHS__DATA_DIR", str(base / "data"))
        env.setenv("ENCLAVE_CONFIG_DIR", str(ROOT))
        cli = ["--profile", "test", "kb"]
        scope = ["--tenant", "acme", "--kb", "handbook"]
        assert main([*cli, "create", *scope]) == 0
        assert main([*cli, "ingest", *scope, str(docs)]) == 0
        assert main([*cli, "places", *scope]) == 0  # a dry run: prints, stores nothing
        settings = load_settings(config_dir=ROOT, profile="test")

        async def effective(tenant: str) -> EffectiveRuntime:
            db = Database.from_settings(settings)
            try:
                return await RuntimeConfigStore(db, settings).effective(tenant)
            finally:
                await db.dispose()

        assert asyncio.run(effective("acme")).allowed_places == ()
        assert main([*cli, "places", *scope, "--apply"]) == 0
        assert asyncio.run(effective("other")).allowed_places == ()
        return asyncio.run(effective("acme"))


def test_the_places_a_knowledge_base_names_become_the_tenants_allow_list(
    acme_runtime: EffectiveRuntime,
) -> None:
    assert {"Toronto", "Lisbon", "Nairobi"} <= set(acme_runtime.allowed_places)
    assert acme_runtime.version == "g0.t1"  # a configuration version: visible, revertible
    assert "Toronto" in acme_runtime.as_dict()["allowed_places"]


async def _to_model(guard: LocalGuard, text: str, places: Sequence[str]) -> str:
    stage = GuardStage(guard, load_settings(config_dir=ROOT, profile="test").guard)
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
            "We fixed the Sev2 and the service looks normal again",
            "We fixed the Sev2 and the service looks normal again",
        ),
        (
            "I live in Toronto, can I claim my commute?",
            "I live in <LOCATION_1>, can I claim my commute?",
        ),
        (
            "My home town is Chicago, is there an office near it?",
            "My home town is <LOCATION_1>, is there an office near it?",
        ),
    ],
)
async def test_what_reaches_the_model(
    local_guard: LocalGuard, acme_runtime: EffectiveRuntime, question: str, to_model: str
) -> None:
    assert await _to_model(local_guard, question, acme_runtime.allowed_places) == to_model


async def test_without_the_tenants_places_the_office_is_scrubbed(local_guard: LocalGuard) -> None:
    sent = await _to_model(local_guard, "What does the Toronto office do on Fridays?", ())
    assert sent == "What does the <LOCATION_1> office do on Fridays?"


def test_handbook_questions_false_positives_at_most_two_percent(
    local_guard: LocalGuard, acme_runtime: EffectiveRuntime
) -> None:
    questions = [json.loads(line)["question"] for line in QUESTIONS.read_text().splitlines()]
    places = PlaceAllowList(acme_runtime.allowed_places)
    results = local_guard._scanner.scan(questions)
    flagged = [
        (q, [q[s.start : s.end] for s in spans])
        for q, r in zip(questions, results, strict=True)
        if (spans := places.keep_protected(q, r.pii))
    ]
    print(f"\n{len(flagged)}/{len(questions)} handbook questions flagged: {flagged}")
    assert len(flagged) <= 0.02 * len(questions), flagged

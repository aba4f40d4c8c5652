"""An API process for the shared-quota tests: the real app, security and Redis limits over
scripted models. ``python -m tests.integration.quota_api_app PORT`` (settings from env).

``QUOTA_TEST_GATE_DIR`` (optional) holds every answer until the test allows it: each chat
that reached the model (its quota reservation is held by then) writes an
``arrived-<port>-*`` file there and waits for ``open`` (every process) or ``open-<port>``
(this one). Tests count arrivals instead of guessing how long a loaded machine takes, so
"all reservations are held at once" is a fact, not a timing hope.

Optional too: ``QUOTA_TEST_LEASE_TTL_S`` (limits.reservation_lease_ttl_s),
``QUOTA_TEST_ON_STORE_UNAVAILABLE`` (limits.on_store_unavailable) and
``QUOTA_TEST_REQUESTS_PER_MINUTE`` (the user's rate limit; unset: none). The security
metrics share the app's registry, so ``/metrics`` shows them.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from litestar import Litestar
from prometheus_client import CollectorRegistry

from api.app import create_app
from api.services import Services
from api.stores.history import ConversationStore
from api.stores.vault_keys import DeploymentKey, HistoryKeyring
from core.audit import AuditLog, AuditSigner
from core.db import Database
from core.metrics import EnclaveMetrics
from core.settings import Settings, config_version
from models.llm.base import GenerationDelta, GenerationRequest
from serving.security import build_security
from tests.fakes import KeywordGuard, RegexPII, ScriptedLLM, WordTokenizer

GATE_OPEN = "open"


@dataclass
class GatedLLM(ScriptedLLM):
    """The scripted model, holding each answer until ``<gate>/open`` exists."""

    gate: Path | None = None
    port: int = 0

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        if self.gate is not None:
            (self.gate / f"arrived-{self.port}-{uuid.uuid4().hex}").touch()
            # The test (another process) opens the gate with a file: no asyncio.Event reaches.
            while not self._open(self.gate):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        async for delta in super().generate(request):
            yield delta

    def _open(self, gate: Path) -> bool:
        return (gate / GATE_OPEN).exists() or (gate / f"{GATE_OPEN}-{self.port}").exists()


def build(port: int) -> Litestar:
    per_minute = os.environ.get("QUOTA_TEST_REQUESTS_PER_MINUTE")
    limits: dict[str, object] = {
        "store": "redis",
        "redis_url": os.environ["QUOTA_TEST_REDIS_URL"],
        "key_prefix": os.environ["QUOTA_TEST_PREFIX"],
        "user_requests_per_minute": int(per_minute) if per_minute else None,
        "tenant_requests_per_minute": None,
        "user_tokens": {"tokens": int(os.environ["QUOTA_TEST_TOKENS"]), "period": "day"},
        "tenant_tokens": {"tokens": None},
        "reservation_lease_ttl_s": float(os.environ.get("QUOTA_TEST_LEASE_TTL_S", "30")),
        "on_store_unavailable": os.environ.get("QUOTA_TEST_ON_STORE_UNAVAILABLE", "fail_closed"),
    }
    settings = Settings(
        paths={"data_dir": os.environ["QUOTA_TEST_DATA_DIR"]},
        llm={"primary": {"served_name": "test-model"}, "fallback": None},
        limits=limits,
    )
    gate = os.environ.get("QUOTA_TEST_GATE_DIR")
    db = Database.from_settings(settings)
    metrics = EnclaveMetrics(CollectorRegistry())
    services = Services(
        settings=settings,
        config_version=config_version(settings),
        primary=GatedLLM(
            reply="one two three four five",
            delay_s=0.01,
            gate=Path(gate) if gate else None,
            port=port,
        ),
        fallback=None,
        tokenizer=WordTokenizer(),
        guard=KeywordGuard(),
        output_scanner=RegexPII(),
        canary_token="canary",
        security=build_security(settings, db, metrics.registry),
        database=db,
        audit=AuditLog(AuditSigner.generate()),
        history=ConversationStore(db, HistoryKeyring(DeploymentKey.generate())),
        metrics=metrics,
    )
    return create_app(services)


if __name__ == "__main__":
    port = int(sys.argv[1])
    uvicorn.run(build(port), host="127.0.0.1", port=port, log_level="warning")

"""An API process for the shared-quota test: the real app, security and Redis limits over
scripted models. ``python -m tests.integration.quota_api_app PORT`` (settings from env)."""

from __future__ import annotations

import os
import sys

import uvicorn
from litestar import Litestar

from api.app import create_app
from api.services import Services
from api.stores.history import ConversationStore
from api.stores.vault_keys import DeploymentKey, HistoryKeyring
from core.audit import AuditLog, AuditSigner
from core.db import Database
from core.settings import Settings, config_version
from serving.security import build_security
from tests.fakes import KeywordGuard, RegexPII, ScriptedLLM, WordTokenizer


def build() -> Litestar:
    settings = Settings(
        paths={"data_dir": os.environ["QUOTA_TEST_DATA_DIR"]},
        llm={"primary": {"served_name": "test-model"}, "fallback": None},
        limits={
            "store": "redis",
            "redis_url": os.environ["QUOTA_TEST_REDIS_URL"],
            "key_prefix": os.environ["QUOTA_TEST_PREFIX"],
            "user_requests_per_minute": None,
            "tenant_requests_per_minute": None,
            "user_tokens": {"tokens": int(os.environ["QUOTA_TEST_TOKENS"]), "period": "day"},
            "tenant_tokens": {"tokens": None},
        },
    )
    db = Database.from_settings(settings)
    services = Services(
        settings=settings,
        config_version=config_version(settings),
        primary=ScriptedLLM(reply="one two three four five", delay_s=0.01),
        fallback=None,
        tokenizer=WordTokenizer(),
        guard=KeywordGuard(),
        output_scanner=RegexPII(),
        canary_token="canary",
        security=build_security(settings, db),
        database=db,
        audit=AuditLog(AuditSigner.generate()),
        history=ConversationStore(db, HistoryKeyring(DeploymentKey.generate())),
    )
    return create_app(services)


if __name__ == "__main__":
    uvicorn.run(build(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")

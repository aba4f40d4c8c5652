"""The root of the settings tree: one ``Settings`` with a field per section.

The sections live in their own modules (``deployment``, ``llm``, ``chat``, ``storage``,
``operations``, ``security``, ``scaling``); how the tree is loaded is ``core.settings.loader``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from core.settings.chat import (
    ContextSettings,
    GuardSettings,
    PIISettings,
    PromptSettings,
    RetrievalSettings,
)
from core.settings.deployment import ApiSettings, PathsSettings, RaySettings
from core.settings.llm import LLMSettings
from core.settings.operations import AlertSettings, CanarySettings, TelemetrySettings
from core.settings.security import AuthSettings, LimitsSettings
from core.settings.storage import (
    AuditSettings,
    DatabaseSettings,
    HistorySettings,
    RetentionSettings,
)

__all__ = [
    "ENV_PREFIX",
    "Settings",
]


ENV_PREFIX = "ENCLAVE_"
"""Every environment variable that sets a field starts with this."""


class Settings(BaseSettings):
    """The effective configuration of one Enclave deployment."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    profile: str = Field(default="default", description="Name of the active settings profile.")
    paths: PathsSettings = Field(default_factory=PathsSettings, description="Where state lives.")
    api: ApiSettings = Field(default_factory=ApiSettings, description="HTTP API.")
    llm: LLMSettings = Field(default_factory=LLMSettings, description="Language models.")
    context: ContextSettings = Field(
        default_factory=ContextSettings, description="Context-window budgeting."
    )
    pii: PIISettings = Field(default_factory=PIISettings, description="PII detection.")
    guard: GuardSettings = Field(
        default_factory=GuardSettings, description="Intent routing and injection defence."
    )
    prompts: PromptSettings = Field(
        default_factory=PromptSettings, description="Versioned prompts and their suites."
    )
    database: DatabaseSettings = Field(
        default_factory=DatabaseSettings, description="The SQL store."
    )
    audit: AuditSettings = Field(
        default_factory=AuditSettings, description="The tamper-evident audit log."
    )
    retrieval: RetrievalSettings = Field(
        default_factory=RetrievalSettings, description="Knowledge bases and grounded answers."
    )
    retention: RetentionSettings = Field(
        default_factory=RetentionSettings, description="How long data is kept."
    )
    history: HistorySettings = Field(
        default_factory=HistorySettings, description="Owner-only placeholder vaults."
    )
    ray: RaySettings = Field(default_factory=RaySettings, description="Embedded Ray.")
    telemetry: TelemetrySettings = Field(
        default_factory=TelemetrySettings, description="Logs, metrics, traces."
    )
    auth: AuthSettings = Field(
        default_factory=AuthSettings, description="Authentication: OIDC tokens and API keys."
    )
    limits: LimitsSettings = Field(
        default_factory=LimitsSettings, description="Request rate limits and token quotas."
    )
    canary: CanarySettings = Field(
        default_factory=CanarySettings, description="The viability canary."
    )
    alerts: AlertSettings = Field(
        default_factory=AlertSettings, description="Alert webhook (canary failures, recoveries)."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init kwargs carry the merged YAML files: env vars must win over them.
        return (env_settings, init_settings)

    def with_paths_resolved(self, base: Path) -> Settings:
        """A copy whose paths are absolute (relative ones resolved against ``base``)."""

        def absolute(path: Path) -> Path:
            return path if path.is_absolute() else (base / path).resolve()

        store = self.paths.model_store_dir
        paths = PathsSettings(
            data_dir=absolute(self.paths.data_dir),
            model_store_dir=None if store is None else absolute(store),
        )
        prompts = self.prompts.model_copy(update={"directory": absolute(self.prompts.directory)})
        seeds = [
            seed.model_copy(update={"path": absolute(seed.path)}) for seed in self.retrieval.seed
        ]
        retrieval = self.retrieval.model_copy(update={"seed": seeds})
        url_file = self.database.url_file
        database = self.database.model_copy(
            update={"url_file": None if url_file is None else absolute(url_file)}
        )
        key_file = self.audit.signing_key_file
        audit = self.audit.model_copy(
            update={"signing_key_file": None if key_file is None else absolute(key_file)}
        )
        vault_file = self.history.vault_key_file
        history = self.history.model_copy(
            update={
                "vault_key_file": None if vault_file is None else absolute(vault_file),
                "retired_vault_key_files": [
                    absolute(p) for p in self.history.retired_vault_key_files
                ],
            }
        )
        return self.model_copy(
            update={
                "paths": paths,
                "prompts": prompts,
                "retrieval": retrieval,
                "database": database,
                "audit": audit,
                "history": history,
            }
        )
